"""DICOM import of synthetic patients: exact labels and SUV, right geometry, no PHI, clear refusals."""

import gzip
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from hnseg.dicom.importer import ImportOptions, import_ct_and_labels, import_mri, import_pet
from hnseg.errors import InputError
from hnseg.synthetic import generate_patient

OPTS = ImportOptions()


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    root = tmp_path_factory.mktemp("clean")
    generate_patient("SYN001", 2024, root / "dicom", root / "truth", size="demo")
    out = root / "imported"
    records = {
        "ct": import_ct_and_labels("SYN001", root / "dicom", out, OPTS),
        "pet": import_pet("SYN001", root / "dicom", out, OPTS),
        "mri": import_mri("SYN001", root / "dicom", out, OPTS),
    }
    return root, out, records


def array(path):
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def files_of(folder: Path, modality: str) -> list[Path]:
    out = []
    for p in sorted(folder.rglob("*")):
        try:
            if p.is_file() and pydicom.dcmread(p, stop_before_pixels=True).Modality == modality:
                out.append(p)
        except pydicom.errors.InvalidDicomError:
            continue
    return out


def test_labels_equal_the_truth(clean):
    root, out, records = clean
    labels, truth = array(out / "labels.nii.gz"), array(root / "truth" / "labels.nii.gz")
    assert labels.dtype == np.uint8
    assert np.array_equal(labels, truth)
    for value in (1, 2):
        a, b = labels == value, truth == value
        if b.any():
            assert 2 * (a & b).sum() / (a.sum() + b.sum()) == 1.0
    rois = json.loads((root / "truth" / "rois.json").read_text())["rois"]
    assert records["ct"]["rois"]["gtv_t"] == [r["name"] for r in rois if r["role"] == "gtv_t"]
    assert sorted(records["ct"]["rois"]["gtv_n"]) == sorted(r["name"] for r in rois if r["role"] == "gtv_n")


def test_suv_equals_the_truth_within_half_a_stored_step(clean):
    root, out, records = clean
    suv, truth = array(out / "pet.nii.gz"), array(root / "truth" / "suv.nii.gz")
    assert suv.shape == truth.shape
    datasets = [pydicom.dcmread(p, stop_before_pixels=True) for p in files_of(root / "dicom", "PT")]
    datasets.sort(key=lambda d: float(d.ImagePositionPatient[2]))
    factor = records["pet"]["suv"]["factor_max"]
    for k, ds in enumerate(datasets):
        half_step = float(ds.RescaleSlope) * factor / 2
        float32_rounding = np.spacing(np.float32(np.abs(truth[k]).max()))
        assert np.abs(suv[k] - truth[k]).max() <= half_step + float32_rounding


def test_images_are_on_the_geometry_simpleitk_reads(clean):
    root, out, _ = clean
    for name, modality, description in (
        ("ct", "CT", None),
        ("pet", "PT", None),
        ("t1", "MR", "T1"),
        ("t2", "MR", "T2"),
    ):
        paths = [
            p
            for p in files_of(root / "dicom", modality)
            if description is None or description in str(pydicom.dcmread(p, stop_before_pixels=True).SeriesDescription)
        ]
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(paths[0].parent)))
        reader.SetOutputPixelType(sitk.sitkFloat32)
        reference = reader.Execute()
        ours = sitk.ReadImage(str(out / f"{name}.nii.gz"))
        assert ours.GetSize() == reference.GetSize()
        assert ours.GetOrigin() == pytest.approx(reference.GetOrigin(), abs=1e-3)
        assert ours.GetSpacing() == pytest.approx(reference.GetSpacing(), abs=1e-4)
        assert ours.GetDirection() == pytest.approx(reference.GetDirection(), abs=1e-6)
        if name in ("ct", "t1", "t2"):
            assert np.allclose(sitk.GetArrayFromImage(ours), sitk.GetArrayFromImage(reference), atol=1e-3)


def test_no_identifying_data_in_any_output(clean):
    root, out, _ = clean
    phi = json.loads((root / "truth" / "phi.json").read_text())
    needles = [
        phi["PatientName"],
        phi["PatientName"].split("^")[0],
        phi["PatientID"],
        phi["PatientBirthDate"],
        *phi["AccessionNumbers"],
        *phi["StudyDates"],
    ]
    needles += [uid for group in phi["uids"].values() for uid in group.values()]
    outputs = list(out.iterdir())
    assert {p.name for p in outputs} >= {
        "ct.nii.gz",
        "labels.nii.gz",
        "import.json",
        "pet.nii.gz",
        "pet.json",
        "t1.nii.gz",
        "t2.nii.gz",
        "mri.json",
    }
    for path in outputs:
        data = path.read_bytes()
        if path.suffix == ".gz":
            data = gzip.decompress(data)
        for needle in needles:
            assert needle.encode() not in data, f"{needle} found in {path.name}"


def copy_patient(clean, tmp_path) -> Path:
    root, _, _ = clean
    target = tmp_path / "dicom"
    shutil.copytree(root / "dicom", target)
    return target


def edit(paths, **changes):
    for p in paths:
        ds = pydicom.dcmread(p)
        for key, value in changes.items():
            if value is None:
                delattr(ds, key) if key in ds else None
            else:
                setattr(ds, key, value)
        ds.save_as(p)


def test_missing_mri_fails_only_the_mri_import_with_a_clear_message(clean, tmp_path):
    dicom = copy_patient(clean, tmp_path)
    for p in files_of(dicom, "MR"):
        p.unlink()
    with pytest.raises(InputError, match=r"patient SYN001: no T1w and no T2w MR series.*CT-only methods go on"):
        import_mri("SYN001", dicom, tmp_path / "out", OPTS)
    import_ct_and_labels("SYN001", dicom, tmp_path / "out", OPTS)
    import_pet("SYN001", dicom, tmp_path / "out", OPTS)


def test_missing_weight_needs_the_sheet(clean, tmp_path):
    dicom = copy_patient(clean, tmp_path)
    edit(files_of(dicom, "PT"), PatientWeight=None)
    with pytest.raises(InputError, match=r"patient SYN001, PET .*PatientWeight.*weight_kg"):
        import_pet("SYN001", dicom, tmp_path / "out", OPTS)
    record = import_pet("SYN001", dicom, tmp_path / "out", OPTS, weight_kg=75.0)
    assert record["suv"]["weight_source"].startswith("patients sheet") or "sheet" in record["suv"]["weight_source"]


def test_non_attenuation_corrected_pet_is_refused(clean, tmp_path):
    dicom = copy_patient(clean, tmp_path)
    edit(files_of(dicom, "PT"), CorrectedImage=["DECY", "RAN", "NORM"])
    with pytest.raises(InputError, match=r"patient SYN001: no usable PET: PT #3 .* is not attenuation corrected"):
        import_pet("SYN001", dicom, tmp_path / "out", OPTS)


def test_no_gtv_t_names_the_rois_and_the_fix(clean, tmp_path):
    dicom = copy_patient(clean, tmp_path)
    rs = files_of(dicom, "RTSTRUCT")[0]
    ds = pydicom.dcmread(rs)
    truth = json.loads((clean[0] / "truth" / "rois.json").read_text())["rois"]
    gtv_t = {r["name"] for r in truth if r["role"] == "gtv_t"}
    for item in ds.StructureSetROISequence:
        if item.ROIName in gtv_t:
            item.ROIName = "Tumour_primary_site"
    ds.save_as(rs)
    with pytest.raises(
        InputError, match=r"patient SYN001, RTSTRUCT .*no GTV-T ROI.*'Tumour_primary_site'.*roi_patterns"
    ):
        import_ct_and_labels("SYN001", dicom, tmp_path / "out", OPTS)
    record = import_ct_and_labels(
        "SYN001", dicom, tmp_path / "out", ImportOptions(roi_patterns={"gtv_t": ["tumour_primary_site"]})
    )
    assert record["rois"]["gtv_t"] == ["Tumour_primary_site"]


def test_stray_files_dicomdir_and_duplicates_are_tolerated(clean, tmp_path):
    dicom = copy_patient(clean, tmp_path)
    (dicom / "notes.txt").write_text("exported by PACS\n")
    (dicom / "Thumbs.db").write_bytes(b"\x00\x01binary")
    ct_files = files_of(dicom, "CT")
    shutil.copy(ct_files[0], dicom / "duplicate_copy")
    record = import_ct_and_labels("SYN001", dicom, tmp_path / "out", OPTS)
    assert record["files_skipped"] == 2 and record["duplicate_instances"] == 1
    assert np.array_equal(array(tmp_path / "out" / "labels.nii.gz"), array(clean[0] / "truth" / "labels.nii.gz"))


def test_missing_folder_and_empty_folder(tmp_path):
    # the messages name the patient by its pseudonymous id, never the folder (often named after the patient)
    with pytest.raises(InputError, match=r"patient P9: the DICOM folder does not exist.*dicom_dir") as err:
        import_ct_and_labels("P9", tmp_path / "Doe^John_19500101", tmp_path / "out", OPTS)
    assert "Doe" not in str(err.value) and str(tmp_path) not in str(err.value)
    (tmp_path / "Doe^Jane_19600101").mkdir()
    (tmp_path / "Doe^Jane_19600101" / "readme.txt").write_text("x")
    with pytest.raises(InputError, match=r"patient P9: no DICOM files") as err:
        import_ct_and_labels("P9", tmp_path / "Doe^Jane_19600101", tmp_path / "out", OPTS)
    assert "Doe" not in str(err.value) and str(tmp_path) not in str(err.value)


def test_missing_ct_slice_is_refused_naming_the_fix(clean, tmp_path):
    dicom = copy_patient(clean, tmp_path)
    ct = sorted(
        files_of(dicom, "CT"), key=lambda p: float(pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient[2])
    )
    ct[10].unlink()
    with pytest.raises(InputError, match=r"patient SYN001, CT .*missing slice.*on_missing_slice"):
        import_ct_and_labels("SYN001", dicom, tmp_path / "out", OPTS)
    record = import_ct_and_labels("SYN001", dicom, tmp_path / "out", ImportOptions(on_missing_slice="resample"))
    assert any("resampled" in w for w in record["warnings"])


def gtv_t_contours(ds):
    number = next(int(i.ROINumber) for i in ds.StructureSetROISequence if i.ROIName == "GTV_70Gy")
    return next(rc for rc in ds.ROIContourSequence if int(rc.ReferencedROINumber) == number).ContourSequence


def test_contours_of_thinner_slices_are_combined_by_union_on_their_ct_slice(clean, tmp_path):
    # A second plane of GTV-T contours 0.9 mm above each CT slice (an RTSTRUCT drawn on thinner slices), shifted by
    # 4 mm (2 pixels) in x: each CT slice gets the union of both planes. XOR would punch out where they overlap.
    dicom = copy_patient(clean, tmp_path)
    rs = files_of(dicom, "RTSTRUCT")[0]
    ds = pydicom.dcmread(rs)
    contours = gtv_t_contours(ds)
    for contour in list(contours):
        extra = pydicom.Dataset()
        extra.ContourGeometricType = "CLOSED_PLANAR"
        points = np.asarray(contour.ContourData, dtype=float).reshape(-1, 3) + np.array([4.0, 0.0, 0.9])
        extra.ContourData = [f"{v:.4f}" for v in points.ravel()]
        extra.NumberOfContourPoints = len(points)
        contours.append(extra)
    ds.save_as(rs)
    record = import_ct_and_labels("SYN001", dicom, tmp_path / "out", OPTS)
    truth_t = array(clean[0] / "truth" / "labels.nii.gz") == 1
    expected = truth_t | np.roll(truth_t, 2, axis=2)
    assert np.array_equal(array(tmp_path / "out" / "labels.nii.gz") == 1, expected)
    assert (truth_t & np.roll(truth_t, 2, axis=2)).sum() > 100  # the overlap XOR would have emptied
    (warning,) = [w for w in record["warnings"] if "combined by union" in w]
    assert warning.startswith("patient SYN001, RTSTRUCT RTSTRUCT #1 ")
    assert "ROI 'GTV_70Gy': contours of 2 different planes fall on one CT slice at 11 slice(s)" in warning
    found = re.search(r"slice \d+ at z = (-?[\d.]+) mm takes the planes at z = (-?[\d.]+), (-?[\d.]+) mm", warning)
    slice_z, first, second = (float(v) for v in found.groups())
    assert first == slice_z and second == pytest.approx(slice_z + 0.9)


def test_a_contour_plane_off_the_ct_slices_is_reported_beyond_the_tolerance(clean, tmp_path):
    dicom = copy_patient(clean, tmp_path)
    rs = files_of(dicom, "RTSTRUCT")[0]
    ds = pydicom.dcmread(rs)
    moved = gtv_t_contours(ds)[5]
    points = np.asarray(moved.ContourData, dtype=float).reshape(-1, 3)
    z = points[0, 2] + 1.2  # 1.2 mm off its 3 mm slice: placed by rounding alone, but farther than 1 mm
    points[:, 2] = z
    moved.ContourData = [f"{v:.4f}" for v in points.ravel()]
    ds.save_as(rs)
    truth_t = array(clean[0] / "truth" / "labels.nii.gz") == 1
    record = import_ct_and_labels("SYN001", dicom, tmp_path / "strict", OPTS)
    (warning,) = record["warnings"]
    assert f"ROI 'GTV_70Gy': 1 contour(s) in the plane(s) at z = {z:.2f} mm lie farther than 1 mm" in warning
    assert "the nearest is 1.20 mm away" in warning and "not used" in warning
    labels_t = array(tmp_path / "strict" / "labels.nii.gz") == 1
    (k,) = [k for k in range(truth_t.shape[0]) if truth_t[k].any() and not labels_t[k].any()]
    assert np.array_equal(np.delete(labels_t, k, axis=0), np.delete(truth_t, k, axis=0))
    lenient = import_ct_and_labels("SYN001", dicom, tmp_path / "lenient", ImportOptions(contour_plane_tolerance_mm=1.5))
    assert lenient["warnings"] == []
    assert np.array_equal(array(tmp_path / "lenient" / "labels.nii.gz") == 1, truth_t)


def test_a_single_valued_corrected_image_is_read_as_one_flag(clean, tmp_path):
    # pydicom gives a single-valued CS as a str: iterating it gave 'A', 'T', 'N' and a wrong "not attenuation
    # corrected". ATTN alone is attenuation corrected but lacks DECY, which SUV needs: that is what must be said.
    dicom = copy_patient(clean, tmp_path)
    edit(files_of(dicom, "PT"), CorrectedImage="ATTN")
    assert isinstance(pydicom.dcmread(files_of(dicom, "PT")[0]).CorrectedImage, str)
    with pytest.raises(InputError) as err:
        import_pet("SYN001", dicom, tmp_path / "out", OPTS)
    message = str(err.value)
    assert "not attenuation corrected" not in message
    assert re.search(r"patient SYN001, PET PT #3 .*CorrectedImage \(0028,0051\) is ATTN, without DECY", message)
