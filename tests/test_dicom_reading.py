"""Series discovery, volume geometry and RTSTRUCT rasterisation on real third-party DICOM (pydicom's test files)
and on small series written here with pydicom, covering the pitfalls in reference/dicom.md section 4."""

import os
from pathlib import Path

import numpy as np
import pydicom
import pydicom.data
import pytest
import SimpleITK as sitk
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from hnseg.dicom.rtstruct import fill_polygon, rasterize, rasterize_dataset
from hnseg.dicom.series import scan_folder
from hnseg.dicom.volume import Grid, plan_stack, planes_from_datasets, stack_planes
from hnseg.errors import InputError

PYDICOM_FILES = Path(os.path.dirname(pydicom.data.get_testdata_file("CT_small.dcm")))
DICOMDIR_TESTS = PYDICOM_FILES / "dicomdirtests"


def read(series, **policy):
    planes = planes_from_datasets([i.header for i in series.instances], [str(i.path) for i in series.instances])
    return stack_planes(planes, "test series", **policy)


def sitk_read(paths):
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(p) for p in paths])
    reader.SetOutputPixelType(sitk.sitkFloat32)
    return reader.Execute()


# --- real files shipped with pydicom ---------------------------------------------------------------------------------


def test_folder_scan_groups_by_series_and_skips_dicomdir_and_stray_files():
    scan = scan_folder(DICOMDIR_TESTS)
    skipped = dict(scan.skipped)
    assert skipped["DICOMDIR"].startswith("DICOMDIR") and skipped["TINY_ALPHA/DICOMDIR"].startswith("DICOMDIR")
    assert skipped["README.txt"] == "not a readable DICOM file"
    by_desc = {s.description: s for s in scan.series}
    # the two localiser images of 98892001/CT2N are one series, set aside as scouts
    scout = by_desc["Scout"]
    assert not scout.instances and len(scout.excluded) == 2 and scout.excluded[0][1] == "localiser/scout image"
    # a series is grouped by UID wherever its files lie
    assert len(by_desc["SmartScore - Gated 0.5 sec"].instances) == 5


def test_slices_are_sorted_by_position_not_instance_number():
    series = next(s for s in scan_folder(DICOMDIR_TESTS / "98892001").series if s.instances)
    numbers = [int(i.header.InstanceNumber) for i in series.instances]
    volume = read(series)
    reference = sitk_read(
        sorted((i.path for i in series.instances), key=lambda p: -float(pydicom.dcmread(p).ImagePositionPatient[2]))
    )
    # InstanceNumber runs against z in this real series; our order follows the slice normal
    assert numbers != sorted(numbers) or numbers != sorted(numbers, reverse=True)
    assert np.all(np.diff(volume.slice_positions) > 0)
    assert volume.spacing == pytest.approx(reference.GetSpacing(), abs=1e-4)
    ref_array = sitk.GetArrayFromImage(reference)
    if reference.GetDirection()[8] < 0:
        ref_array = ref_array[::-1]
    assert np.allclose(volume.array, ref_array)


def test_a_gap_in_a_real_series_is_refused_or_resampled():
    series = next(s for s in scan_folder(DICOMDIR_TESTS / "77654033" / "CT2").series)
    with pytest.raises(InputError, match=r"(missing slice|non-uniform).*on_missing_slice"):
        read(series)
    volume = read(series, on_missing_slice="resample")
    assert volume.array.shape[0] > len(series.instances)
    assert any("resampled linearly" in w for w in volume.warnings)


def test_truncated_pixel_data_is_a_clear_error(tmp_path):
    from hnseg.dicom.importer import ImportOptions, read_series

    (tmp_path / "mr").mkdir()
    for i in range(5):
        ds = pydicom.dcmread(PYDICOM_FILES / "MR_small.dcm")
        ds.SOPInstanceUID = generate_uid(entropy_srcs=["trunc", str(i)])
        ds.ImagePositionPatient = [0.0, 0.0, 5.0 * i]
        ds.save_as(tmp_path / "mr" / f"{i}.dcm")
    raw = (tmp_path / "mr" / "2.dcm").read_bytes()
    (tmp_path / "mr" / "2.dcm").write_bytes(raw[: len(raw) - 3000])
    series = scan_folder(tmp_path / "mr").series[0]
    with pytest.raises(InputError, match=r"cannot read the pixel data.*re-export"):
        read_series(series, "patient X, MR", ImportOptions())


def test_pydicoms_rtstruct_point_rois_are_skipped_and_contours_placed():
    ds = pydicom.dcmread(PYDICOM_FILES / "rtstruct.dcm", force=True)
    # a grid covering the file's 'patient' contours at z = -200, -190, -180 mm
    grid = Grid(
        origin=(-250.0, -250.0, -200.0),
        spacing=(10.0, 10.0, 10.0),
        direction=(1, 0, 0, 0, 1, 0, 0, 0, 1),
        shape_zyx=(3, 51, 51),
    )
    result = rasterize_dataset(ds, grid)
    assert set(result.masks) == {"patient"}
    assert result.skipped == {
        "Isocenter 1": "no closed planar contour on the CT slices",
        "Isocenter 2": "no closed planar contour on the CT slices",
    }
    assert all(result.masks["patient"][k].any() for k in range(3))


# --- series written here -----------------------------------------------------------------------------------------


def write_series(
    folder: Path,
    *,
    n=6,
    shape=(12, 16),
    spacing=(1.5, 1.0),
    step=3.0,
    iop=(1, 0, 0, 0, 1, 0),
    shear=(0.0, 0.0),
    slopes=None,
    skip=(),
):
    """A CT series with a known value per voxel: value = 100 * slice + 10 * row + column (before rescale)."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid, for_uid = generate_uid(entropy_srcs=[str(folder)]), generate_uid(entropy_srcs=[str(folder), "for"])
    row_c, col_c = np.array(iop[:3], float), np.array(iop[3:], float)
    normal = np.cross(row_c, col_c)
    paths = []
    for k in range(n):
        if k in skip:
            continue
        ds = pydicom.Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[str(folder), str(k)])
        ds.Modality, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = "CT", series_uid, for_uid
        ds.InstanceNumber = n - k  # against the slice order, on purpose
        position = np.array([-10.0, -20.0, 30.0]) + k * step * normal + k * np.array([shear[0], shear[1], 0.0])
        ds.ImagePositionPatient = [f"{v:.6f}" for v in position]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in iop]
        ds.PixelSpacing = [spacing[0], spacing[1]]
        ds.Rows, ds.Columns = shape
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.RescaleSlope = (slopes or [1.0] * n)[k]
        ds.RescaleIntercept = -1024
        r, c = np.mgrid[0 : shape[0], 0 : shape[1]]
        ds.PixelData = (100 * k + 10 * r + c).astype(np.uint16).tobytes()
        path = folder / f"f{(k * 7919) % 10007:05d}"  # names unrelated to the slice order
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def test_geometry_and_per_slice_rescale_match_simpleitk_float_reading(tmp_path):
    slopes = [1.0, 0.5, 0.25, 2.0, 1.5, 0.75]  # the first slope is 1.0: SimpleITK's int-typing trap
    paths = write_series(tmp_path / "ct", slopes=slopes)
    series = scan_folder(tmp_path / "ct").series[0]
    volume = read(series)
    reference = sitk_read(sorted(paths, key=lambda p: float(pydicom.dcmread(p).ImagePositionPatient[2])))
    assert volume.origin == pytest.approx(reference.GetOrigin())
    assert volume.spacing == pytest.approx(reference.GetSpacing())
    assert volume.direction == pytest.approx(reference.GetDirection())
    r, c = np.mgrid[0:12, 0:16]
    for k in range(6):
        assert np.allclose(volume.array[k], (100 * k + 10 * r + c) * slopes[k] - 1024)


def test_oblique_series_keeps_its_direction(tmp_path):
    a = np.deg2rad(12)
    iop = (1, 0, 0, 0, np.cos(a), np.sin(a))
    paths = write_series(tmp_path / "mr", iop=iop)
    volume = read(scan_folder(tmp_path / "mr").series[0])
    reference = sitk_read(sorted(paths, key=lambda p: int(p.name[4:]) and 0) or paths)
    normal = np.cross(iop[:3], iop[3:])
    assert np.allclose(np.asarray(volume.direction).reshape(3, 3)[:, 2], normal)
    assert np.allclose(np.asarray(volume.direction).reshape(3, 3)[:, 1], iop[3:])
    assert volume.spacing[2] == pytest.approx(3.0)
    assert reference.GetSize()[2] == 6


def test_gantry_tilt_is_refused_or_resampled(tmp_path):
    write_series(tmp_path / "tilt", shear=(0.0, 1.0))  # 1 mm in-plane drift per slice
    series = scan_folder(tmp_path / "tilt").series[0]
    with pytest.raises(InputError, match=r"drift .* mm in-plane.*on_gantry_tilt"):
        read(series)
    volume = read(series, on_gantry_tilt="resample")
    assert any("gantry tilt" in w for w in volume.warnings)
    # slice k was stored k mm further along +y (rows are 1.5 mm apart): on the common grid it moves back k/1.5 rows
    r, c = np.mgrid[0:12, 0:16]
    expected_k1 = 100 + 10 * (r - 1.0 / 1.5) + c - 1024  # slice 1 sat 1 mm further along +y: row r shows r - 1/1.5
    assert np.allclose(volume.array[1][2:-2], expected_k1[2:-2], atol=1e-3)


def test_missing_slice_in_a_written_series(tmp_path):
    write_series(tmp_path / "gap", n=7, skip=(3,))
    series = scan_folder(tmp_path / "gap").series[0]
    with pytest.raises(InputError, match=r"missing slice\(s\): gap of 6.000 mm"):
        read(series)
    volume = read(series, on_missing_slice="resample")
    assert volume.array.shape[0] == 7
    r, c = np.mgrid[0:12, 0:16]
    assert np.allclose(volume.array[3], 300 + 10 * r + c - 1024)  # linear between slices 2 and 4


def test_duplicate_positions_and_mixed_stacks_are_refused(tmp_path):
    paths = write_series(tmp_path / "dup", n=4)
    ds = pydicom.dcmread(paths[0])
    ds.SOPInstanceUID = generate_uid(entropy_srcs=["dup copy"])
    ds.save_as(tmp_path / "dup" / "copy")
    with pytest.raises(InputError, match="same position"):
        read(scan_folder(tmp_path / "dup").series[0])


def test_stray_localiser_in_the_series_is_left_out(tmp_path):
    write_series(tmp_path / "loc", n=40)
    ds = pydicom.dcmread(next((tmp_path / "loc").iterdir()))
    ds.SOPInstanceUID = generate_uid(entropy_srcs=["loc"])
    ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]  # coronal, no LOCALIZER in ImageType
    ds.save_as(tmp_path / "loc" / "scout")
    volume = read(scan_folder(tmp_path / "loc").series[0])
    assert volume.array.shape[0] == 40 and "left out" in volume.warnings[0]


# --- rasteriser --------------------------------------------------------------------------------------------------


def test_fill_polygon_uses_voxel_centres_and_even_odd():
    mask = np.zeros((10, 10), dtype=bool)
    square = np.array([[1.5, 1.5], [6.5, 1.5], [6.5, 6.5], [1.5, 6.5]])
    fill_polygon(mask, square[:, 0], square[:, 1])
    expected = np.zeros((10, 10), dtype=bool)
    expected[2:7, 2:7] = True
    assert np.array_equal(mask, expected)
    hole = np.array([[3.5, 3.5], [4.5, 3.5], [4.5, 4.5], [3.5, 4.5]])
    fill_polygon(mask, hole[:, 0], hole[:, 1])  # XOR: a ring
    expected[4, 4] = False
    assert np.array_equal(mask, expected)


def test_fill_polygon_matches_matplotlib_on_random_polygons():
    from matplotlib.path import Path as MplPath

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:80]
    centres = np.column_stack([xx.ravel(), yy.ravel()]).astype(float)
    for _ in range(20):
        angles = np.sort(rng.uniform(0, 2 * np.pi, 25))
        radius = rng.uniform(5, 28, 25)
        pts = np.column_stack([40 + radius * np.cos(angles) + 0.123, 32 + radius * np.sin(angles) + 0.071])
        mask = np.zeros((64, 80), dtype=bool)
        fill_polygon(mask, pts[:, 0], pts[:, 1])
        truth = MplPath(pts).contains_points(centres).reshape(64, 80)
        assert np.array_equal(mask, truth)


def rtstruct_for(ct_paths, rois):
    """An RTSTRUCT with rois: list of (number, name, [(z_mm, [(x, y), ...]), ...]); ROIContourSequence reversed."""
    ct = pydicom.dcmread(ct_paths[0])
    ds = pydicom.Dataset()
    ds.Modality = "RTSTRUCT"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.481.3"
    ref = pydicom.Dataset()
    ref.FrameOfReferenceUID = ct.FrameOfReferenceUID
    ds.ReferencedFrameOfReferenceSequence = [ref]
    ds.StructureSetROISequence, ds.ROIContourSequence = [], []
    for number, name, contours in rois:
        item = pydicom.Dataset()
        item.ROINumber, item.ROIName = number, name
        ds.StructureSetROISequence.append(item)
        rc = pydicom.Dataset()
        rc.ReferencedROINumber = number
        rc.ContourSequence = []
        for z, pts in contours:
            c = pydicom.Dataset()
            c.ContourGeometricType = "CLOSED_PLANAR"
            c.ContourData = [v for x, y in pts for v in (x, y, z)]
            rc.ContourSequence.append(c)
        ds.ROIContourSequence.append(rc)
    ds.ROIContourSequence = list(reversed(ds.ROIContourSequence))
    return ds


def test_rasterize_pairs_by_roi_number_handles_rings_and_reports_off_slice_contours(tmp_path):
    paths = write_series(tmp_path / "ct", n=5, shape=(20, 24), spacing=(1.0, 1.0), step=2.5)

    # CT slices at z = 30, 32.5, 35, 37.5, 40; pixel (col, row) centre at x = -10 + col, y = -20 + row
    def box(x0, y0, x1, y1):
        return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]

    rois = [
        (7, "GTVp", [(32.5 + 0.01, box(-8.5, -17.5, -3.5, -12.5))]),  # a hair off the slice plane
        (3, "ring", [(35.0, box(-9.5, -19.5, 3.5, -6.5)), (35.0, box(-6.5, -16.5, 0.5, -9.5))]),
        (5, "elsewhere", [(47.0, box(-5, -5, 0, 0))]),  # beyond the last slice (40 mm): not placed
    ]
    ds = rtstruct_for(paths, rois)
    rs_path = tmp_path / "rs.dcm"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPInstanceUID = generate_uid()
    ds.save_as(rs_path, enforce_file_format=False)
    masks = rasterize(str(rs_path), str(tmp_path / "ct"))
    assert set(masks) == {"GTVp", "ring"}
    gtv = np.zeros((5, 20, 24), dtype=bool)
    gtv[1, 3:8, 2:7] = True
    assert np.array_equal(masks["GTVp"], gtv)
    ring = np.zeros((5, 20, 24), dtype=bool)
    ring[2, 1:14, 1:14] = True
    ring[2, 4:11, 4:11] = False
    assert np.array_equal(masks["ring"], ring)
    result = rasterize_dataset(
        ds,
        plan_stack(
            planes_from_datasets([pydicom.dcmread(p, stop_before_pixels=True) for p in paths], [str(p) for p in paths]),
            "ct",
        ).grid,
    )
    (warning,) = [w for w in result.warnings if "'elsewhere'" in w]
    assert "z = 47.00 mm" in warning and "farther than 1 mm from every CT slice" in warning
    assert "7.00 mm away" in warning and "not used" in warning


def ct_grid(paths):
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in paths]
    return plan_stack(planes_from_datasets(headers, [str(p) for p in paths]), "ct").grid


def square(x0, y0, x1, y1):
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def test_contours_of_two_planes_on_one_ct_slice_are_combined_by_union(tmp_path):
    # An RTSTRUCT drawn on 1 mm slices, rasterised on a CT of 3 mm: planes 33.0 and 33.6 both fall on the slice at
    # z = 33. Within the first plane a ring (outer and inner contour, their z a hair apart) keeps its hole (XOR);
    # the second plane's square overlaps the ring and its hole, and is added by union, never XOR-ed away.
    paths = write_series(tmp_path / "ct", n=4, shape=(20, 24), spacing=(1.0, 1.0), step=3.0)
    grid = ct_grid(paths)  # slices at z = 30, 33, 36, 39; pixel (col, row) centre at x = -10 + col, y = -20 + row
    outer, inner = square(-9.5, -19.5, 3.5, -6.5), square(-6.5, -16.5, 0.5, -9.5)  # cols/rows 1..13 and 4..10
    patch = square(-3.5, -13.5, 9.5, -3.5)  # cols 7..19, rows 7..16
    rois = [(1, "GTV_T", [(33.0 + 0.01, outer), (33.0 - 0.01, inner), (33.6, patch), (36.0, patch)])]
    result = rasterize_dataset(rtstruct_for(paths, rois), grid, what="RTSTRUCT #1")
    ring = np.zeros((20, 24), dtype=bool)
    ring[1:14, 1:14] = True
    ring[4:11, 4:11] = False
    square_mask = np.zeros((20, 24), dtype=bool)
    square_mask[7:17, 7:20] = True
    expected = np.zeros((4, 20, 24), dtype=bool)
    expected[1] = ring | square_mask
    expected[2] = square_mask
    assert np.array_equal(result.masks["GTV_T"], expected)
    assert not np.array_equal(ring ^ square_mask, expected[1])  # the overlap is where XOR would punch a hole
    (warning,) = result.warnings
    assert warning.startswith(
        "RTSTRUCT #1: ROI 'GTV_T': contours of 2 different planes fall on one CT slice at 1 slice"
    )
    assert "slice 1 at z = 33.00 mm takes the planes at z = 33.00, 33.60 mm" in warning
    assert "combined by union" in warning


def test_contour_planes_beyond_the_tolerance_in_mm_are_reported_and_not_used(tmp_path):
    paths = write_series(tmp_path / "ct", n=4, shape=(20, 24), spacing=(1.0, 1.0), step=3.0)
    grid = ct_grid(paths)
    patch = square(-3.5, -13.5, 9.5, -3.5)
    # 34.2 mm is 1.2 mm from the slice at 33 (less than half of the 3 mm slice, so rounding alone places it)
    rois = [(1, "GTV_T", [(36.0, patch), (34.2, patch)]), (2, "GTVn", [(34.2, patch)])]
    strict = rasterize_dataset(rtstruct_for(paths, rois), grid, what="RTSTRUCT #1", plane_tolerance_mm=1.0)
    assert strict.masks["GTV_T"][1].sum() == 0 and strict.masks["GTV_T"][2].sum() == 130
    assert strict.skipped == {"GTVn": "no closed planar contour on the CT slices"}
    warnings = sorted(strict.warnings)
    assert len(warnings) == 2
    for warning, roi in zip(warnings, ("GTV_T", "GTVn"), strict=True):
        assert f"ROI '{roi}': 1 contour(s) in the plane(s) at z = 34.20 mm lie farther than 1 mm" in warning
        assert "the nearest is 1.20 mm away" in warning and "raise import.contour_plane_tolerance_mm" in warning
    lenient = rasterize_dataset(rtstruct_for(paths, rois), grid, plane_tolerance_mm=1.5)
    assert lenient.warnings == [] and lenient.masks["GTV_T"][1].sum() == 130 and lenient.masks["GTVn"].sum() == 130
    with pytest.raises(InputError, match="contour_plane_tolerance_mm"):
        rasterize_dataset(rtstruct_for(paths, rois), grid, plane_tolerance_mm=-1)


def test_non_square_grid_keeps_columns_beyond_the_row_count(tmp_path):
    # rt-utils loses ROIs at columns >= Rows on non-square images (reference/dicom.md): ours must not
    paths = write_series(tmp_path / "ct", n=3, shape=(12, 40), spacing=(1.0, 1.0), step=3.0)
    ds = rtstruct_for(
        paths,
        [
            (
                1,
                "far",
                [
                    (
                        33.0,
                        [
                            (25.5 - 10, -20 + 2.5),
                            (30.5 - 10, -20 + 2.5),
                            (30.5 - 10, -20 + 6.5),
                            (25.5 - 10, -20 + 6.5),
                        ],
                    )
                ],
            )
        ],
    )
    grid = plan_stack(
        planes_from_datasets([pydicom.dcmread(p, stop_before_pixels=True) for p in paths], [str(p) for p in paths]),
        "ct",
    ).grid
    mask = rasterize_dataset(ds, grid).masks["far"]
    assert mask.sum() == 20 and mask[1, 3:7, 26:31].all()
