"""NIfTI files as other tools write them, for the tests: an LPS grid (identity direction) stored as is or with x and
y flipped (the RAS storage of HECKTOR and many NIfTI tools), with qform and sform set by nibabel."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import SimpleITK as sitk


def affine_ras(shape_zyx, spacing, origin, flipped: bool) -> np.ndarray:
    """The RAS affine of an LPS grid with identity direction, stored unflipped or with x and y flipped."""
    nx, ny, _ = shape_zyx[::-1]
    lps = np.diag([*spacing, 1.0])
    lps[:3, 3] = origin
    if flipped:  # voxel i' = n-1-i along x and y: the axes run towards right and anterior
        lps[:3, 3] += [spacing[0] * (nx - 1), spacing[1] * (ny - 1), 0]
        lps[0, 0], lps[1, 1] = -spacing[0], -spacing[1]
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


def write_nifti(path, array_zyx, spacing, origin, *, flipped=False, sform_shift=0.0, dtype=None):
    """array (z, y, x) on the LPS grid (spacing, origin; identity direction) to a NIfTI file written by nibabel."""
    data = np.asarray(array_zyx).transpose(2, 1, 0)
    if flipped:
        data = data[::-1, ::-1, :]
    affine = affine_ras(np.shape(array_zyx), spacing, origin, flipped)
    image = nib.Nifti1Image(np.ascontiguousarray(data).astype(dtype or np.asarray(array_zyx).dtype), affine)
    image.set_qform(affine, code=1)
    shifted = affine.copy()
    shifted[0, 3] += sform_shift
    image.set_sform(shifted, code=1)
    nib.save(image, str(path))
    return path


def write_like(image: sitk.Image, path, *, flipped=False, dtype=None):
    """A SimpleITK volume with identity direction rewritten by nibabel (optionally RAS-flipped, another dtype)."""
    if not np.allclose(image.GetDirection(), np.eye(3).ravel()):
        raise ValueError(f"{path}: expected an identity direction, got {image.GetDirection()}")
    array = sitk.GetArrayFromImage(image)
    return write_nifti(path, array, image.GetSpacing(), image.GetOrigin(), flipped=flipped, dtype=dtype)
