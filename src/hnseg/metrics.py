"""Segmentation metrics: DSC, HD95, normalised surface Dice, volumes, the empty-mask policy and aggregation.

Conventions (DESIGN.md section 6):

- Masks are arrays castable to bool in SimpleITK array order (z, y, x); ``spacing_zyx`` is the voxel size in mm in
  the same order, ``image.GetSpacing()[::-1]``. Every pairwise metric is ``fn(pred, gt, spacing_zyx, ...) -> float``.
- Boundary voxels (HD95, NSD): the mask AND NOT its binary erosion with the 6-connected (face) cross structure,
  eroded with ``border_value=0``: outside the array is background, so a mask voxel on the array border is a
  boundary voxel.
- Distances are Euclidean, in mm, between voxel centres (index * spacing).
- HD95 is the Metrics Reloaded / MONAI definition: for each direction, the distance from every boundary voxel of one
  mask to the nearest boundary voxel of the other; the 95th percentile of each directed set with linear
  interpolation (``np.percentile``); the maximum of the two.
- Speed: boundaries are extracted on each mask cropped to its bounding box plus one voxel, and nearest-boundary
  distances come from a k-d tree over the boundary points (exact Euclidean distances, the same values as a
  distance transform, but the cost follows the number of boundary voxels rather than the size of the union
  bounding box, so a far false-positive blob stays cheap).
- The raw metrics return what is mathematically defined: both masks empty gives NaN, exactly one empty gives DSC 0,
  NSD 0, HD95 inf. The study's empty-mask policy is applied in one place only, :func:`score_target`; the worst-case
  HD95 it uses is the image diagonal between the centres of opposite corner voxels,
  ``sqrt(sum(((shape - 1) * spacing) ** 2))``, the largest distance any HD95 on that grid can take.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from os import PathLike
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import ndimage
from scipy.spatial import cKDTree

from hnseg.errors import InputError

DEFAULT_TARGETS: Mapping[str, int] = {"GTV-T": 1, "GTV-N": 2}
"""Label value of each target in the uint8 label volumes (0 is background)."""

_GROUP_KEYS = ("method", "subset", "target")
_GRID_TOLERANCE = 1e-4
_TIE_MM = 1e-9
"""Slack for NSD's "distance <= tolerance": distances that equal the tolerance exactly (such as 2.0 mm from
1.2 and 1.6 mm steps) would otherwise be in or out depending on rounding of the voxel coordinates."""


# ----------------------------------------------------------------------------------------------- input checks


def _as_mask(array: ArrayLike) -> np.ndarray:
    return np.asarray(array).astype(bool, copy=False)


def _check_spacing(spacing_zyx: ArrayLike, ndim: int) -> np.ndarray:
    spacing = np.asarray(spacing_zyx, dtype=float).ravel()
    if spacing.size != ndim:
        raise ValueError(f"spacing_zyx has {spacing.size} values {tuple(spacing)}, the masks have {ndim} dimensions")
    if not np.all(np.isfinite(spacing) & (spacing > 0)):
        raise ValueError(f"spacing_zyx must be positive and finite, got {tuple(spacing)}")
    return spacing


def _check_pair(pred: ArrayLike, gt: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    pred_mask, gt_mask = _as_mask(pred), _as_mask(gt)
    if pred_mask.shape != gt_mask.shape:
        raise ValueError(f"pred and gt have different shapes: {pred_mask.shape} vs {gt_mask.shape}")
    return pred_mask, gt_mask


# ----------------------------------------------------------------------------------------------- geometry


def _bbox(mask: np.ndarray, margin: int = 1) -> tuple[slice, ...] | None:
    """Bounding box of the True voxels plus ``margin`` voxels (clipped to the array); None when the mask is empty.

    Each axis is found on the array already cropped along the previous axes, so a small mask in a large volume
    costs about one pass over the volume.
    """
    box: list[slice] = []
    for axis in range(mask.ndim):
        crop = mask[tuple(box)]
        present = np.flatnonzero(crop.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        if present.size == 0:
            return None
        box.append(slice(max(int(present[0]) - margin, 0), min(int(present[-1]) + 1 + margin, mask.shape[axis])))
    return tuple(box)


def _boundary_points_mm(mask: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Centres (mm) of the boundary voxels: mask AND NOT its 6-connected erosion, array border = background.

    Eroding the crop gives the same result as eroding the whole array: everything outside the bounding box is
    background, and ``border_value=0`` treats outside the crop (and outside the array) as background too.
    """
    box = _bbox(mask)
    if box is None:
        return np.zeros((0, mask.ndim))
    crop = mask[box]
    cross = ndimage.generate_binary_structure(mask.ndim, 1)
    edge = crop & ~ndimage.binary_erosion(crop, structure=cross, border_value=0)
    return (np.argwhere(edge) + [s.start for s in box]) * spacing


def _surface_distances(pred: np.ndarray, gt: np.ndarray, spacing: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Directed boundary distances in mm: (each pred boundary voxel to the nearest gt boundary voxel, and the
    reverse). Both masks must be non-empty."""
    pred_pts, gt_pts = _boundary_points_mm(pred, spacing), _boundary_points_mm(gt, spacing)
    pred_to_gt = cKDTree(gt_pts).query(pred_pts, k=1)[0]
    gt_to_pred = cKDTree(pred_pts).query(gt_pts, k=1)[0]
    return pred_to_gt, gt_to_pred


def _hd95_from(pred_to_gt: np.ndarray, gt_to_pred: np.ndarray) -> float:
    return float(max(np.percentile(pred_to_gt, 95), np.percentile(gt_to_pred, 95)))


def _nsd_from(pred_to_gt: np.ndarray, gt_to_pred: np.ndarray, tolerance_mm: float) -> float:
    limit = tolerance_mm + _TIE_MM
    within = np.count_nonzero(pred_to_gt <= limit) + np.count_nonzero(gt_to_pred <= limit)
    return float(within / (pred_to_gt.size + gt_to_pred.size))


def image_diagonal_mm(shape: Sequence[int], spacing_zyx: ArrayLike) -> float:
    """Distance in mm between the centres of opposite corner voxels, ``sqrt(sum(((shape - 1) * spacing) ** 2))``:
    the worst-case HD95 of :func:`score_target` (no HD95 on this grid can exceed it)."""
    spacing = _check_spacing(spacing_zyx, len(shape))
    return float(np.sqrt(np.sum(((np.asarray(shape, dtype=float) - 1) * spacing) ** 2)))


# ----------------------------------------------------------------------------------------------- metrics


def dsc(pred: ArrayLike, gt: ArrayLike, spacing_zyx: ArrayLike | None = None) -> float:
    """Dice similarity coefficient 2|P∩G| / (|P| + |G|); spacing is ignored. NaN when both masks are empty."""
    pred_mask, gt_mask = _check_pair(pred, gt)
    if spacing_zyx is not None:
        _check_spacing(spacing_zyx, pred_mask.ndim)
    total = np.count_nonzero(pred_mask) + np.count_nonzero(gt_mask)
    if total == 0:
        return math.nan
    return float(2 * np.count_nonzero(pred_mask & gt_mask) / total)


def hd95(pred: ArrayLike, gt: ArrayLike, spacing_zyx: ArrayLike) -> float:
    """95th-percentile Hausdorff distance in mm (Metrics Reloaded / MONAI definition, see the module docstring).

    NaN when both masks are empty, inf when exactly one is (use :func:`score_target` for the study's policy).
    """
    pred_mask, gt_mask = _check_pair(pred, gt)
    spacing = _check_spacing(spacing_zyx, pred_mask.ndim)
    pred_empty, gt_empty = not pred_mask.any(), not gt_mask.any()
    if pred_empty or gt_empty:
        return math.nan if pred_empty and gt_empty else math.inf
    return _hd95_from(*_surface_distances(pred_mask, gt_mask, spacing))


def nsd(pred: ArrayLike, gt: ArrayLike, spacing_zyx: ArrayLike, tolerance_mm: float = 2.0) -> float:
    """Normalised surface Dice at ``tolerance_mm``, on the boundary voxels of the module docstring:

    (pred boundary voxels within ``tolerance_mm`` (distance <= tolerance, ties included up to 1e-9 mm of
    rounding) of the gt boundary + gt boundary voxels within ``tolerance_mm`` of the pred boundary) /
    (boundary voxels of pred + boundary voxels of gt).
    Each boundary voxel counts once, not weighted by area. NaN when both masks are empty, 0 when exactly one is.
    """
    pred_mask, gt_mask = _check_pair(pred, gt)
    spacing = _check_spacing(spacing_zyx, pred_mask.ndim)
    if tolerance_mm < 0:
        raise ValueError(f"tolerance_mm must be >= 0, got {tolerance_mm}")
    pred_empty, gt_empty = not pred_mask.any(), not gt_mask.any()
    if pred_empty or gt_empty:
        return math.nan if pred_empty and gt_empty else 0.0
    return _nsd_from(*_surface_distances(pred_mask, gt_mask, spacing), tolerance_mm)


def volume_ml(mask: ArrayLike, spacing_zyx: ArrayLike) -> float:
    """Volume of the mask in ml (cm^3): voxel count * voxel volume in mm^3 / 1000."""
    mask_arr = _as_mask(mask)
    spacing = _check_spacing(spacing_zyx, mask_arr.ndim)
    return float(np.count_nonzero(mask_arr) * np.prod(spacing) / 1000.0)


# ----------------------------------------------------------------------------------------------- scoring


def score_target(
    pred: ArrayLike, gt: ArrayLike, spacing_zyx: ArrayLike, nsd_tolerance_mm: float = 2.0
) -> dict[str, Any]:
    """All metrics of one target of one case, with the study's empty-mask policy (the only place it lives).

    Returns dsc, hd95_mm, nsd, volume_gt_ml, volume_pred_ml, status and hd95_worst_case:

    - both masks non-empty: status "ok", the metrics as defined above;
    - both empty: status "both_empty", dsc, hd95_mm and nsd NaN (:func:`summarize` excludes and counts the case);
    - exactly one empty: status "gt_empty" or "pred_empty", dsc 0, nsd 0, hd95_mm = :func:`image_diagonal_mm`
      of the grid, hd95_worst_case True.
    """
    pred_mask, gt_mask = _check_pair(pred, gt)
    spacing = _check_spacing(spacing_zyx, pred_mask.ndim)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    n_pred, n_gt = np.count_nonzero(pred_mask), np.count_nonzero(gt_mask)
    worst_case = False
    if n_pred == 0 and n_gt == 0:
        status, dice, hd, surface_dice = "both_empty", math.nan, math.nan, math.nan
    elif n_pred == 0 or n_gt == 0:
        status = "pred_empty" if n_pred == 0 else "gt_empty"
        dice, hd, surface_dice = 0.0, image_diagonal_mm(pred_mask.shape, spacing), 0.0
        worst_case = True
    else:
        status = "ok"
        dice = float(2 * np.count_nonzero(pred_mask & gt_mask) / (n_pred + n_gt))
        distances = _surface_distances(pred_mask, gt_mask, spacing)
        hd, surface_dice = _hd95_from(*distances), _nsd_from(*distances, nsd_tolerance_mm)
    return {
        "dsc": dice,
        "hd95_mm": hd,
        "nsd": surface_dice,
        "volume_gt_ml": n_gt * voxel_ml,
        "volume_pred_ml": n_pred * voxel_ml,
        "status": status,
        "hd95_worst_case": worst_case,
    }


def score_patient(
    pred_labels: ArrayLike,
    gt_labels: ArrayLike,
    spacing_zyx: ArrayLike,
    targets: Mapping[str, int] | None = None,
    nsd_tolerance_mm: float = 2.0,
) -> list[dict[str, Any]]:
    """Score label volumes (0 background, one label value per target; default :data:`DEFAULT_TARGETS`).

    Returns one :func:`score_target` dict per target, in the order of ``targets``, with the key "target" first.
    """
    pred_arr, gt_arr = np.asarray(pred_labels), np.asarray(gt_labels)
    if pred_arr.shape != gt_arr.shape:
        raise ValueError(f"pred and gt label volumes have different shapes: {pred_arr.shape} vs {gt_arr.shape}")
    return [
        {"target": name, **score_target(pred_arr == label, gt_arr == label, spacing_zyx, nsd_tolerance_mm)}
        for name, label in (targets or DEFAULT_TARGETS).items()
    ]


def score_files(
    pred_path: str | PathLike[str],
    gt_path: str | PathLike[str],
    targets: Mapping[str, int] | None = None,
    nsd_tolerance_mm: float = 2.0,
) -> list[dict[str, Any]]:
    """Score two label images (NIfTI or anything SimpleITK reads) that must be on the same grid.

    Size must match exactly; spacing, origin and direction within 1e-4. Otherwise raises
    :class:`hnseg.errors.InputError` naming both files. Spacing is taken as ``GetSpacing()[::-1]`` (z, y, x).
    """
    import SimpleITK as sitk

    pred_img, gt_img = sitk.ReadImage(str(pred_path)), sitk.ReadImage(str(gt_path))
    mismatches = []
    if pred_img.GetSize() != gt_img.GetSize():
        mismatches.append(f"size {pred_img.GetSize()} vs {gt_img.GetSize()}")
    for name in ("Spacing", "Origin", "Direction"):
        a, b = getattr(pred_img, f"Get{name}")(), getattr(gt_img, f"Get{name}")()
        if len(a) != len(b) or not np.allclose(a, b, rtol=0, atol=_GRID_TOLERANCE):
            mismatches.append(f"{name.lower()} {tuple(round(v, 6) for v in a)} vs {tuple(round(v, 6) for v in b)}")
    if mismatches:
        raise InputError(
            f"prediction {pred_path} and ground truth {gt_path} are not on the same grid ({'; '.join(mismatches)}); "
            "resample the prediction onto the ground-truth grid (nearest neighbour) before scoring"
        )
    spacing_zyx = pred_img.GetSpacing()[::-1]
    return score_patient(
        sitk.GetArrayViewFromImage(pred_img), sitk.GetArrayViewFromImage(gt_img), spacing_zyx, targets, nsd_tolerance_mm
    )


# ----------------------------------------------------------------------------------------------- aggregation


def _mean_sd(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=float)
    mean = float(arr.mean()) if arr.size else math.nan
    sd = float(arr.std(ddof=1)) if arr.size >= 2 else math.nan
    return mean, sd


def summarize(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Aggregate per-case rows (as from :func:`score_patient`, optionally with "method" and "subset") per group.

    Groups are (method, subset, target), using those keys that appear in the rows, in order of first appearance.
    Per group: n (cases used), n_excluded (status "both_empty", left out of every statistic), mean and SD
    (ddof=1, NaN when n < 2) of dsc, hd95_mm and nsd, hd95_mm_median, n_hd95_worst_case (HD95 set to the image
    diagonal), and dsc_agg, the HECKTOR 2022 aggregated DSC in mm^3: 2 * sum(TP) / sum(vol_gt + vol_pred) with
    TP = dsc * (vol_gt + vol_pred) / 2 per case (volumes in ml; NaN when the sums are 0). NaN metrics of used cases
    are not dropped: they make the statistic NaN.
    """
    rows = list(rows)
    keys = [k for k in _GROUP_KEYS if any(k in row for row in rows)]
    groups: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row.get(k) for k in keys), []).append(row)

    summary = []
    for group_key, members in groups.items():
        used = [r for r in members if r["status"] != "both_empty"]
        out: dict[str, Any] = dict(zip(keys, group_key, strict=True))
        out["n"], out["n_excluded"] = len(used), len(members) - len(used)
        for metric in ("dsc", "hd95_mm", "nsd"):
            out[f"{metric}_mean"], out[f"{metric}_sd"] = _mean_sd([float(r[metric]) for r in used])
        out["hd95_mm_median"] = float(np.median([float(r["hd95_mm"]) for r in used])) if used else math.nan
        out["n_hd95_worst_case"] = sum(
            bool(r.get("hd95_worst_case", r["status"] in ("gt_empty", "pred_empty"))) for r in used
        )
        volume = sum(float(r["volume_gt_ml"]) + float(r["volume_pred_ml"]) for r in used)
        true_positive = sum(float(r["dsc"]) * (float(r["volume_gt_ml"]) + float(r["volume_pred_ml"])) / 2 for r in used)
        out["dsc_agg"] = 2 * true_positive / volume if volume > 0 else math.nan
        summary.append(out)
    return summary


# ----------------------------------------------------------------------------------------------- stage evaluate

SCORE_COLUMNS = (
    "method", "patient", "subset", "target", "dsc", "hd95_mm", "nsd", "volume_gt_ml", "volume_pred_ml", "status",
    "hd95_worst_case",
)  # fmt: skip
"""Columns of ``results/metrics/{method}.csv``, one row per patient and target."""


def evaluate_method(
    method: str,
    cases: Iterable[Mapping[str, str]],
    targets: Mapping[str, int] | None = None,
    nsd_tolerance_mm: float = 2.0,
) -> list[dict[str, Any]]:
    """Score every case (dicts with patient, subset, prediction, reference paths) of one method, in 3D on the CT grid."""
    rows = []
    for case in cases:
        for score in score_files(case["prediction"], case["reference"], targets, nsd_tolerance_mm):
            rows.append({"method": method, "patient": case["patient"], "subset": case["subset"], **score})
    return rows


def write_rows(rows: Iterable[Mapping[str, Any]], path: str | PathLike[str], columns: Sequence[str]) -> None:
    """Write rows as CSV with the given columns; floats with 6 significant digits, NaN as empty."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return "" if math.isnan(value) else f"{value:.6g}"
        return str(value)

    lines = [",".join(columns)] + [",".join(cell(row[c]) for c in columns) for row in rows]
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")


def read_scores(path: str | PathLike[str]) -> list[dict[str, Any]]:
    """Read a per-case CSV written by the evaluate stage back into typed rows (empty cells are NaN)."""
    import csv

    numeric = ("dsc", "hd95_mm", "nsd", "volume_gt_ml", "volume_pred_ml")
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        for key in numeric:
            row[key] = float(row[key]) if row[key] != "" else math.nan
        row["hd95_worst_case"] = row["hd95_worst_case"] == "True"
    return rows


SUMMARY_COLUMNS = (
    "method", "subset", "target", "n", "n_excluded", "dsc_mean", "dsc_sd", "hd95_mm_mean", "hd95_mm_sd",
    "hd95_mm_median", "n_hd95_worst_case", "nsd_mean", "nsd_sd", "dsc_agg",
)  # fmt: skip
"""Columns of ``results/metrics/summary.csv``, one row per method, subset and target."""
