"""Image volumes from DICOM instances with correct geometry (DESIGN.md section 5; reference/dicom.md section 4).

Works on classic single-frame series and on enhanced multi-frame objects alike: both become a list of
`Plane`s (position, orientation, pixel spacing, rescale, a way to get the pixels), which are then checked and
stacked. Slices are sorted by their position along the slice normal (never by InstanceNumber); rescale is
applied per plane in float32. Geometry that SimpleITK would read wrongly without a word is either refused with
a message naming the series and the fix, or, when the policy asks for it, resampled with a warning:

- a missing slice or non-uniform spacing  (policy `on_missing_slice`: refuse | resample)
- gantry tilt: slice origins not along the normal  (policy `on_gantry_tilt`: refuse | resample)
- orientations that differ between slices, duplicate positions: always refused.

Oblique orientations keep their direction matrix.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pydicom
import SimpleITK as sitk
from scipy import ndimage

from hnseg.errors import InputError

ORIENTATION_TOL = 1e-3  # direction cosines
POSITION_TOL_MM = 0.05  # in-plane offset of slice origins along a stack
SPACING_REL_TOL = 0.01  # relative deviation of a slice gap from the nominal spacing
MAX_STRAY_PLANES = 3  # at most this many slices of another orientation (and < 10 %) are dropped as localisers


@dataclass
class Plane:
    position: np.ndarray  # ImagePositionPatient (3,), mm
    row_cosine: np.ndarray  # direction of increasing column index (first 3 of IOP)
    col_cosine: np.ndarray  # direction of increasing row index (last 3 of IOP)
    pixel_spacing: tuple[float, float]  # (between rows, between columns) as in PixelSpacing
    slope: float
    intercept: float
    rows: int
    columns: int
    pixels: Callable[[], np.ndarray]  # stored values (rows, columns)
    source: str = ""  # for messages: file name, or file name and frame


@dataclass
class Volume:
    """A float32 volume in SimpleITK array order (z, y, x) and its geometry, plus what was done to get it."""

    array: np.ndarray
    origin: tuple[float, float, float]
    spacing: tuple[float, float, float]  # (x, y, z) as SimpleITK
    direction: tuple[float, ...]  # 9 values, row-major, as SimpleITK
    warnings: list[str] = field(default_factory=list)
    slice_positions: np.ndarray | None = None  # positions along the normal of the source planes (sorted), mm

    def to_sitk(self, dtype=np.float32) -> sitk.Image:
        image = sitk.GetImageFromArray(self.array.astype(dtype, copy=False))
        image.SetOrigin(self.origin)
        image.SetSpacing(self.spacing)
        image.SetDirection(self.direction)
        return image


def _floats(value, n: int, what: str, source: str) -> np.ndarray:
    if value is None:
        raise InputError(f"{source}: {what} is missing, so the slice cannot be placed in space")
    arr = np.asarray([float(v) for v in value], dtype=np.float64)
    if arr.shape != (n,):
        raise InputError(f"{source}: {what} should have {n} values, has {arr.size}")
    return arr


def _read_pixels(path: str) -> np.ndarray:
    ds = pydicom.dcmread(path, force=True)  # files without preamble/file meta are accepted by scan_folder too
    if "TransferSyntaxUID" not in ds.file_meta:  # no file meta: the encoding the dataset was read with
        implicit, little = ds.original_encoding
        ds.file_meta.TransferSyntaxUID = (
            pydicom.uid.ImplicitVRLittleEndian
            if implicit
            else (pydicom.uid.ExplicitVRLittleEndian if little else pydicom.uid.ExplicitVRBigEndian)
        )
    return ds.pixel_array


@functools.lru_cache(maxsize=1)
def _all_frames(path: str, mtime_ns: int, size: int) -> np.ndarray:
    """Every frame of a multi-frame file, decoded once for all its planes (keyed by mtime and size: never stale)."""
    return _read_pixels(path)


def _pixels_of(path: str, frame: int | None = None) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        if frame is None:
            return _read_pixels(path)
        stat = os.stat(path)
        return _all_frames(path, stat.st_mtime_ns, stat.st_size)[frame]

    return load


def planes_from_datasets(headers: Sequence[pydicom.Dataset], paths: Sequence[str]) -> list[Plane]:
    """Planes of a series: one per single-frame instance, one per frame of an enhanced multi-frame instance."""
    planes: list[Plane] = []
    for ds, path in zip(headers, paths, strict=True):
        name = path.rsplit("/", 1)[-1]
        if "PerFrameFunctionalGroupsSequence" in ds:
            planes.extend(_planes_of_multiframe(ds, path))
            continue
        iop = _floats(ds.get("ImageOrientationPatient"), 6, "ImageOrientationPatient", name)
        spacing = _floats(ds.get("PixelSpacing"), 2, "PixelSpacing", name)
        planes.append(
            Plane(
                position=_floats(ds.get("ImagePositionPatient"), 3, "ImagePositionPatient", name),
                row_cosine=iop[:3],
                col_cosine=iop[3:],
                pixel_spacing=(float(spacing[0]), float(spacing[1])),
                slope=float(ds.get("RescaleSlope", 1.0) or 1.0),
                intercept=float(ds.get("RescaleIntercept", 0.0) or 0.0),
                rows=int(ds.Rows),
                columns=int(ds.Columns),
                pixels=_pixels_of(path),
                source=name,
            )
        )
    return planes


def _functional(ds: pydicom.Dataset, frame_group, sequence: str):
    """An item of a functional group sequence, per frame first, shared otherwise."""
    if sequence in frame_group:
        return frame_group[sequence][0]
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared and sequence in shared[0]:
        return shared[0][sequence][0]
    return None


def _planes_of_multiframe(ds: pydicom.Dataset, path: str) -> list[Plane]:
    name = path.rsplit("/", 1)[-1]
    planes = []
    for i, group in enumerate(ds.PerFrameFunctionalGroupsSequence):
        src = f"{name} frame {i + 1}"
        pos = _functional(ds, group, "PlanePositionSequence")
        ori = _functional(ds, group, "PlaneOrientationSequence")
        meas = _functional(ds, group, "PixelMeasuresSequence")
        if pos is None or ori is None or meas is None:
            raise InputError(
                f"{src}: the enhanced multi-frame object has no plane position, orientation or pixel measures, "
                "so its geometry is unknown; export the series as classic single-frame images"
            )
        iop = _floats(ori.get("ImageOrientationPatient"), 6, "ImageOrientationPatient", src)
        spacing = _floats(meas.get("PixelSpacing"), 2, "PixelSpacing", src)
        trans = _functional(ds, group, "PixelValueTransformationSequence")
        slope = float(trans.get("RescaleSlope", 1.0)) if trans is not None else float(ds.get("RescaleSlope", 1.0))
        intercept = (
            float(trans.get("RescaleIntercept", 0.0)) if trans is not None else float(ds.get("RescaleIntercept", 0.0))
        )
        planes.append(
            Plane(
                position=_floats(pos.get("ImagePositionPatient"), 3, "ImagePositionPatient", src),
                row_cosine=iop[:3],
                col_cosine=iop[3:],
                pixel_spacing=(float(spacing[0]), float(spacing[1])),
                slope=slope,
                intercept=intercept,
                rows=int(ds.Rows),
                columns=int(ds.Columns),
                pixels=_pixels_of(path, frame=i),
                source=src,
            )
        )
    return planes


def _majority_orientation(planes: list[Plane]) -> np.ndarray:
    iops = np.array([np.concatenate([p.row_cosine, p.col_cosine]) for p in planes])
    best, best_count = iops[0], 0
    for candidate in iops:
        count = int(np.sum(np.all(np.abs(iops - candidate) < ORIENTATION_TOL, axis=1)))
        if count > best_count:
            best, best_count = candidate, count
    return best


@dataclass
class Grid:
    """Where the voxels of a volume are: SimpleITK conventions (spacing x, y, z; direction row-major)."""

    origin: tuple[float, float, float]
    spacing: tuple[float, float, float]
    direction: tuple[float, ...]
    shape_zyx: tuple[int, int, int]

    def index_of_points(self, points_xyz: np.ndarray) -> np.ndarray:
        """Continuous (i, j, k) voxel indices (column, row, slice) of physical points (N, 3)."""
        d = np.asarray(self.direction, dtype=np.float64).reshape(3, 3)
        rel = np.asarray(points_xyz, dtype=np.float64) - np.asarray(self.origin)
        return (rel @ d) / np.asarray(self.spacing)


@dataclass
class StackPlan:
    """Sorted planes and the grid they will be stacked (and, if needed, resampled) onto."""

    planes: list[Plane]
    grid: Grid
    positions_along_normal: np.ndarray
    inplane_offsets: np.ndarray  # (n, 3) origin of each plane minus its component along the normal
    tilt_drift_mm: float
    resample_to: np.ndarray | None  # target positions along the normal when slices are resampled
    warnings: list[str]


def plan_stack(
    planes: list[Plane],
    what: str,
    on_missing_slice: str = "refuse",
    on_gantry_tilt: str = "refuse",
) -> StackPlan:
    """Check planes and decide the grid, without reading pixels. `what` names the series in messages."""
    if not planes:
        raise InputError(f"{what}: no image planes")
    iop = _majority_orientation(planes)
    odd = [p for p in planes if np.any(np.abs(np.concatenate([p.row_cosine, p.col_cosine]) - iop) > ORIENTATION_TOL)]
    warnings: list[str] = []
    if odd:
        if len(odd) > MAX_STRAY_PLANES or len(odd) * 10 > len(planes):
            raise InputError(
                f"{what}: {len(odd)} of {len(planes)} slices have another orientation than the rest (e.g. "
                f"{odd[0].source}): two stacks in one series; split the series or export the stack you want"
            )
        planes = [p for p in planes if all(p is not o for o in odd)]
        warnings.append(
            f"{what}: {len(odd)} slice(s) with another orientation (localiser-like: {', '.join(o.source for o in odd)}) "
            "left out"
        )
    shapes = {(p.rows, p.columns, round(p.pixel_spacing[0], 4), round(p.pixel_spacing[1], 4)) for p in planes}
    if len(shapes) > 1:
        raise InputError(f"{what}: slices differ in matrix size or pixel spacing ({sorted(shapes)}); cannot stack them")
    row_c, col_c = iop[:3], iop[3:]
    normal = np.cross(row_c, col_c)
    normal /= np.linalg.norm(normal)
    pos = np.array([p.position for p in planes])
    s = pos @ normal
    order = np.argsort(s, kind="stable")
    planes = [planes[i] for i in order]
    s, pos = s[order], pos[order]
    if len(planes) > 1:
        dup = np.where(np.diff(s) < 1e-3)[0]
        if dup.size:
            raise InputError(
                f"{what}: two slices at the same position ({planes[dup[0]].source} and {planes[dup[0] + 1].source}); "
                "remove the duplicate from the export"
            )
    # Gantry tilt / shear: the in-plane offset of each origin must not change along the stack.
    offsets = pos - np.outer(s, normal)
    drift = float(np.linalg.norm(offsets - offsets[0], axis=1).max()) if len(planes) > 1 else 0.0
    if drift > POSITION_TOL_MM:
        if on_gantry_tilt != "resample":
            raise InputError(
                f"{what}: slice origins drift {drift:.2f} mm in-plane along the stack (gantry tilt or a sheared "
                "reconstruction); SimpleITK would read it as an orthogonal volume. Reconstruct without tilt, or set "
                "import.on_gantry_tilt: resample"
            )
        warnings.append(f"{what}: gantry tilt ({drift:.2f} mm in-plane drift) resampled onto an orthogonal grid")

    resample_to = None
    n_slices = len(planes)
    if len(planes) > 1:
        gaps = np.diff(s)
        nominal = float(np.median(gaps))
        irregular = np.abs(gaps - nominal) > SPACING_REL_TOL * nominal
        if np.any(irregular):
            k = int(np.argmax(irregular))
            missing = bool(np.all(np.abs(gaps / nominal - np.round(gaps / nominal)) < SPACING_REL_TOL))
            kind = "missing slice(s)" if missing else "non-uniform slice spacing"
            detail = f"gap of {gaps[k]:.3f} mm after {planes[k].source} where the spacing is {nominal:.3f} mm"
            if on_missing_slice != "resample":
                raise InputError(
                    f"{what}: {kind}: {detail}. Re-export the complete series, or set import.on_missing_slice: "
                    "resample to interpolate"
                )
            step = nominal if missing else float(gaps.min())
            n_slices = int(np.rint((s[-1] - s[0]) / step)) + 1
            resample_to = s[0] + step * np.arange(n_slices)
            warnings.append(f"{what}: {kind} ({detail}); resampled linearly to {n_slices} slices at {step:.3f} mm")
            nominal = step
        spacing_z = nominal
    else:
        spacing_z = float(planes[0].pixel_spacing[0])

    dy, dx = planes[0].pixel_spacing
    origin = offsets[0] + s[0] * normal
    grid = Grid(
        origin=tuple(float(v) for v in origin),
        spacing=(float(dx), float(dy), float(spacing_z)),
        direction=tuple(float(v) for v in np.column_stack([row_c, col_c, normal]).ravel()),
        shape_zyx=(n_slices, planes[0].rows, planes[0].columns),
    )
    return StackPlan(planes, grid, s, offsets, drift, resample_to, warnings)


def stack_planes(
    planes: list[Plane],
    what: str,
    on_missing_slice: str = "refuse",
    on_gantry_tilt: str = "refuse",
) -> Volume:
    """Check and stack planes into a float32 volume, rescaled per plane; see plan_stack for the checks."""
    plan = plan_stack(planes, what, on_missing_slice, on_gantry_tilt)
    # rescale in float64, store float32: SUV factors make slopes tiny, and float32 products lose the last step
    data = np.stack([(p.pixels().astype(np.float64) * p.slope + p.intercept).astype(np.float32) for p in plan.planes])
    if plan.tilt_drift_mm > POSITION_TOL_MM:
        d = np.asarray(plan.grid.direction).reshape(3, 3)
        dx, dy, _ = plan.grid.spacing
        for k in range(1, len(plan.planes)):
            delta = plan.inplane_offsets[k] - plan.inplane_offsets[0]
            # slice k's rows start `delta` further along: grid row r lies at its row r - delta/dy (output[r] =
            # input[r - shift] in ndimage), so the shift is +delta, not -delta
            data[k] = ndimage.shift(data[k], ((delta @ d[:, 1]) / dy, (delta @ d[:, 0]) / dx), order=1, mode="nearest")
    if plan.resample_to is not None:
        s = plan.positions_along_normal
        idx = np.interp(plan.resample_to, s, np.arange(len(s)))
        lo = np.floor(idx).astype(int)
        hi = np.minimum(lo + 1, len(s) - 1)
        w = (idx - lo).astype(np.float32)[:, None, None]
        data = data[lo] * (1 - w) + data[hi] * w
    g = plan.grid
    return Volume(
        array=np.ascontiguousarray(data, dtype=np.float32),
        origin=g.origin,
        spacing=g.spacing,
        direction=g.direction,
        warnings=plan.warnings,
        slice_positions=plan.positions_along_normal,
    )
