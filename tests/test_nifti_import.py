"""NIfTI patients: what the import writes (as the DICOM import does), every refusal with its message, the sheet's
NIfTI columns, and a bad patient among good ones. Small volumes written with nibabel, read back with SimpleITK."""

import json

import nibabel as nib
import nifti_files as written
import numpy as np
import pytest
import SimpleITK as sitk

from hnseg.cohort import build_cohort, read_cohort, read_method_plans, run_patient_stage
from hnseg.config import read_patients_sheet
from hnseg.errors import ConfigError, InputError
from hnseg.nifti.importer import import_ct_and_labels, import_mri, import_pet
from hnseg.workflow import import_sources, nifti_files

SHAPE = (6, 10, 12)  # z, y, x
SPACING = (0.9765625, 0.9765625, 2.5)  # x, y, z, mm
ORIGIN = (-5.859375, -4.8828125, 12.5)  # LPS, mm (float32-exact, as NIfTI stores it)


def volumes(seed=0):
    rng = np.random.default_rng(seed)
    ct = rng.integers(-1000, 1500, SHAPE).astype(np.int16)
    labels = np.zeros(SHAPE, np.uint8)
    labels[2:4, 3:6, 4:8] = 1
    labels[1:3, 7:9, 1:3] = 2
    return ct, labels


def write_nifti(path, array_zyx, *, spacing=SPACING, origin=ORIGIN, **kwargs):
    return written.write_nifti(path, array_zyx, spacing, origin, **kwargs)


def read(path):
    image = sitk.ReadImage(str(path))
    return image, sitk.GetArrayFromImage(image)


@pytest.mark.parametrize("flipped", [False, True], ids=["LPS-stored", "RAS-flipped"])
@pytest.mark.parametrize("label_dtype", [np.int16, np.float32, np.uint8])
def test_ct_and_labels_land_as_the_dicom_import_writes_them(tmp_path, flipped, label_dtype):
    ct, labels = volumes()
    files = {
        "ct": write_nifti(tmp_path / "ct.nii.gz", ct, flipped=flipped),
        "labels": write_nifti(tmp_path / "labels.nii.gz", labels, flipped=not flipped, dtype=label_dtype),
    }
    record = import_ct_and_labels("P1", files, tmp_path / "out")
    ct_out, ct_array = read(tmp_path / "out" / "ct.nii.gz")
    labels_out, labels_array = read(tmp_path / "out" / "labels.nii.gz")
    assert ct_array.dtype == np.int16 and np.array_equal(ct_array, ct)  # voxel for voxel, never interpolated
    assert labels_array.dtype == np.uint8 and np.array_equal(labels_array, labels)
    for image in (ct_out, labels_out):  # the DICOM import's orientation: identity direction, LPS
        assert image.GetDirection() == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
        assert np.allclose(image.GetOrigin(), ORIGIN, atol=1e-4) and np.allclose(image.GetSpacing(), SPACING)
    assert labels_out.GetOrigin() == ct_out.GetOrigin() and labels_out.GetSpacing() == ct_out.GetSpacing()
    assert record["source"] == "nifti" and json.loads((tmp_path / "out" / "import.json").read_text()) == record
    assert record["voxels"] == {"gtv_t": int((labels == 1).sum()), "gtv_n": int((labels == 2).sum()), "overlap": 0}
    assert "ct.nii.gz" == record["ct"]["file"] and str(tmp_path) not in json.dumps(record)  # no folder in records


def test_configured_label_values_map_to_1_and_2(tmp_path):
    ct, labels = volumes()
    other = np.where(labels == 1, 7, np.where(labels == 2, 3, 0)).astype(np.int32)
    files = {"ct": write_nifti(tmp_path / "ct.nii.gz", ct), "labels": write_nifti(tmp_path / "l.nii.gz", other)}
    import_ct_and_labels("P1", files, tmp_path / "out", label_values={"gtv_t": 7, "gtv_n": 3})
    assert np.array_equal(read(tmp_path / "out" / "labels.nii.gz")[1], labels)


def test_float_ct_with_fractions_stays_float32(tmp_path):
    ct, labels = volumes()
    files = {
        "ct": write_nifti(tmp_path / "ct.nii.gz", ct.astype(np.float32) + 0.25),
        "labels": write_nifti(tmp_path / "l.nii.gz", labels),
    }
    import_ct_and_labels("P1", files, tmp_path / "out")
    _, array = read(tmp_path / "out" / "ct.nii.gz")
    assert array.dtype == np.float32 and np.array_equal(array, ct.astype(np.float32) + 0.25)


def test_pet_keeps_its_own_grid_and_mri_both_sequences(tmp_path):
    pet = np.random.default_rng(1).random((4, 5, 6)).astype(np.float32) * 8
    files = {"pet": write_nifti(tmp_path / "pet.nii.gz", pet, flipped=True, spacing=(4.0, 4.0, 3.0))}
    record = import_pet("P1", files, tmp_path / "out")
    image, array = read(tmp_path / "out" / "pet.nii.gz")
    assert array.dtype == np.float32 and np.array_equal(array, pet)
    assert np.allclose(image.GetSpacing(), (4.0, 4.0, 3.0)) and record["source"] == "nifti"
    assert record["suv_max"] == pytest.approx(float(pet.max()))
    t1 = write_nifti(tmp_path / "t1.nii.gz", pet * 100)
    t2 = write_nifti(tmp_path / "t2.nii.gz", pet * 50, flipped=True)
    assert import_mri("P1", {"t1": t1, "t2": t2}, tmp_path / "out")["source"] == "nifti"
    assert np.array_equal(read(tmp_path / "out" / "t2.nii.gz")[1], pet * 50)
    with pytest.raises(InputError, match=r"patient P1: the patients sheet names no T2w file \(columns t1, t2\)"):
        import_mri("P1", {"t1": t1, "t2": None}, tmp_path / "out")
    with pytest.raises(InputError, match=r"patient P1: the patients sheet names no PET file \(column 'pet'\)"):
        import_pet("P1", {"pet": None}, tmp_path / "out")


def test_pet_in_activity_units_is_refused(tmp_path):
    files = {"pet": write_nifti(tmp_path / "pet.nii.gz", np.full((3, 4, 5), 12000.0, np.float32))}
    with pytest.raises(InputError, match=r"PET .* reaches 1\.2e\+04, far above any SUV .* convert it to SUVbw"):
        import_pet("P1", files, tmp_path / "out")


def _ct_and_labels(tmp_path, labels=None, **labels_kwargs):
    ct, default = volumes()
    return {
        "ct": write_nifti(tmp_path / "ct.nii.gz", ct),
        "labels": write_nifti(tmp_path / "labels.nii.gz", default if labels is None else labels, **labels_kwargs),
    }


BAD_INPUT = {
    "grids differ": (
        lambda tmp: _ct_and_labels(tmp, origin=(ORIGIN[0] + 2.0, ORIGIN[1], ORIGIN[2])),
        r"patient P1: the labels labels.nii.gz are not on the grid of the CT ct.nii.gz \(origin "
        r"\(-3.859, -4.883, 12.5\) against \(-5.859, -4.883, 12.5\) mm\); .*resample them onto the CT",
    ),
    "grid size differs": (
        lambda tmp: _ct_and_labels(tmp, labels=np.zeros((6, 10, 11), np.uint8)),
        r"not on the grid of the CT .*size \(11, 10, 6\) against \(12, 10, 6\)",
    ),
    "qform and sform disagree": (
        lambda tmp: _ct_and_labels(tmp, sform_shift=3.0),
        r"patient P1: the labels labels.nii.gz has a qform \(code 1\) and an sform \(code 1\) that disagree \(largest "
        r"difference 3 mm\), .*rewrite the file with one affine",
    ),
    "unexpected label value": (
        lambda tmp: _ct_and_labels(tmp, labels=np.where(volumes()[1] == 2, 5, volumes()[1]).astype(np.uint8)),
        r"patient P1: the labels labels.nii.gz hold the values \[0, 1, 5\], of which \[5\] are neither background \(0\), "
        r"GTV-T \(1\) nor GTV-N \(2\); set import.nifti_labels",
    ),
    "fractional labels": (
        lambda tmp: _ct_and_labels(tmp, labels=volumes()[1] * np.float32(0.5)),
        r"the labels labels.nii.gz hold values that are not whole numbers \(e.g. 0.5\); .*nearest neighbour",
    ),
    "missing file": (
        lambda tmp: {"ct": tmp / "nowhere" / "ct.nii.gz", "labels": tmp / "labels.nii.gz"},
        r"patient P1: the CT file ct.nii.gz \(sheet column 'ct'\) does not exist; fix the 'ct' column of the "
        r"patients sheet",
    ),
    "4D file": (
        lambda tmp: {
            "ct": nib.save(nib.Nifti1Image(np.zeros((12, 10, 6, 2), np.int16), np.eye(4)), str(tmp / "ct.nii.gz"))
            or tmp / "ct.nii.gz",
            "labels": tmp / "labels.nii.gz",
        },
        r"patient P1: the CT ct.nii.gz is 4D \(shape \(12, 10, 6, 2\)\); hnseg takes one 3D volume per file",
    ),
    "not a NIfTI": (
        lambda tmp: {"ct": (tmp / "ct.nii.gz").write_bytes(b"not a nifti") and tmp / "ct.nii.gz", "labels": tmp},
        r"patient P1: cannot read the CT ct.nii.gz as NIfTI",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_refused_with_what_and_how_to_fix(tmp_path, case):
    make, message = BAD_INPUT[case]
    files = make(tmp_path)
    with pytest.raises(InputError, match=message) as error:
        import_ct_and_labels("P1", files, tmp_path / "out")
    assert str(tmp_path) not in str(error.value)  # a file by its name: folders may be named after the patient
    assert not (tmp_path / "out" / "ct.nii.gz").exists()


def test_sheet_takes_nifti_columns_relative_to_itself(tmp_path):
    (tmp_path / "cohort").mkdir()
    sheet = tmp_path / "cohort" / "patients.tsv"
    sheet.write_text(
        "patient\tdicom_dir\tct\tlabels\tpet\n"
        "D1\t/data/dicom/D1\t\t\t\n"
        "N1\t\timages/N1_ct.nii.gz\tlabels/N1.nii.gz\t/abs/N1_pet.nii.gz\n"
        "N2\t\timages/N2_ct.nii.gz\tlabels/N2.nii.gz\t\n"
    )
    rows = {r["patient"]: r for r in read_patients_sheet(sheet)}
    assert rows["D1"] == {"patient": "D1", "dicom_dir": "/data/dicom/D1"}
    assert rows["N1"]["ct"] == str(tmp_path / "cohort" / "images" / "N1_ct.nii.gz")
    assert rows["N1"]["pet"] == "/abs/N1_pet.nii.gz" and "pet" not in rows["N2"]
    assert nifti_files(rows["D1"], "ct") == {} and import_sources(rows["D1"], "pet") == {"dicom": "/data/dicom/D1"}
    assert nifti_files(rows["N2"], "pet") == {"pet": None}
    assert nifti_files(rows["N1"], "mri") == {"t1": None, "t2": None}
    assert import_sources(rows["N1"], "ct") == {}  # files that do not exist are no rule inputs: the import says so


def test_sheet_names_every_row_without_usable_input(tmp_path):
    sheet = tmp_path / "patients.tsv"
    sheet.write_text(
        "patient\tdicom_dir\tct\tlabels\nOK1\t/d\t\t\nBAD1\t\t\t\nBAD2\t/d\tct.nii.gz\tl.nii.gz\nBAD3\t\tct.nii.gz\t\n"
    )
    with pytest.raises(ConfigError) as error:
        read_patients_sheet(sheet)
    text = str(error.value)
    assert "3 row(s) name no usable input" in text
    assert "line 3 (patient 'BAD1') gives neither dicom_dir (a DICOM folder) nor NIfTI files" in text
    assert "line 4 (patient 'BAD2') gives both dicom_dir and NIfTI files (ct, labels); keep one of them" in text
    assert "line 5 (patient 'BAD3') names NIfTI files but no labels: a NIfTI patient needs ct and labels" in text


def test_a_bad_patient_is_left_out_and_the_others_go_on(tmp_path):
    """Three NIfTI patients through the import stage as the workflow runs it, one with labels on another grid: its
    record says failed and why, the cohort table leaves it out of every branch with that reason, the others enter
    the branches their volumes allow (no MRI: not multimodal, nnU-Net on CT and PET)."""
    subsets = {"N1": "train", "N2": "val", "N3": "train"}
    record_paths = {}
    for i, patient in enumerate(subsets):
        folder = tmp_path / "in" / patient
        folder.mkdir(parents=True)
        ct, labels = volumes(i)
        files = {
            "ct": write_nifti(folder / "ct.nii.gz", ct),
            "labels": write_nifti(folder / "labels.nii.gz", labels, flipped=True, spacing=(*SPACING[:2], 3.0))
            if patient == "N3"
            else write_nifti(folder / "labels.nii.gz", labels),
        }
        out = tmp_path / "imported" / patient
        run_patient_stage(
            out / "import.json", tmp_path / "logs" / f"{patient}.log", patient, "import_ct", import_ct_and_labels,
            patient, files, out, outputs=[out / "ct.nii.gz", out / "labels.nii.gz"],
        )  # fmt: skip
        paths = [out / "import.json"]
        for stage, status in (("import_pet", "ok"), ("resample_pet", "ok"), ("import_mri", "failed")):
            path = tmp_path / "records" / patient / f"{stage}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"patient": patient, "stage": stage, "status": status, "reason": "no T1w"}))
            paths.append(path)
        (tmp_path / "records" / patient / "register_mri.json").write_text(
            json.dumps({"patient": patient, "stage": "register_mri", "status": "not_run", "reason": "needs import_mri"})
        )
        record_paths[patient] = [*paths, tmp_path / "records" / patient / "register_mri.json"]
    bad = json.loads((tmp_path / "imported" / "N3" / "import.json").read_text())
    assert bad["status"] == "failed" and "are not on the grid of the CT" in bad["reason"]
    assert not (tmp_path / "imported" / "N3" / "ct.nii.gz").exists()
    volumes_of = {"ct": ("ct",), "ctpet": ("ct", "pet"), "multimodal": ("ct", "pet", "t1", "t2"), "nnunet": "auto"}
    build_cohort(
        subsets, record_paths, list(volumes_of), ["litemedsam_zeroshot_ctpet", "nnunet_nobox"], ["val"],
        tmp_path / "cohort.tsv", tmp_path / "methods.tsv", branch_volumes=volumes_of,
    )  # fmt: skip
    rows = {r.patient: r for r in read_cohort(tmp_path / "cohort.tsv")}
    assert rows["N1"].branches == rows["N2"].branches == ("ct", "ctpet", "nnunet")
    assert rows["N1"].reason == "no multimodal: import_mri failed: no T1w"
    assert rows["N3"].branches == () and rows["N3"].reason.startswith(
        "no ct, ctpet, multimodal, nnunet: import_ct failed: patient N3: the labels"
    )
    plans = {p.method: p for p in read_method_plans(tmp_path / "methods.tsv")}
    assert plans["nnunet_nobox"].inputs == ("ct", "pet") and plans["litemedsam_zeroshot_ctpet"].inputs == ("ct", "pet")
