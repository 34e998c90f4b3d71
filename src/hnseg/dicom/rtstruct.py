"""RTSTRUCT to masks: hnseg's own geometric even-odd rasteriser (DESIGN.md section 5; reference/dicom.md §3).

Each CLOSED_PLANAR contour is projected on the CT grid: its points become continuous voxel indices; it belongs to
the nearest slice if it lies within half a slice of it (contours further away are reported, not guessed); the
pixels whose centres lie inside the polygon are set. Contours of one ROI on one slice combine by XOR (even-odd),
so a ring drawn as an outer and an inner contour has its hole. ROIs are paired with their contours through
ReferencedROINumber, never by list position; ContourImageSequence is not needed. POINT and OPEN contours carry
no area and are skipped. This reproduces `plastimatch convert --xor-contours`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom

from hnseg.dicom.volume import Grid
from hnseg.errors import InputError

log = logging.getLogger(__name__)

OFF_SLICE_TOL = 0.5  # in slices: a contour further than half a slice from every CT slice is not placed
PLANAR_TOL = 0.05  # in slices: spread of a contour's points along the normal that is still "planar"


@dataclass
class RoiMasks:
    masks: dict[str, np.ndarray]  # ROI name -> boolean (z, y, x), only ROIs with at least one closed contour
    numbers: dict[str, int]  # ROI name -> ROINumber
    skipped: dict[str, str] = field(default_factory=dict)  # ROI name -> why it has no mask
    warnings: list[str] = field(default_factory=list)


def fill_polygon(mask2d: np.ndarray, cols: np.ndarray, rows: np.ndarray) -> None:
    """XOR into mask2d (rows, columns) the pixels whose centres lie inside the polygon (even-odd rule).

    cols, rows: vertex coordinates in continuous pixel indices (pixel centres at integers). A centre exactly on a
    horizontal scanline crossing uses the half-open rule (y0 <= y < y1), so shared edges are counted once.
    """
    n_rows, n_cols = mask2d.shape
    x0, y0 = cols, rows
    x1, y1 = np.roll(cols, -1), np.roll(rows, -1)
    r_lo = max(int(np.ceil(rows.min())), 0)
    r_hi = min(int(np.floor(rows.max())), n_rows - 1)
    if r_hi < r_lo:
        return
    ys = np.arange(r_lo, r_hi + 1, dtype=np.float64)[:, None]  # (R, 1)
    crosses = ((y0 <= ys) & (ys < y1)) | ((y1 <= ys) & (ys < y0))  # (R, E)
    with np.errstate(divide="ignore", invalid="ignore"):  # horizontal edges never cross a scanline
        t = (ys - y0) / (y1 - y0)
        xs = np.where(crosses, x0 + t * (x1 - x0), np.inf)
    xs.sort(axis=1)
    counts = crosses.sum(axis=1)
    col_idx = np.arange(n_cols, dtype=np.float64)
    for r in np.nonzero(counts >= 2)[0]:
        # even-odd: a centre is inside when an odd number of crossings lie at or left of it
        parity = np.searchsorted(xs[r, : counts[r]], col_idx, side="right") & 1
        mask2d[r_lo + r] ^= parity.astype(bool)


def rasterize_dataset(rtstruct: pydicom.Dataset, grid: Grid, what: str = "RTSTRUCT") -> RoiMasks:
    """Masks of every ROI with closed contours of an RTSTRUCT dataset, on `grid`."""
    # ContourData holds up to millions of DS numbers: parsing them into numpy is 10x faster than into DSfloat
    previous = pydicom.config.use_DS_numpy
    pydicom.config.use_DS_numpy = True
    try:
        return _rasterize(rtstruct, grid, what)
    finally:
        pydicom.config.use_DS_numpy = previous


def _rasterize(rtstruct: pydicom.Dataset, grid: Grid, what: str) -> RoiMasks:
    names: dict[int, str] = {}
    for item in rtstruct.get("StructureSetROISequence", []):
        names[int(item.ROINumber)] = str(item.get("ROIName", f"ROI{item.ROINumber}")).strip()
    out = RoiMasks(masks={}, numbers={v: k for k, v in names.items()})
    nz = grid.shape_zyx[0]
    for roi in rtstruct.get("ROIContourSequence", []):
        number = int(roi.ReferencedROINumber)
        name = names.get(number)
        if name is None:
            out.warnings.append(f"{what}: contours reference ROI number {number}, which no ROI defines; ignored")
            continue
        contours = roi.get("ContourSequence") or []
        mask = np.zeros(grid.shape_zyx, dtype=bool)
        n_closed, off_slice, spread_out = 0, [], 0
        for contour in contours:
            kind = str(contour.get("ContourGeometricType", "CLOSED_PLANAR")).upper()
            data = contour.get("ContourData")
            if kind != "CLOSED_PLANAR" or data is None or len(data) < 9:
                continue
            idx = grid.index_of_points(np.asarray(data, dtype=np.float64).reshape(-1, 3))
            k_mean = float(idx[:, 2].mean())
            k = int(np.rint(k_mean))
            if np.ptp(idx[:, 2]) > 2 * PLANAR_TOL + 1e-9:
                spread_out += 1
            if abs(k_mean - k) > OFF_SLICE_TOL or not 0 <= k < nz:
                off_slice.append(k_mean)
                continue
            fill_polygon(mask[k], idx[:, 0], idx[:, 1])
            n_closed += 1
        if off_slice:
            out.warnings.append(
                f"{what}: ROI '{name}': {len(off_slice)} contour(s) lie off the CT slices (slice index "
                f"{min(off_slice):.2f} to {max(off_slice):.2f} of 0..{nz - 1}) and were not used; the RTSTRUCT was "
                "probably drawn on another image"
            )
        if spread_out:
            out.warnings.append(f"{what}: ROI '{name}': {spread_out} contour(s) are not parallel to the CT slices")
        if n_closed == 0:
            out.skipped[name] = "no closed planar contour on the CT slices" if contours else "no contours"
            continue
        if name in out.masks:
            out.warnings.append(f"{what}: two ROIs are named '{name}'; their masks are merged")
            mask |= out.masks[name]
        out.masks[name] = mask
    for name in names.values():
        if name not in out.masks and name not in out.skipped:
            out.skipped[name] = "no contour data"
    return out


def rasterize(rtstruct_path: str, ct_dir: str) -> dict[str, np.ndarray]:
    """Every ROI with contours, as a boolean (z, y, x) mask on the grid of the CT series in `ct_dir`.

    Public entry point (DESIGN.md section 7). When `ct_dir` holds several CT series, the one the RTSTRUCT
    references is used (by SeriesInstanceUID, else by frame of reference), else the one with the most slices.
    """
    from hnseg.dicom.series import scan_folder
    from hnseg.dicom.volume import plan_stack, planes_from_datasets

    rtstruct = pydicom.dcmread(rtstruct_path, force=True)
    if getattr(rtstruct, "Modality", None) != "RTSTRUCT":
        raise InputError(f"{rtstruct_path} is not an RTSTRUCT (Modality {getattr(rtstruct, 'Modality', None)!r})")
    scan = scan_folder(Path(ct_dir))
    cts = [s for s in scan.series if s.modality == "CT" and s.is_image]
    if not cts:
        raise InputError(f"no CT series in {ct_dir}")
    referenced = referenced_series_uids(rtstruct)
    ct = next((s for s in cts if s.uid in referenced), None)
    if ct is None:
        ct = max(cts, key=lambda s: len(s.instances))
    planes = planes_from_datasets([i.header for i in ct.instances], [str(i.path) for i in ct.instances])
    grid = plan_stack(planes, f"CT series in {ct_dir}").grid
    result = rasterize_dataset(rtstruct, grid, what=Path(rtstruct_path).name)
    for warning in result.warnings:
        log.warning(warning)
    return result.masks


def referenced_series_uids(rtstruct: pydicom.Dataset) -> set[str]:
    """SeriesInstanceUIDs an RTSTRUCT says it was drawn on (may be empty in real files)."""
    uids = set()
    for ref_for in rtstruct.get("ReferencedFrameOfReferenceSequence", []):
        for study in ref_for.get("RTReferencedStudySequence", []):
            for series in study.get("RTReferencedSeriesSequence", []):
                if "SeriesInstanceUID" in series:
                    uids.add(str(series.SeriesInstanceUID))
    return uids
