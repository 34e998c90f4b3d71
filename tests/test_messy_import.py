"""The importer on messy synthetic patients (hnseg.synthetic.messy): every variant gives the outcome MESSY_VARIANTS
states, at each of the three entry points.

- accept: no warning; labels equal the truth exactly (truth/labels.nii.gz, or truth/messy_labels.nii.gz where the
  variant changes what the importer must return), CT equal to the clean patient's import, SUV within half a stored
  step of truth/suv.nii.gz, T1/T2 equal to the clean import;
- warn: the same, and the record carries the variant's warning, naming the patient;
- refuse: InputError naming the patient, the series or file, and the fix; where the fix is an option (sheet weight,
  resample policy), importing again with it succeeds. Under a resample policy the labels still equal the expected
  truth exactly (the resampled grid is the clean one, or the 2 mm lattice of truth/messy_labels.nii.gz), and the CT is
  checked against the clean CT: equal except the interpolated slice (missing slice), close after undoing the shear
  (gantry tilt, 2 mm of linear interpolation each way).

One clean patient is generated per session and copied for each variant (`clean_from`).
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from hnseg.dicom.importer import ImportOptions, import_ct_and_labels, import_mri, import_pet
from hnseg.errors import InputError
from hnseg.synthetic import generate_patient
from hnseg.synthetic.messy import MESSY_VARIANTS, OUTCOMES, STRAY_FILES, make_messy_patient

PID, SEED = "SYN001", 2024
OPTS = ImportOptions()
ENTRY = {"ct": import_ct_and_labels, "pet": import_pet, "mri": import_mri}
CT_SERIES = r"CT CT #2 '[^']+' \(\d+ instance\(s\)\)"

# refusals: (flag, entry) -> what the message must say: the patient, the series or file, and the fix
REFUSALS = {
    ("pet_weight_missing", "pet"): rf"patient {PID}, PET PT #3 '[^']+' .*PatientWeight \(0010,1030\) is missing or 0.*"
    r"add the weight in kg to the patients sheet's weight_kg column",
    ("pet_weight_zero", "pet"): rf"patient {PID}, PET PT #3 .*PatientWeight \(0010,1030\) is missing or 0.*weight_kg",
    ("pet_dose_mbq", "pet"): rf"patient {PID}, PET PT #3 .*RadionuclideTotalDose \(0018,1074\) is 203.16, which looks "
    r"like MBq.*correct the header so that the dose is in Bq",
    ("no_gtv_t", "ct"): rf"patient {PID}, RTSTRUCT RTSTRUCT #1 '[^']+' \(1 instance\(s\)\): no GTV-T ROI .*"
    r"'GTV_N'.*rename the primary tumour's ROI or add its name to import.roi_patterns.gtv_t",
    ("mr_missing", "mri"): rf"patient {PID}: no T1w and no T2w MR series \(no MR series\).*"
    r"CT-only methods go on.*Export the MR study",
    ("gantry_tilt", "ct"): rf"patient {PID}, {CT_SERIES}: slice origins drift 31.\d\d mm in-plane.*gantry tilt.*"
    r"Reconstruct without tilt, or set import.on_gantry_tilt: resample",
    ("missing_ct_slice", "ct"): rf"patient {PID}, {CT_SERIES}: missing slice\(s\): gap of 6.000 mm after 1-\d{{3}}\.dcm"
    r".*Re-export the complete series, or set import.on_missing_slice: resample",
    ("duplicate_ipp", "ct"): rf"patient {PID}, {CT_SERIES}: two slices at the same position \(1-\d{{3}}\.dcm and "
    r"1-\d{3}\.dcm\); remove the duplicate from the export",
    ("nonuniform_spacing", "ct"): rf"patient {PID}, {CT_SERIES}: non-uniform slice spacing: gap of 3.000 mm after "
    r"1-\d{3}\.dcm where the spacing is 2.000 mm.*on_missing_slice: resample",
    ("sc_ct_only", "ct"): rf"patient {PID}: no CT series with at least 5 slices \(found: CT #20 "
    r"'CT screen capture' \(0 instance\(s\)\).*export the planning CT with the patient",
}

# warnings: (flag, entry) -> regexes that must each match one warning of the record
WARNINGS = {
    ("stray_plane_in_ct_series", "ct"): [
        rf"patient {PID}, {CT_SERIES}: 1 slice\(s\) with another orientation \(localiser-like: 1-041\.dcm\) left out"
    ],
    ("pet_midnight", "pet"): [
        rf"patient {PID}, PET .*injection was taken on the previous day \(study crossing midnight\)"
    ],
    ("pet_post_processed_ge", "pet"): [
        rf"patient {PID}, PET .*SeriesTime is \d+\.\d min after .*the GE private scan datetime \(0009,100D\) is the scan time"
    ],
    ("pet_post_processed", "pet"): [
        rf"patient {PID}, PET .*SeriesTime is \d+\.\d min after .*earliest AcquisitionDate/AcquisitionTime is the scan time"
    ],
    ("roi_traps", "ct"): [
        rf"patient {PID}: ROI 'GTV T et N' holds GTV-T and GTV-N in one ROI; it is not used: split it",
        rf"patient {PID}: ROI 'GTV T irm' looks drawn on MRI; it is not used",
    ],
    ("mr_t2_other_for", "mri"): [rf"patient {PID}: T1w and T2w are in different frames of reference"],
}

# refusals whose fix is an import option: flag -> (options, uses the sheet weight, outcome, warning regex)
FIXES = {
    "pet_weight_missing": (OPTS, True, "accept", None),
    "pet_weight_zero": (OPTS, True, "accept", None),
    "gantry_tilt": (
        ImportOptions(on_gantry_tilt="resample"),
        False,
        "warn",
        rf"patient {PID}, {CT_SERIES}: gantry tilt \(31.\d\d mm in-plane drift\) resampled onto an orthogonal grid",
    ),
    "missing_ct_slice": (
        ImportOptions(on_missing_slice="resample"),
        False,
        "warn",
        rf"patient {PID}, {CT_SERIES}: missing slice\(s\) .*resampled linearly to 40 slices at 3.000 mm",
    ),
    "nonuniform_spacing": (
        ImportOptions(on_missing_slice="resample"),
        False,
        "warn",
        rf"patient {PID}, {CT_SERIES}: non-uniform slice spacing .*resampled linearly to 59 slices at 2.000 mm",
    ),
}

# variants whose imported CT is not the clean CT voxel for voxel (checked in their own way below)
CT_CHANGED = {"gantry_tilt", "missing_ct_slice", "nonuniform_spacing"}


@dataclass
class Clean:
    dicom: Path
    truth: Path
    out: Path
    records: dict

    def array(self, name: str) -> np.ndarray:
        return array(self.out / name)


@dataclass
class Case:
    flag: str
    dicom: Path
    truth: Path
    record: dict

    @property
    def notes(self) -> dict:
        return self.record["notes"].get(self.flag, {})


def array(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


@pytest.fixture(scope="session")
def clean(tmp_path_factory) -> Clean:
    root = tmp_path_factory.mktemp("messy_clean")
    generate_patient(PID, SEED, root / "dicom", root / "truth", size="demo")
    out = root / "imported"
    records = {name: fn(PID, root / "dicom", out, OPTS) for name, fn in ENTRY.items()}
    assert all(not r["warnings"] for r in records.values())
    return Clean(root / "dicom", root / "truth", out, records)


@pytest.fixture(scope="session")
def messy(clean, tmp_path_factory):
    """Messy patients made once per session, one per flag (several tests import the same one)."""
    cache: dict[tuple[str, ...], Case] = {}

    def get(*flags: str) -> Case:
        if flags not in cache:
            cache[flags] = make(clean, tmp_path_factory.mktemp("-".join(flags)[:60]), *flags)
        return cache[flags]

    return get


def make(clean: Clean, tmp_path: Path, *flags: str) -> Case:
    record = make_messy_patient(
        PID, SEED, tmp_path / "dicom", tmp_path / "truth", list(flags), clean_from=(clean.dicom, clean.truth)
    )
    return Case(flags[0], tmp_path / "dicom", tmp_path / "truth", record)


def hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# ----------------------------------------------------------------------------------------------- checks of accepted imports


def check_labels(case: Case, out: Path) -> None:
    expected_path = case.truth / case.record["expected_labels"]
    ours, expected = sitk.ReadImage(str(out / "labels.nii.gz")), sitk.ReadImage(str(expected_path))
    assert ours.GetSize() == expected.GetSize()
    assert ours.GetOrigin() == pytest.approx(expected.GetOrigin(), abs=1e-4)
    assert ours.GetSpacing() == pytest.approx(expected.GetSpacing(), abs=1e-6)
    assert np.array_equal(sitk.GetArrayFromImage(ours), sitk.GetArrayFromImage(expected))


def check_ct(case: Case, out: Path, record: dict, clean: Clean) -> None:
    check_labels(case, out)
    if case.flag not in CT_CHANGED:
        ours, reference = sitk.ReadImage(str(out / "ct.nii.gz")), sitk.ReadImage(str(clean.out / "ct.nii.gz"))
        assert np.array_equal(sitk.GetArrayFromImage(ours), sitk.GetArrayFromImage(reference))
        assert ours.GetOrigin() == pytest.approx(reference.GetOrigin(), abs=1e-6)
        assert ours.GetDirection() == pytest.approx(reference.GetDirection(), abs=1e-9)
    # labels always list GTV-T first and never pick a trap or the wrong RTSTRUCT (those would change the labels)
    assert record["rois"]["gtv_t"] and record["voxels"]["gtv_t"] > 0


def pet_headers(case: Case) -> list[pydicom.Dataset]:
    phi = json.loads((case.truth / "phi.json").read_text())
    target = phi["uids"]["series"]["PT"]
    out = []
    for path in sorted(p for p in case.dicom.rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(
                path,
                force=True,
                specific_tags=["SeriesInstanceUID", "SOPInstanceUID", "ImagePositionPatient", "RescaleSlope"],
            )
        except Exception:
            continue
        if str(ds.get("SeriesInstanceUID", "")) == target:
            out.append(ds)
    unique = {str(d.SOPInstanceUID): d for d in out}  # duplicates variant: the same instance twice
    return sorted(unique.values(), key=lambda d: float(d.ImagePositionPatient[2]))


def check_pet(case: Case, out: Path, record: dict, clean: Clean) -> None:
    suv, truth = array(out / "pet.nii.gz"), array(case.truth / "suv.nii.gz")
    assert suv.shape == truth.shape
    factor = record["suv"]["factor_max"]
    assert record["suv"]["factor_min"] == pytest.approx(factor, rel=1e-12)
    headers = pet_headers(case)
    assert len(headers) == suv.shape[0]
    for k, ds in enumerate(headers):
        half_step = float(ds.RescaleSlope) * factor / 2
        float32_rounding = np.spacing(np.float32(np.abs(truth[k]).max()))
        assert np.abs(suv[k] - truth[k]).max() <= half_step + float32_rounding, (case.flag, k)


def check_mri(case: Case, out: Path, record: dict, clean: Clean) -> None:
    for name in ("t1", "t2"):
        ours, reference = sitk.ReadImage(str(out / f"{name}.nii.gz")), sitk.ReadImage(str(clean.out / f"{name}.nii.gz"))
        assert np.array_equal(sitk.GetArrayFromImage(ours), sitk.GetArrayFromImage(reference))
        assert ours.GetSpacing() == pytest.approx(reference.GetSpacing(), abs=1e-6)
        if case.flag != "mr_oblique":
            assert ours.GetOrigin() == pytest.approx(reference.GetOrigin(), abs=1e-6)
            assert ours.GetDirection() == pytest.approx(reference.GetDirection(), abs=1e-9)


CHECK = {"ct": check_ct, "pet": check_pet, "mri": check_mri}


def check_warnings(flag: str, entry: str, outcome: str, record: dict, expected: list[str] | None = None) -> None:
    expected = expected if expected is not None else WARNINGS.get((flag, entry), [])
    if outcome == "accept":
        assert record["warnings"] == [], (flag, entry, record["warnings"])
        return
    assert expected, f"no expected warning written down for {flag}/{entry}"
    for regex in expected:
        assert any(re.search(regex, w) for w in record["warnings"]), (flag, entry, regex, record["warnings"])


# ----------------------------------------------------------------------------------------------- the variants


ALL = ("ct", "pet", "mri")
# the entry points whose input files a variant changes; the other pairs import files the variant leaves alone and
# run only with the slow tests, unless the variant's point is that they go on (a refusal elsewhere)
TOUCHED = {
    **dict.fromkeys(["scout_series", "scout_in_ct_series", "stray_plane_in_ct_series"], ("ct", "pet")),
    **dict.fromkeys([f for f in MESSY_VARIANTS if f.startswith("rtstruct_")], ("ct", "pet")),
    **dict.fromkeys([f for f in MESSY_VARIANTS if f.startswith("pet_")], ("pet",)),
    **dict.fromkeys(["roi_name_variants", "roi_traps", "no_gtv_n"], ("ct",)),
    "no_gtv_t": ("ct", "pet"),
    **dict.fromkeys(["mr_scouts", "mr_oblique", "mr_t2_other_for", "mr_t1_enhanced"], ("mri",)),
    "mr_missing": ALL,
    **dict.fromkeys(
        ["gantry_tilt", "missing_ct_slice", "duplicate_ipp", "nonuniform_spacing", "contour_z_offset"], ("ct",)
    ),
    **dict.fromkeys(["reversed_instance_numbers", "iop_float_noise", "ds_exponent_padded"], ("ct", "pet")),
    **dict.fromkeys(["rle_ct", "jpegls_ct", "sc_ct_series"], ("ct",)),
    "sc_ct_only": ALL,
}  # layouts and the other encodings touch every file: all three


def _pairs():
    for flag in MESSY_VARIANTS:
        touched = TOUCHED.get(flag, ALL)
        for entry in ALL:
            marks = () if entry in touched else (pytest.mark.slow,)
            yield pytest.param(flag, entry, marks=marks, id=f"{flag}-{entry}")


@pytest.mark.parametrize(("flag", "entry"), list(_pairs()))
def test_variant_gives_its_stated_outcome(flag, entry, clean, messy, tmp_path):
    if flag == "jpegls_ct" and importlib.util.find_spec("jpeg_ls") is None:
        pytest.skip("pyjpegls is not installed")
    case = messy(flag)
    outcome = OUTCOMES[flag][entry]
    out = tmp_path / f"out_{entry}"
    if outcome == "refuse":
        with pytest.raises(InputError) as err:
            ENTRY[entry](PID, case.dicom, out, OPTS)
        regex = REFUSALS[(flag, entry)]
        assert re.search(regex, str(err.value)), (regex, str(err.value))
        if flag not in FIXES:
            return
        opts, weight, fixed, warning = FIXES[flag]
        kwargs = {"weight_kg": json.loads((case.truth / "phi.json").read_text())["PatientWeight"]} if weight else {}
        record = ENTRY[entry](PID, case.dicom, out, opts, **kwargs)
        check_warnings(flag, entry, fixed, record, [warning] if warning else [])
    else:
        record = ENTRY[entry](PID, case.dicom, out, OPTS)
        check_warnings(flag, entry, outcome, record)
    CHECK[entry](case, out, record, clean)
    if (flag, entry) in EXTRA:
        EXTRA[(flag, entry)](case, out, record, clean)


# what each variant must show beyond the generic checks: (flag, entry) -> check(case, out, record, clean)


def _scout_series(case, out, record, clean):
    assert record["excluded_instances"] == 2
    assert not any("Topogram" in c for c in record["ct"]["candidates"])


def _scout_in_ct_series(case, out, record, clean):
    assert record["excluded_instances"] == 1
    assert record["ct"]["series"].endswith("(40 instance(s))")


def _rtstruct_older(case, out, record, clean):
    rs = record["rtstruct"]
    assert rs["series"].startswith("RTSTRUCT #1 ") and len(rs["candidates"]) == 2
    assert rs["reason"].startswith("the newest of the RTSTRUCTs drawn on a CT")


def _rtstruct_on_pet(case, out, record, clean):
    rs = record["rtstruct"]
    assert rs["series"].startswith("RTSTRUCT #1 ")
    assert "RTSTRUCT #8 'RTstruct_CTsim->PET' (1 instance(s)) is drawn on the PET, not used" in rs["reason"]


def _empty_and_point(case, out, record, clean):
    without = record["rois"]["without_contours"]
    assert without == {"Larynx": "no contours", "Isocenter 1": "no closed planar contour on the CT slices"}


def _roi_name_variants(case, out, record, clean):
    renamed = case.notes["renamed"]
    rois = record["rois"]
    assert rois["gtv_t"] == case.notes["gtv_t"]
    clean_n = clean.records["ct"]["rois"]["gtv_n"]
    assert sorted(rois["gtv_n"]) == sorted(renamed.get(n, n) for n in clean_n)
    assert set(rois["gtv_t"]) | set(rois["gtv_n"]) <= set(renamed.values())


def _roi_traps(case, out, record, clean):
    rois = record["rois"]
    assert rois["gtv_t"] == clean.records["ct"]["rois"]["gtv_t"]
    assert rois["gtv_n"] == clean.records["ct"]["rois"]["gtv_n"]
    ignored = {item["name"] for item in rois["matching"]["ignored"]}
    assert ignored >= {"CTV_GTVp+5mm", "PTV_GTV", "zGTV_old", "ring_GTV", "GTV T et N", "GTV T irm", "GTV-T_old"}


def _no_gtv_n(case, out, record, clean):
    assert clean.records["ct"]["rois"]["gtv_n"], "the clean patient should have nodes for this test to bite"
    assert record["rois"]["gtv_n"] == [] and record["voxels"]["gtv_n"] == 0
    assert set(np.unique(array(case.truth / "messy_labels.nii.gz"))) == {0, 1}


def _suv(method: str, **expected):
    def check(case, out, record, clean):
        assert record["suv"]["method"].startswith(method)
        for key, value in expected.items():
            assert record["suv"][key] == value

    return check


SHEET_WEIGHT = "patients sheet weight_kg (PatientWeight missing or 0)"


def _pet_midnight(case, out, record, clean):
    suv = record["suv"]
    assert suv["injection_time_source"] == "RadiopharmaceuticalStartTime on the day before the scan (midnight)"
    assert suv["injection_time"] > "23:00" and suv["scan_time"] < "02:00"
    assert suv["uptake_seconds"] == clean.records["pet"]["suv"]["uptake_seconds"]


def _pet_ge(case, out, record, clean):
    suv = record["suv"]
    assert suv["scan_time_source"].startswith("GE private scan datetime")
    assert suv["uptake_seconds"] == clean.records["pet"]["suv"]["uptake_seconds"]


def _pet_nac(case, out, record, clean):
    assert record["pet"]["series"].startswith("PT #3 ")
    assert "PT #4 'PET NAC' (37 instance(s)) is not attenuation corrected, skipped" in record["pet"]["reason"]


def _pet_first_slope_one(case, out, record, clean):
    headers = pet_headers(case)
    assert case.notes["slice_index"] == 0 and float(headers[0].RescaleSlope) == 1.0
    assert all(float(h.RescaleSlope) != 1.0 for h in headers[1:])


def _mr_oblique(case, out, record, clean):
    columns = np.asarray(case.notes["direction_columns"]).T  # columns: row cosine, column cosine, normal
    tilt = np.degrees(np.arccos(columns[2, 2]))
    assert 5.0 <= tilt <= 15.0
    phi = json.loads((case.truth / "phi.json").read_text())
    for name, series in (("t1", "T1"), ("t2", "T2")):
        ours = sitk.ReadImage(str(out / f"{name}.nii.gz"))
        assert np.asarray(ours.GetDirection()) == pytest.approx(columns.ravel(), abs=1e-7)  # IOP has 10 decimals
        # SimpleITK's own reading of the oblique series agrees on the geometry
        folder = next(
            p.parent
            for p in sorted(case.dicom.rglob("*.dcm"))
            if pydicom.dcmread(p, stop_before_pixels=True).SeriesInstanceUID == phi["uids"]["series"][series]
        )
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder)))
        reference = reader.Execute()
        assert ours.GetOrigin() == pytest.approx(reference.GetOrigin(), abs=1e-4)
        assert ours.GetDirection() == pytest.approx(reference.GetDirection(), abs=1e-6)
        assert ours.GetSpacing() == pytest.approx(reference.GetSpacing(), abs=1e-4)


def _mr_t1_enhanced(case, out, record, clean):
    assert record["t1"]["series"].endswith("(1 instance(s))")
    assert record["t1"]["shape_zyx"] == clean.records["mri"]["t1"]["shape_zyx"]


def _gantry_tilt(case, out, record, clean):
    resampled, reference = array(out / "ct.nii.gz"), clean.array("ct.nii.gz")
    raw = []  # the sheared slices stacked as if orthogonal (what SimpleITK would return)
    for path in sorted(case.dicom.rglob("*.dcm")):
        ds = pydicom.dcmread(path)
        if ds.Modality == "CT":
            raw.append((float(ds.ImagePositionPatient[2]), ds.pixel_array.astype(np.float64) - 1024))
    raw = np.stack([a for _, a in sorted(raw, key=lambda item: item[0])])

    def body_dice(a, b):  # the outline (HU > -400) is where a wrong shift shows; noise is smoothed either way
        a, b = a > -400, b > -400
        return 2 * (a & b).sum() / (a.sum() + b.sum())

    assert body_dice(resampled, reference) > 0.998 and body_dice(raw, reference) < 0.9
    assert min(body_dice(resampled[k], reference[k]) for k in range(len(reference))) > 0.99
    error = np.abs(resampled - reference).mean()
    assert error < 10.0  # HU: two linear interpolations of 20 HU noise
    assert error < np.abs(raw - reference).mean() / 10  # the shear is undone, not doubled


def _missing_ct_slice(case, out, record, clean):
    k = case.notes["removed_slice_index"]
    ct, reference = array(out / "ct.nii.gz"), clean.array("ct.nii.gz").astype(np.float32)
    assert np.array_equal(np.delete(ct, k, axis=0), np.delete(reference, k, axis=0))
    assert np.allclose(ct[k], (reference[k - 1] + reference[k + 1]) / 2, atol=1e-3)
    assert array(case.truth / "labels.nii.gz")[k].any()  # the missing slice went through a target


def _nonuniform(case, out, record, clean):
    notes = case.notes
    assert notes["spacing_mm"] == {"dense": 2.0, "elsewhere": 3.0} and notes["expected_equals_analytic_truth"]
    assert record["ct"]["spacing_xyz_mm"][2] == pytest.approx(2.0)
    assert record["voxels"]["gtv_t"] > clean.records["ct"]["voxels"]["gtv_t"]  # more slices through it


def _utf8(label: str):
    def check(case, out, record, clean):
        series = record.get("ct") or record.get("pet") or record.get("t1")
        assert series["series"].startswith(label)
        first = pydicom.dcmread(next(case.dicom.rglob("*.dcm")), stop_before_pixels=True)
        assert str(first.PatientName) == "Müller^Jörg"
        for path in out.iterdir():
            data = path.read_bytes()
            data = gzip.decompress(data) if path.suffix == ".gz" else data
            for needle in ("Müller", "Jörg", "M\\u00fcller"):
                assert needle.encode() not in data, (needle, path)

    return check


def _sc_series(case, out, record, clean):
    assert record["excluded_instances"] == 45
    assert all("screen capture" not in c for c in record["ct"]["candidates"])


def _duplicates(case, out, record, clean):
    assert record["duplicate_instances"] == 7


def _stray(case, out, record, clean):
    assert record["files_skipped"] == len(STRAY_FILES)


def _dicomdir(case, out, record, clean):
    assert (case.dicom / "DICOMDIR").is_file() and record["files_skipped"] == 1


def _relocated(layout):
    def check(case, out, record, clean):
        files = [p for p in case.dicom.rglob("*") if p.is_file()]
        assert len(files) == len(list(clean.dicom.rglob("*.dcm")))
        assert layout(case, files)

    return check


EXTRA = {
    ("scout_series", "ct"): _scout_series,
    ("scout_in_ct_series", "ct"): _scout_in_ct_series,
    ("rtstruct_older", "ct"): _rtstruct_older,
    ("rtstruct_on_pet", "ct"): _rtstruct_on_pet,
    ("rtstruct_empty_and_point_roi", "ct"): _empty_and_point,
    ("roi_name_variants", "ct"): _roi_name_variants,
    ("roi_traps", "ct"): _roi_traps,
    ("no_gtv_n", "ct"): _no_gtv_n,
    ("pet_weight_missing", "pet"): _suv("bqml", weight_source=SHEET_WEIGHT),
    ("pet_weight_zero", "pet"): _suv("bqml", weight_source=SHEET_WEIGHT),
    ("pet_midnight", "pet"): _pet_midnight,
    ("pet_post_processed_ge", "pet"): _pet_ge,
    ("pet_post_processed", "pet"): _suv(
        "bqml", scan_time_source="earliest AcquisitionDate/AcquisitionTime, SeriesTime after AcquisitionTime"
    ),
    ("pet_philips_cnts_suv", "pet"): _suv("philips_suv_scale_factor", units="CNTS"),
    ("pet_philips_cnts_activity", "pet"): _suv("philips_activity_concentration", units="CNTS"),
    ("pet_units_gml", "pet"): _suv("gml", factor_max=1.0),
    ("pet_decay_admin", "pet"): _suv("bqml: SUVbw, images already decay-corrected", decay_factor=1.0),
    ("pet_nac_series", "pet"): _pet_nac,
    ("pet_first_slope_one", "pet"): _pet_first_slope_one,
    ("mr_oblique", "mri"): _mr_oblique,
    ("mr_t1_enhanced", "mri"): _mr_t1_enhanced,
    ("gantry_tilt", "ct"): _gantry_tilt,
    ("missing_ct_slice", "ct"): _missing_ct_slice,
    ("nonuniform_spacing", "ct"): _nonuniform,
    ("utf8_charset", "ct"): _utf8("CT #2 'TDM tête et cou'"),
    ("utf8_charset", "pet"): _utf8("PT #3 'TEP corrigée (AC)'"),
    ("utf8_charset", "mri"): _utf8("MR #4 'T1 axial tête et cou'"),
    ("sc_ct_series", "ct"): _sc_series,
    ("duplicates", "ct"): _duplicates,
    ("stray_files", "ct"): _stray,
    ("dicomdir", "ct"): _dicomdir,
    ("shuffled_names", "ct"): _relocated(lambda case, files: all("." not in f.name for f in files)),
    ("flat_folder", "ct"): _relocated(lambda case, files: all(f.parent == case.dicom for f in files)),
    ("nested_folders", "ct"): _relocated(
        lambda case, files: min(len(f.relative_to(case.dicom).parts) for f in files) >= 9
    ),
}


# ----------------------------------------------------------------------------------------------- the generator itself


def test_every_variant_states_its_outcome_and_every_refusal_and_warning_is_checked():
    categories = {
        "scouts": {"scout_series", "scout_in_ct_series", "mr_scouts"},
        "layout": {"shuffled_names", "flat_folder", "nested_folders", "stray_files", "dicomdir", "duplicates", "no_meta"},
        "rtstructs": {"rtstruct_older", "rtstruct_on_pet", "rtstruct_empty_and_point_roi",
                      "rtstruct_no_contour_image_seq", "rtstruct_no_top_level_for"},
        "pet": {"pet_weight_missing", "pet_weight_zero", "pet_dose_mbq", "pet_midnight", "pet_post_processed_ge",
                "pet_post_processed", "pet_philips_cnts_suv", "pet_philips_cnts_activity", "pet_units_gml",
                "pet_decay_admin", "pet_nac_series", "pet_first_slope_one"},
        "roi names": {"roi_name_variants", "roi_traps", "no_gtv_n", "no_gtv_t"},
        "mr": {"mr_oblique", "mr_t2_other_for", "mr_t1_enhanced", "mr_missing"},
        "geometry": {"gantry_tilt", "missing_ct_slice", "duplicate_ipp", "nonuniform_spacing",
                     "reversed_instance_numbers", "iop_float_noise", "ds_exponent_padded", "contour_z_offset"},
        "encoding": {"implicit_vr", "rle_ct", "utf8_charset", "sc_ct_series", "sc_ct_only"},
    }  # fmt: skip
    for name, flags in categories.items():
        assert flags <= set(MESSY_VARIANTS), (name, flags - set(MESSY_VARIANTS))
    assert set(OUTCOMES) == set(MESSY_VARIANTS)
    for flag, text in MESSY_VARIANTS.items():
        outcomes = OUTCOMES[flag]
        assert set(outcomes) == {"ct", "pet", "mri"} and set(outcomes.values()) <= {"accept", "warn", "refuse"}
        said = text.split(" -> ", 1)[1]
        if "refuse" in outcomes.values():
            assert said.startswith("refuse"), (flag, said)
            assert all((flag, e) in REFUSALS for e, o in outcomes.items() if o == "refuse")
        elif "warn" in outcomes.values():
            assert said.startswith("accept with warning"), (flag, said)
            assert all((flag, e) in WARNINGS for e, o in outcomes.items() if o == "warn")
        else:
            assert said.startswith("accept") and not said.startswith("accept with warning"), (flag, said)
    assert {f for f, _ in (*REFUSALS, *WARNINGS, *EXTRA)} | set(FIXES) | set(TOUCHED) <= set(MESSY_VARIANTS)


COMBINED = [
    "scout_series",
    "rtstruct_older",
    "pet_post_processed_ge",
    "mr_t2_other_for",
    "implicit_vr",
    "shuffled_names",
]


def test_same_inputs_same_bytes_and_clean_from_is_the_same_as_generating(clean, messy, tmp_path):
    before = hashes(clean.dicom)
    fresh = make_messy_patient(PID, SEED, tmp_path / "a" / "dicom", tmp_path / "a" / "truth", COMBINED)
    assert fresh["clean"]["patient_id"] == PID
    copied = messy(*COMBINED)
    assert fresh["variants"] == copied.record["variants"]
    assert hashes(tmp_path / "a" / "dicom") == hashes(copied.dicom)
    assert hashes(tmp_path / "a" / "truth") == hashes(copied.truth)
    assert hashes(clean.dicom) == before  # the clean copy is not touched
    # again into the same folders, flags in another order: replaced by the same bytes
    again = make_messy_patient(
        PID, SEED, tmp_path / "a" / "dicom", tmp_path / "a" / "truth", list(reversed(COMBINED)),
        clean_from=(clean.dicom, clean.truth),
    )  # fmt: skip
    assert again["variants"] == fresh["variants"]  # a fixed order whatever the order given
    assert hashes(tmp_path / "a" / "dicom") == hashes(copied.dicom)
    # flags are independent: a flag does the same thing alone as in the combination
    alone = messy("rtstruct_older")
    assert alone.record["notes"]["rtstruct_older"] == fresh["notes"]["rtstruct_older"]
    older = [p for p in alone.dicom.rglob("*.dcm") if "RTstruct old" in str(p)]
    combined = {p.read_bytes() for p in (tmp_path / "a" / "dicom").rglob("*") if p.is_file()}
    assert len(older) == 1 and older[0].read_bytes() not in combined  # implicit VR there, explicit here
    assert pydicom.dcmread(older[0]).StructureSetDate == fresh["notes"]["rtstruct_older"]["structure_set_date"]


def test_combined_flags_import_like_each_alone(clean, messy, tmp_path):
    case = messy(*COMBINED)
    ct = import_ct_and_labels(PID, case.dicom, tmp_path / "out", OPTS)
    pet = import_pet(PID, case.dicom, tmp_path / "out", OPTS)
    mri = import_mri(PID, case.dicom, tmp_path / "out", OPTS)
    check_ct(case, tmp_path / "out", ct, clean)
    check_pet(case, tmp_path / "out", pet, clean)
    check_mri(case, tmp_path / "out", mri, clean)
    check_warnings("pet_post_processed_ge", "pet", "warn", pet)
    check_warnings("mr_t2_other_for", "mri", "warn", mri)
    assert ct["warnings"] == [] and ct["excluded_instances"] == 2 and len(ct["rtstruct"]["candidates"]) == 2


def test_bad_requests_are_refused_clearly(clean, tmp_path):
    with pytest.raises(InputError, match=r"unknown messy variant\(s\) \['scouts'\]; choose from: scout_series, "):
        make_messy_patient(PID, SEED, tmp_path / "d", tmp_path / "t", ["scouts"])
    with pytest.raises(InputError, match=r"\['dicomdir', 'flat_folder'\] cannot be combined"):
        make_messy_patient(PID, SEED, tmp_path / "d", tmp_path / "t", ["flat_folder", "dicomdir"])
    with pytest.raises(InputError, match=r"clean_from .* not a clean \('SYN002', 2024, 'demo'\)"):
        make_messy_patient(
            "SYN002", SEED, tmp_path / "d", tmp_path / "t", ["rle_ct"], clean_from=(clean.dicom, clean.truth)
        )
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "mine.txt").write_text("not a messy patient")
    with pytest.raises(InputError, match=r"is not empty .* no messy.json"):
        make_messy_patient(PID, SEED, tmp_path / "d", tmp_path / "t", ["rle_ct"], clean_from=(clean.dicom, clean.truth))
    assert (tmp_path / "d" / "mine.txt").exists()


@pytest.mark.slow
@pytest.mark.parametrize("flag", list(MESSY_VARIANTS))
def test_each_flag_gives_the_same_bytes_twice(flag, clean, messy, tmp_path):
    if flag == "jpegls_ct" and importlib.util.find_spec("jpeg_ls") is None:
        pytest.skip("pyjpegls is not installed")
    first = messy(flag)
    again = make(clean, tmp_path, flag)
    assert hashes(again.dicom) == hashes(first.dicom)
    assert hashes(again.truth) == hashes(first.truth)
