"""RTSTRUCT to masks: hnseg's own geometric even-odd rasteriser (DESIGN.md section 5; reference/dicom.md §3).

Each CLOSED_PLANAR contour is projected on the CT grid: its points become continuous voxel indices, and it goes to
the nearest CT slice if its plane lies within a stated tolerance in mm of it (`import.contour_plane_tolerance_mm`);
a contour plane farther than that from every CT slice is reported with its ROI and z and not used (the RTSTRUCT
was probably drawn on another image). On its slice, the pixels whose centres lie inside the polygon are set.
Contours of one ROI in one plane combine by XOR (even-odd), so a ring drawn as an outer and an inner contour has
its hole. Contours of different planes that fall on the same CT slice (an RTSTRUCT drawn on thinner slices than
the CT) combine by union, with a warning naming the ROI and z: XOR across planes would punch holes where they
overlap. ROIs are paired with their contours through ReferencedROINumber, never by list position;
ContourImageSequence is not needed. POINT and OPEN contours carry no area and are skipped. On contours drawn on
the CT itself this reproduces `plastimatch convert --xor-contours`.
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

PLANE_TOLERANCE_MM = 1.0  # default of import.contour_plane_tolerance_mm: farther from every CT slice is not used
SAME_PLANE_MM = 0.1  # contours whose planes lie closer than this along the normal are one plane (float noise)
PLANAR_TOL = 0.05  # in slices: spread of a contour's points along the normal that is still "planar"
MAX_LISTED = 5  # planes or slices named in one warning


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


def rasterize_dataset(
    rtstruct: pydicom.Dataset, grid: Grid, what: str = "RTSTRUCT", plane_tolerance_mm: float = PLANE_TOLERANCE_MM
) -> RoiMasks:
    """Masks of every ROI with closed contours of an RTSTRUCT dataset, on `grid`.

    plane_tolerance_mm: a contour whose plane lies farther than this from every CT slice is not used (a warning
    names the ROI and the plane's z).
    """
    if not plane_tolerance_mm >= 0:
        raise InputError(f"import.contour_plane_tolerance_mm must be 0 or more, got {plane_tolerance_mm}")
    # ContourData holds up to millions of DS numbers: parsing them into numpy is 10x faster than into DSfloat
    previous = pydicom.config.use_DS_numpy
    pydicom.config.use_DS_numpy = True
    try:
        return _rasterize(rtstruct, grid, what, plane_tolerance_mm)
    finally:
        pydicom.config.use_DS_numpy = previous


@dataclass
class _Polygon:
    plane_mm: float  # position of the contour's plane along the slice normal, patient coordinates
    cols: np.ndarray
    rows: np.ndarray


def _listed(values: list[float]) -> str:
    shown = ", ".join(f"{v:.2f}" for v in values[:MAX_LISTED])
    return shown + (f", ... ({len(values)} in all)" if len(values) > MAX_LISTED else "")


def _planes(polygons: list[_Polygon]) -> list[list[_Polygon]]:
    """Polygons of one slice grouped by plane (positions closer than SAME_PLANE_MM are one plane)."""
    ordered = sorted(polygons, key=lambda p: p.plane_mm)
    groups = [[ordered[0]]]
    for polygon in ordered[1:]:
        if polygon.plane_mm - groups[-1][-1].plane_mm <= SAME_PLANE_MM:
            groups[-1].append(polygon)
        else:
            groups.append([polygon])
    return groups


def _rasterize(rtstruct: pydicom.Dataset, grid: Grid, what: str, plane_tolerance_mm: float) -> RoiMasks:
    names: dict[int, str] = {}
    for item in rtstruct.get("StructureSetROISequence", []):
        names[int(item.ROINumber)] = str(item.get("ROIName", f"ROI{item.ROINumber}")).strip()
    out = RoiMasks(masks={}, numbers={v: k for k, v in names.items()})
    nz = grid.shape_zyx[0]
    spacing_z = float(grid.spacing[2])
    normal = np.asarray(grid.direction, dtype=np.float64).reshape(3, 3)[:, 2]
    first_slice_mm = float(np.asarray(grid.origin) @ normal)
    for roi in rtstruct.get("ROIContourSequence", []):
        number = int(roi.ReferencedROINumber)
        name = names.get(number)
        if name is None:
            out.warnings.append(f"{what}: contours reference ROI number {number}, which no ROI defines; ignored")
            continue
        contours = roi.get("ContourSequence") or []
        by_slice: dict[int, list[_Polygon]] = {}
        off_slice: list[tuple[float, float]] = []  # (plane z, distance to the nearest CT slice), mm
        spread_out = 0
        for contour in contours:
            kind = str(contour.get("ContourGeometricType", "CLOSED_PLANAR")).upper()
            data = contour.get("ContourData")
            if kind != "CLOSED_PLANAR" or data is None or len(data) < 9:
                continue
            points = np.asarray(data, dtype=np.float64).reshape(-1, 3)
            idx = grid.index_of_points(points)
            k_mean = float(idx[:, 2].mean())
            k = min(max(int(np.rint(k_mean)), 0), nz - 1)
            if np.ptp(idx[:, 2]) > 2 * PLANAR_TOL + 1e-9:
                spread_out += 1
            plane_mm = float(points.mean(axis=0) @ normal)
            distance_mm = abs(k_mean - k) * spacing_z
            if distance_mm > plane_tolerance_mm + 1e-6:
                off_slice.append((plane_mm, distance_mm))
                continue
            by_slice.setdefault(k, []).append(_Polygon(plane_mm, idx[:, 0], idx[:, 1]))
        mask = np.zeros(grid.shape_zyx, dtype=bool)
        merged: list[tuple[int, list[float]]] = []  # (slice, plane positions) where several planes fall on one slice
        for k, polygons in sorted(by_slice.items()):
            planes = _planes(polygons)
            if len(planes) == 1:
                for polygon in planes[0]:
                    fill_polygon(mask[k], polygon.cols, polygon.rows)
                continue
            merged.append((k, [float(np.mean([p.plane_mm for p in plane])) for plane in planes]))
            for plane in planes:
                layer = np.zeros(mask.shape[1:], dtype=bool)
                for polygon in plane:
                    fill_polygon(layer, polygon.cols, polygon.rows)  # XOR within the plane
                mask[k] |= layer  # union across planes
        if off_slice:
            planes_mm = sorted({round(z, 2) for z, _ in off_slice})
            out.warnings.append(
                f"{what}: ROI '{name}': {len(off_slice)} contour(s) in the plane(s) at z = {_listed(planes_mm)} mm lie "
                f"farther than {plane_tolerance_mm:g} mm from every CT slice (the nearest is "
                f"{min(d for _, d in off_slice):.2f} mm away; the CT slices run from z = {first_slice_mm:.2f} to "
                f"{first_slice_mm + (nz - 1) * spacing_z:.2f} mm, every {spacing_z:g} mm) and were not used; the "
                "RTSTRUCT was probably drawn on another image. If it was drawn on another reconstruction of this CT, "
                "raise import.contour_plane_tolerance_mm"
            )
        if merged:
            k, planes_mm = merged[0]
            out.warnings.append(
                f"{what}: ROI '{name}': contours of {max(len(z) for _, z in merged)} different planes fall on one CT "
                f"slice at {len(merged)} slice(s) (e.g. slice {k} at z = {first_slice_mm + k * spacing_z:.2f} mm takes "
                f"the planes at z = {_listed(planes_mm)} mm); they are combined by union (XOR only within a plane). "
                "The RTSTRUCT was drawn on thinner slices than this CT"
            )
        if spread_out:
            out.warnings.append(f"{what}: ROI '{name}': {spread_out} contour(s) are not parallel to the CT slices")
        if not by_slice:
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


def rasterize(rtstruct_path: str, ct_dir: str, plane_tolerance_mm: float = PLANE_TOLERANCE_MM) -> dict[str, np.ndarray]:
    """Every ROI with contours, as a boolean (z, y, x) mask on the grid of the CT series in `ct_dir`.

    Public entry point (DESIGN.md section 7). When `ct_dir` holds several CT series, the one the RTSTRUCT
    references is used (by SeriesInstanceUID, else by frame of reference), else the one with the most slices.
    Messages name the RTSTRUCT by its file name and never the folder (folders are often named after the patient).
    """
    from hnseg.dicom.series import scan_folder
    from hnseg.dicom.volume import plan_stack, planes_from_datasets

    name = Path(rtstruct_path).name
    rtstruct = pydicom.dcmread(rtstruct_path, force=True)
    if getattr(rtstruct, "Modality", None) != "RTSTRUCT":
        raise InputError(f"{name} is not an RTSTRUCT (Modality {getattr(rtstruct, 'Modality', None)!r})")
    scan = scan_folder(Path(ct_dir))
    cts = [s for s in scan.series if s.modality == "CT" and s.is_image]
    if not cts:
        raise InputError(f"no CT series in the folder given as ct_dir for {name}; pass the folder of its CT")
    referenced = referenced_series_uids(rtstruct)
    ct = next((s for s in cts if s.uid in referenced), None)
    if ct is None:
        ct = max(cts, key=lambda s: len(s.instances))
    planes = planes_from_datasets([i.header for i in ct.instances], [str(i.path) for i in ct.instances])
    grid = plan_stack(planes, ct.label()).grid
    result = rasterize_dataset(rtstruct, grid, what=name, plane_tolerance_mm=plane_tolerance_mm)
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
