"""Grids and resampling: PET onto the CT grid, the working grid of the registration, the images the metric sees."""

from __future__ import annotations

import math

import numpy as np
import SimpleITK as sitk

from hnseg.registration.options import RegistrationOptions


def resample_like(
    image: sitk.Image,
    reference: sitk.Image,
    interpolator=sitk.sitkLinear,
    default: float = 0.0,
    transform: sitk.Transform | None = None,
    pixel_type=sitk.sitkFloat32,
) -> sitk.Image:
    """`image` on the grid of `reference` (identity transform unless given: same frame of reference)."""
    return sitk.Resample(image, reference, transform or sitk.Transform(), interpolator, float(default), pixel_type)


def resample_pet_to_ct(pet: sitk.Image, ct: sitk.Image) -> sitk.Image:
    """PET (SUVbw) on the CT grid, linear; 0 outside the PET's field of view. Same frame of reference as the CT,
    so no transform: scanner coordinates are shared."""
    return resample_like(sitk.Cast(pet, sitk.sitkFloat32), ct, sitk.sitkLinear, 0.0)


def physical_bounds(image: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned bounding box (min, max corners, LPS mm) of the image's voxel centres."""
    size = image.GetSize()
    corners = [
        image.TransformContinuousIndexToPhysicalPoint((i * (size[0] - 1), j * (size[1] - 1), k * (size[2] - 1)))
        for i in (0, 1)
        for j in (0, 1)
        for k in (0, 1)
    ]
    pts = np.array(corners)
    return pts.min(axis=0), pts.max(axis=0)


def working_grid(ct: sitk.Image, body: sitk.Image, spacing_mm: float, margin_mm: float) -> sitk.Image:
    """The registration's fixed grid: the CT's orientation, the body's bounding box plus a margin (clipped to the
    CT), each axis coarsened to at least `spacing_mm`. Returns an empty float32 image on that grid."""
    mask = sitk.GetArrayViewFromImage(body)
    spacing = np.array(ct.GetSpacing())
    size = np.array(ct.GetSize())
    if mask.any():
        idx = np.argwhere(mask)[:, ::-1]  # (x, y, z) indices
        margin = np.ceil(margin_mm / spacing).astype(int)
        lo = np.maximum(idx.min(axis=0) - margin, 0)
        hi = np.minimum(idx.max(axis=0) + margin, size - 1)
    else:
        lo, hi = np.zeros(3, dtype=int), size - 1
    new_spacing = np.maximum(spacing, spacing_mm)
    extent = (hi - lo) * spacing  # centre-to-centre
    new_size = np.array([max(1, math.floor(e / s + 1e-6) + 1) for e, s in zip(extent, new_spacing, strict=True)])
    # centre the coarse grid on the cropped box
    used = (new_size - 1) * new_spacing
    start_index = lo + (extent - used) / 2.0 / spacing
    origin = ct.TransformContinuousIndexToPhysicalPoint(tuple(float(v) for v in start_index))
    grid = sitk.Image([int(v) for v in new_size], sitk.sitkFloat32)
    grid.SetSpacing(tuple(float(v) for v in new_spacing))
    grid.SetOrigin(origin)
    grid.SetDirection(ct.GetDirection())
    return grid


def _smooth_for(image: sitk.Image, target_spacing) -> sitk.Image:
    """Gaussian anti-aliasing before coarsening (per axis, only where the spacing grows)."""
    old = np.array(image.GetSpacing())
    new = np.array(target_spacing)
    sigma = np.where(new > old * 1.01, 0.5 * np.sqrt(np.maximum(new**2 - old**2, 0.0)), 0.0)
    if not np.any(sigma > 0):
        return image
    return sitk.SmoothingRecursiveGaussian(image, [float(max(s, 1e-3)) for s in sigma])


def prepare_fixed(ct: sitk.Image, body: sitk.Image, grid: sitk.Image, opts: RegistrationOptions) -> sitk.Image:
    """What the metric sees of the CT: HU clipped to ct_clip_hu, shifted to start at 0, 0 outside the body,
    smoothed and resampled onto the working grid."""
    lo, hi = opts.ct_clip_hu
    hu = sitk.GetArrayFromImage(ct).astype(np.float32)
    values = np.clip(hu, lo, hi) - lo
    values[sitk.GetArrayViewFromImage(body) == 0] = 0.0
    image = sitk.GetImageFromArray(values)
    image.CopyInformation(ct)
    image = _smooth_for(image, grid.GetSpacing())
    return resample_like(image, grid, sitk.sitkLinear, 0.0)


def prepare_moving(mr: sitk.Image, opts: RegistrationOptions) -> sitk.Image:
    """What the metric sees of an MR: float32, negatives to 0, clipped at mr_clip_percentile."""
    values = sitk.GetArrayFromImage(mr).astype(np.float32)
    values[~np.isfinite(values)] = 0.0
    values = np.maximum(values, 0.0)
    top = float(np.percentile(values, opts.mr_clip_percentile)) if values.size else 0.0
    image = sitk.GetImageFromArray(np.minimum(values, top))
    image.CopyInformation(mr)
    return image


def fixed_side(
    ct: sitk.Image, body: sitk.Image, opts: RegistrationOptions
) -> tuple[sitk.Image, sitk.Image, sitk.Image]:
    """The CT side of a registration, on the whole working grid: (grid, what the metric sees of the CT, the body
    mask). A function of the CT and the options alone, so the QC rebuilds exactly what the registration saw."""
    grid = working_grid(ct, body, opts.working_spacing_mm, opts.crop_margin_mm)
    fixed = prepare_fixed(ct, body, grid, opts)
    body_on_grid = resample_like(body, grid, sitk.sitkNearestNeighbor, 0, pixel_type=sitk.sitkUInt8)
    return grid, fixed, body_on_grid


def crop(image: sitk.Image, start_xyz: list[int], size_xyz: list[int]) -> sitk.Image:
    """The sub-grid of `image` from index start_xyz, size_xyz voxels (x, y, z)."""
    return sitk.RegionOfInterest(image, [int(v) for v in size_xyz], [int(v) for v in start_xyz])
