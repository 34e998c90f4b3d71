"""Body masks of the CT and of an MR, and how much two bodies overlap: what the registration metric and the QC
look at."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage


def largest_component_filled(mask: np.ndarray) -> np.ndarray:
    """The largest 6-connected component of a (z, y, x) mask, its holes filled slice by slice.

    Slice by slice, because the airway opens to the outside at the ends of the stack and a 3D fill would keep it
    empty; within an axial slice it is enclosed by the body.
    """
    labels, n = ndimage.label(mask)
    if n == 0:
        return np.zeros(mask.shape, dtype=bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    body = labels == int(np.argmax(sizes))
    for k in range(body.shape[0]):
        if body[k].any():
            body[k] = ndimage.binary_fill_holes(body[k])
    return body


def _mask_image(array: np.ndarray, like: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(array.astype(np.uint8))
    image.CopyInformation(like)
    return image


def ct_body_mask(ct: sitk.Image, threshold_hu: float) -> sitk.Image:
    """uint8 mask of the patient on the CT grid: the largest region above threshold_hu (drops table, blankets,
    noise), holes filled."""
    hu = sitk.GetArrayViewFromImage(ct)
    return _mask_image(largest_component_filled(hu > threshold_hu), ct)


def mr_body_mask(mr: sitk.Image, fraction: float) -> sitk.Image:
    """uint8 mask of the patient on the MR grid: the largest region above `fraction` of the 99th percentile."""
    values = sitk.GetArrayViewFromImage(mr)
    finite = values[np.isfinite(values)]
    top = float(np.percentile(finite, 99.0)) if finite.size else 0.0
    if top <= 0:
        return _mask_image(np.zeros(values.shape, dtype=bool), mr)
    return _mask_image(largest_component_filled(values > fraction * top), mr)


def volume_ml(mask: sitk.Image) -> float:
    return float(np.count_nonzero(sitk.GetArrayViewFromImage(mask))) * float(np.prod(mask.GetSpacing())) / 1000.0


def overlap_coefficient(ct_body: sitk.Image, mr_body_on_ct: sitk.Image, mr_body_ml: float) -> float:
    """|CT body and MR body| / min(|CT body|, |MR body|), volumes in ml; the MR body as mapped onto the CT grid,
    its full volume measured on its own grid (so an MR mapped off the grid loses overlap, not size)."""
    voxel_ml = float(np.prod(ct_body.GetSpacing())) / 1000.0
    a = sitk.GetArrayViewFromImage(ct_body) > 0
    b = sitk.GetArrayViewFromImage(mr_body_on_ct) > 0
    both = float(np.count_nonzero(a & b)) * voxel_ml
    smaller = min(float(np.count_nonzero(a)) * voxel_ml, mr_body_ml)
    return round(both / smaller, 4) if smaller > 0 else 0.0
