"""DICOM export (hnseg.dicom.export): predictions back as RTSTRUCT and SEG on the original CT, checked by reading them
back with hnseg's importer (voxel for voxel), plastimatch (an independent rasteriser, with and without XOR),
highdicom, dciodvfy, and a C-STORE to dcmtk's storescp. The Debian tools come from envs/system-packages.sh: a test
that needs one fails when it is missing."""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from hnseg.cli import main
from hnseg.dicom import export
from hnseg.dicom.contours import trace_slice
from hnseg.dicom.importer import ImportOptions, import_ct_and_labels
from hnseg.dicom.roi_names import match_rois
from hnseg.dicom.rtstruct import fill_polygon
from hnseg.errors import InputError

ROWS, COLS, SLICES = 14, 12, 6
IDENTITY = {"PatientName": "Doe^Jane", "PatientID": "MRN-4711", "PatientBirthDate": "19600101", "PatientSex": "F"}


def tool(name: str) -> str:
    path = shutil.which(name) or (shutil.which(name, path=str(Path(__file__).parents[1] / ".venv" / "bin")))
    assert path, f"{name} is missing: run `bash envs/system-packages.sh` (or `bash envs/setup.sh` for dciodvfy)"
    return path


def dciodvfy_errors(path: Path) -> list[str]:
    run = subprocess.run([tool("dciodvfy"), str(path)], capture_output=True, text=True, check=False)
    return [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]


# ------------------------------------------------------------------------------------------------- a tiny CT


def write_ct(
    folder: Path, slices: int = SLICES, skip: int | None = None, orientation: tuple = (1, 0, 0, 0, 1, 0)
) -> list[Path]:
    """A small CT series with a patient module (anisotropic pixels, an offset origin; head first supine unless
    `orientation` says otherwise)."""
    folder.mkdir(parents=True, exist_ok=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    paths = []
    for k in range(slices):
        if k == skip:
            continue
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.SpecificCharacterSet = "ISO_IR 100"
        for key, value in IDENTITY.items():
            setattr(ds, key, value)
        ds.OtherPatientIDsSequence = [Dataset()]
        ds.OtherPatientIDsSequence[0].PatientID = "OTHER-1"
        ds.OtherPatientIDsSequence[0].TypeOfPatientID = "TEXT"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20240102", "101010", "1", "ACC1"
        ds.ReferringPhysicianName = "Ref^Doc"
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "CT", 2, k + 1
        ds.SeriesDescription = "planning CT"
        ds.Manufacturer = "test"
        ds.PositionReferenceIndicator = ""
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImagePositionPatient = [-30.25, -12.5, -40.0 + 2.5 * k]
        ds.ImageOrientationPatient = list(orientation)
        ds.PixelSpacing = [0.9, 1.3]
        ds.SliceThickness = 2.5
        ds.KVP = 120
        ds.AcquisitionNumber = 1
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = ROWS, COLS
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
        ds.PixelData = np.full((ROWS, COLS), 1024 + 40 * k, dtype="<i2").tobytes()
        path = folder / f"ct{k:02d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def write_planning_rtstruct(folder: Path, ct_paths: list[Path]) -> None:
    """A clinical RTSTRUCT on the CT (a GTVp square on slice 2), so that the importer accepts the patient."""
    headers = sorted((pydicom.dcmread(p) for p in ct_paths), key=lambda d: float(d.ImagePositionPatient[2]))
    first = headers[0]
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = export.RTSTRUCT_SOP_CLASS
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = export.RTSTRUCT_SOP_CLASS
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    for key in ("PatientName", "PatientID", "StudyInstanceUID"):
        ds[key] = first[key]
    ds.Modality, ds.SeriesInstanceUID, ds.SeriesNumber = "RTSTRUCT", generate_uid(), 3
    ds.StructureSetLabel, ds.StructureSetDate, ds.StructureSetTime = "plan", "20240102", "120000"
    ref_series = Dataset()
    ref_series.SeriesInstanceUID = first.SeriesInstanceUID
    study = Dataset()
    study.RTReferencedSeriesSequence = [ref_series]
    ref_for = Dataset()
    ref_for.FrameOfReferenceUID = first.FrameOfReferenceUID
    ref_for.RTReferencedStudySequence = [study]
    ds.ReferencedFrameOfReferenceSequence = [ref_for]
    roi = Dataset()
    roi.ROINumber, roi.ROIName, roi.ReferencedFrameOfReferenceUID = 1, "GTVp", first.FrameOfReferenceUID
    ds.StructureSetROISequence = [roi]
    x0, y0 = [float(v) for v in first.ImagePositionPatient[:2]]
    z = float(headers[2].ImagePositionPatient[2])
    square = [x0 + 2, y0 + 2, z, x0 + 6, y0 + 2, z, x0 + 6, y0 + 6, z, x0 + 2, y0 + 6, z]
    contour = Dataset()
    contour.ContourGeometricType, contour.NumberOfContourPoints, contour.ContourData = "CLOSED_PLANAR", 4, square
    item = Dataset()
    item.ReferencedROINumber, item.ContourSequence = 1, [contour]
    ds.ROIContourSequence = [item]
    ds.save_as(folder / "rtstruct_plan.dcm", enforce_file_format=True)


def imported_patient(root: Path, **ct_options) -> tuple[Path, Path]:
    """(dicom folder, imported folder) of a tiny patient imported by hnseg's importer."""
    dicom = root / "dicom"
    paths = write_ct(dicom, **ct_options)
    write_planning_rtstruct(dicom, paths)
    opts = ImportOptions(on_missing_slice="resample") if ct_options.get("skip") is not None else ImportOptions()
    import_ct_and_labels("P01", dicom, root / "imported", opts)
    return dicom, root / "imported"


def write_prediction(labels: np.ndarray, like: Path, path: Path) -> Path:
    reference = sitk.ReadImage(str(like))
    image = sitk.GetImageFromArray(labels.astype(np.uint8))
    image.CopyInformation(reference)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))
    return path


# ------------------------------------------------------------------------------------------ the cases to trace


def _case(name: str) -> np.ndarray:
    labels = np.zeros((SLICES, ROWS, COLS), dtype=np.uint8)
    if name == "single_voxel":
        labels[2, 5, 4] = 1
        labels[3, 9, 9] = 2
    elif name == "diagonal_neighbours":
        labels[2, 4, 4] = labels[2, 5, 5] = labels[2, 6, 4] = labels[2, 3, 5] = 1  # a zigzag: 4 pixels, 4 contours
        labels[3, 8, 8] = labels[3, 9, 9] = labels[3, 8, 10] = 2
    elif name == "hole_with_island":
        labels[1:4, 2:11, 1:10] = 1
        labels[1:4, 4:9, 3:8] = 0  # the hole
        labels[1:4, 6, 5] = 1  # the island inside it
        labels[4, 1:9, 1:9] = 2  # a node with two holes, one L-shaped and one touching it at a corner
        labels[4, 3:5, 3] = labels[4, 3, 4] = 0
        labels[4, 5, 5] = 0
    elif name == "touching_border":
        labels[2, 0, :] = 1  # the whole first row
        labels[2, :, COLS - 1] = 1  # and the last column
        labels[3, ROWS - 1, 0] = 1  # a corner pixel
        labels[0, :, :] = 2  # a whole slice (the first of the CT)
        labels[SLICES - 1, 5:8, 0:3] = 2  # and the last slice
    elif name == "several_components":
        labels[2, 1:3, 1:3] = labels[2, 1:3, 7:10] = labels[2, 8:12, 2:5] = 1
        labels[2, 8:12, 7:11] = 2
        labels[3, 2:12:2, 2:10:2] = 2  # a checkerboard of single pixels
    else:
        raise ValueError(name)
    return labels


CASES = ["single_voxel", "diagonal_neighbours", "hole_with_island", "touching_border", "several_components"]


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 1.0 if not a.any() and not b.any() else 2 * np.count_nonzero(a & b) / (a.sum() + b.sum())


def plastimatch_masks(rtstruct: Path, ct_nifti: Path, out: Path, xor: bool) -> dict[str, np.ndarray]:
    """Each ROI of the RTSTRUCT rasterised by plastimatch on the imported CT's grid."""
    cmd = [tool("plastimatch"), "convert", "--input", str(rtstruct), "--fixed", str(ct_nifti)]
    cmd += ["--output-prefix", str(out), "--prefix-format", "nii.gz"] + (["--xor-contours"] if xor else [])
    run = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    masks = {}
    for path in out.glob("*.nii.gz"):
        masks[path.name.removesuffix(".nii.gz")] = sitk.GetArrayFromImage(sitk.ReadImage(str(path))) > 0
    return masks


def check_export(dicom: Path, imported: Path, labels: np.ndarray, out: Path, work: Path) -> dict[str, float]:
    """Every check on one patient's export; returns plastimatch's Dice per target and mode."""
    rtstruct_path, seg_path = out / "rtstruct.dcm", out / "seg.dcm"
    headers = [pydicom.dcmread(p, stop_before_pixels=True, force=True) for p in sorted(dicom.rglob("*")) if p.is_file()]
    ct_headers = sorted(
        (d for d in headers if d.get("Modality") == "CT"), key=lambda d: float(d.ImagePositionPatient[2])
    )
    ct_by_sop = {str(d.SOPInstanceUID): d for d in ct_headers}
    source = ct_headers[0]
    # dciodvfy: no error on either object
    for path in (rtstruct_path, seg_path):
        assert dciodvfy_errors(path) == [], path.name
    rtstruct, seg = pydicom.dcmread(rtstruct_path), pydicom.dcmread(seg_path)
    # the patient module and study of the source CT; research use; UNAPPROVED; names that say prediction
    for ds in (rtstruct, seg):
        for keyword in (*export.PATIENT_MODULE, *export.STUDY_MODULES[:7]):
            assert ds.get(keyword) == source.get(keyword), keyword
        assert "research use only, not for clinical use" in ds.SeriesDescription
    assert rtstruct.ApprovalStatus == "UNAPPROVED"
    assert [r.ROIName for r in rtstruct.StructureSetROISequence] == [t.roi_name for t in export.TARGETS]
    assert {r.ROIGenerationAlgorithm for r in rtstruct.StructureSetROISequence} == {"AUTOMATIC"}
    assert all("hnseg" in r.ROIGenerationDescription for r in rtstruct.StructureSetROISequence)
    assert {o.RTROIInterpretedType for o in rtstruct.RTROIObservationsSequence} == {"GTV"}
    assert (
        not match_rois([t.roi_name for t in export.TARGETS]).gtv_t
        + match_rois([t.roi_name for t in export.TARGETS]).gtv_n
    ), "a default ROI pattern takes a prediction for a clinical GTV"
    # UIDs: the original CT's study, series, frame of reference and images
    ref_for = rtstruct.ReferencedFrameOfReferenceSequence[0]
    ref_study = ref_for.RTReferencedStudySequence[0]
    ref_series = ref_study.RTReferencedSeriesSequence[0]
    assert ref_for.FrameOfReferenceUID == source.FrameOfReferenceUID
    assert ref_study.ReferencedSOPInstanceUID == source.StudyInstanceUID == rtstruct.StudyInstanceUID
    assert ref_series.SeriesInstanceUID == source.SeriesInstanceUID
    assert {i.ReferencedSOPInstanceUID for i in ref_series.ContourImageSequence} == set(ct_by_sop)
    for roi in rtstruct.ROIContourSequence:
        for contour in roi.get("ContourSequence", []):
            (image,) = contour.ContourImageSequence
            ct = ct_by_sop[image.ReferencedSOPInstanceUID]
            assert np.allclose(np.asarray(contour.ContourData, float).reshape(-1, 3)[:, 2], ct.ImagePositionPatient[2])
    assert seg.FrameOfReferenceUID == source.FrameOfReferenceUID and seg.StudyInstanceUID == source.StudyInstanceUID
    referenced = {i.ReferencedSOPInstanceUID for i in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert (
        referenced <= set(ct_by_sop) and seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
    )
    # hnseg's importer reads the RTSTRUCT back voxel for voxel (a folder with the CT and only the export)
    again = work / "reimport"
    again.mkdir(parents=True)
    for header in ct_headers:
        shutil.copy(header.filename, again / Path(header.filename).name)
    shutil.copy(rtstruct_path, again / "export.dcm")
    record = import_ct_and_labels("P01", again, work / "reimported", ImportOptions(roi_patterns=export.ROI_PATTERNS))
    assert record["rois"]["gtv_t"] == [export.TARGETS[0].roi_name]
    back = sitk.GetArrayFromImage(sitk.ReadImage(str(work / "reimported" / "labels.nii.gz")))
    assert np.array_equal(back, labels)
    # highdicom reads the SEG back as the same mask
    segmentation = hd.seg.segread(seg_path)
    sops = [str(d.SOPInstanceUID) for d in ct_headers]
    pixels = segmentation.get_pixels_by_source_instance(
        source_sop_instance_uids=sops, segment_numbers=[1, 2], assert_missing_frames_are_empty=True
    )
    for index, target in enumerate(export.TARGETS):
        assert np.array_equal(pixels[..., index] > 0, labels == target.label), target.key
    # plastimatch, with and without --xor-contours: Dice >= 0.99 per target (on these edge contours: exactly 1)
    dices = {}
    for xor in (False, True):
        masks = plastimatch_masks(rtstruct_path, imported / "ct.nii.gz", work / f"plastimatch_xor{int(xor)}", xor)
        for target in export.TARGETS:
            # plastimatch writes no image for an ROI without contours (an empty target)
            mask = masks.get(target.roi_name, np.zeros(labels.shape, bool))
            dices[f"{target.key} xor={xor}"] = value = dice(mask, labels == target.label)
            assert value >= 0.99, (target.key, xor, value)
    return dices


# ------------------------------------------------------------------------------------------------------ tests


def test_tracing_gives_every_random_mask_back_by_xor_and_by_union():
    """Contours along pixel edges, holes keyholed: XOR and union of the contours both give the mask exactly, on
    random masks of every density (holes, islands, diagonal touches, border pixels)."""
    rng = np.random.default_rng(15)
    for _ in range(600):
        mask = rng.random((rng.integers(1, 13), rng.integers(1, 13))) < rng.random()
        by_xor, by_union = np.zeros_like(mask), np.zeros_like(mask)
        for polygon in trace_slice(mask):
            layer = np.zeros_like(mask)
            fill_polygon(layer, polygon[:, 0], polygon[:, 1])
            assert not (by_union & layer).any(), "two contours of a slice overlap"
            by_union |= layer
            fill_polygon(by_xor, polygon[:, 0], polygon[:, 1])
        assert np.array_equal(by_xor, mask) and np.array_equal(by_union, mask)
        for polygon in trace_slice(mask):  # vertices on pixel corners, never on pixel centres
            assert np.all(np.abs(polygon - np.round(polygon)) == 0.5)


def test_tracing_small_cases():
    single = np.zeros((3, 3), bool)
    single[1, 1] = True
    (square,) = trace_slice(single)
    assert sorted(map(tuple, square.tolist())) == [(0.5, 0.5), (0.5, 1.5), (1.5, 0.5), (1.5, 1.5)]
    diagonal = np.eye(3, dtype=bool)
    assert len(trace_slice(diagonal)) == 3  # foreground 4-connected: three squares sharing corners
    ring = np.ones((5, 5), bool)
    ring[1:4, 1:4] = False
    ring[2, 2] = True
    assert len(trace_slice(ring)) == 2  # the ring keyholed into one contour, the island another


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    dicom, imported = imported_patient(root)
    return dicom, imported


def test_export_round_trips_on_a_rotated_ct(tmp_path):
    """A CT whose rows and columns run against the patient axes (head first prone: IOP -1 0 0 0 -1 0): the contours
    land in patient space through the direction matrix, and every reader gives the mask back."""
    dicom, imported = imported_patient(tmp_path / "prone", orientation=(-1, 0, 0, 0, -1, 0))
    labels = _case("hole_with_island")
    prediction = write_prediction(labels, imported / "ct.nii.gz", tmp_path / "pred" / "P01.nii.gz")
    out = tmp_path / "export" / "P01"
    export.export_patient("P01", "nnunet_box", dicom, imported, prediction, out, ImportOptions())
    dices = check_export(dicom, imported, labels, out, tmp_path)
    assert min(dices.values()) == 1.0, dices


@pytest.mark.parametrize("case", CASES)
def test_export_round_trips(tiny, tmp_path, case, caplog):
    dicom, imported = tiny
    labels = _case(case)
    prediction = write_prediction(labels, imported / "ct.nii.gz", tmp_path / "pred" / "P01.nii.gz")
    out = tmp_path / "export" / "P01"
    caplog.set_level(logging.DEBUG)
    summary = export.export_patient("P01", "nnunet_box", dicom, imported, prediction, out, ImportOptions())
    ct = pydicom.dcmread(next(dicom.glob("ct*.dcm")))
    for secret in ("Doe", "MRN-4711", "19600101", ct.StudyInstanceUID, ct.SeriesInstanceUID, ct.SOPInstanceUID):
        assert secret not in caplog.text  # logs name the pseudonymous patient only
    assert summary["voxels"] == {t.key: int((labels == t.label).sum()) for t in export.TARGETS}
    dices = check_export(dicom, imported, labels, out, tmp_path)
    assert min(dices.values()) == 1.0, dices  # edge contours leave no pixel to a tool's rounding


def test_an_empty_prediction_exports_rois_without_contours(tiny, tmp_path):
    dicom, imported = tiny
    labels = np.zeros((SLICES, ROWS, COLS), np.uint8)
    prediction = write_prediction(labels, imported / "ct.nii.gz", tmp_path / "P01.nii.gz")
    export.export_patient("P01", "m", dicom, imported, prediction, tmp_path / "out", ImportOptions())
    rtstruct = pydicom.dcmread(tmp_path / "out" / "rtstruct.dcm")
    assert [len(r.get("ContourSequence", [])) for r in rtstruct.ROIContourSequence] == [0, 0]
    for name in ("rtstruct.dcm", "seg.dcm"):
        assert dciodvfy_errors(tmp_path / "out" / name) == [], name


def test_refusals(tiny, tmp_path):
    dicom, imported = tiny
    labels = _case("single_voxel")
    prediction = write_prediction(labels, imported / "ct.nii.gz", tmp_path / "P01.nii.gz")
    # a patient imported from NIfTI: skipped with a clear message
    nifti = tmp_path / "nifti"
    shutil.copytree(imported, nifti)
    record = json.loads((nifti / "import.json").read_text())
    (nifti / "import.json").write_text(json.dumps({**record, "source": "nifti"}))
    assert export.exportable(nifti / "import.json") == (
        False,
        "imported from nifti, so there is no CT series to reference",
    )
    with pytest.raises(export.NotExportable, match="patient P01: not exported as DICOM: imported from nifti"):
        export.export_patient("P01", "m", dicom, nifti, prediction, tmp_path / "o1", ImportOptions())
    # the imported CT's geometry differs from the series (here: its origin moved by 1 mm)
    moved = tmp_path / "moved"
    shutil.copytree(imported, moved)
    ct = sitk.ReadImage(str(moved / "ct.nii.gz"))
    ct.SetOrigin(tuple(np.add(ct.GetOrigin(), (1.0, 0, 0))))
    sitk.WriteImage(ct, str(moved / "ct.nii.gz"))
    with pytest.raises(
        InputError,
        match=r"patient P01, CT #2 'planning CT' \(6 instance\(s\)\): its geometry differs from the imported CT",
    ):
        export.export_patient("P01", "m", dicom, moved, prediction, tmp_path / "o2", ImportOptions())
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def test_refuses_a_ct_the_import_resampled(tmp_path):
    dicom, imported = imported_patient(tmp_path, slices=SLICES + 1, skip=3)
    assert any("resampled" in w for w in json.loads((imported / "import.json").read_text())["warnings"])
    labels = np.zeros((SLICES + 1, ROWS, COLS), np.uint8)
    labels[2, 4, 4] = 1
    prediction = write_prediction(labels, imported / "ct.nii.gz", tmp_path / "P01.nii.gz")
    with pytest.raises(InputError, match=r"missing slice.*the export needs a CT imported as acquired"):
        export.export_patient("P01", "m", dicom, imported, prediction, tmp_path / "out", ImportOptions())


# ---------------------------------------------------------------------------------------------------- C-STORE


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_storescp(folder: Path, *options: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [tool("storescp"), "-aet", "NODE", "-od", str(folder), *options, str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    for _ in range(100):  # until it listens
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"storescp did not start: {proc.communicate()[0]!r}")


@pytest.fixture(scope="module")
def exported(tiny, tmp_path_factory):
    dicom, imported = tiny
    folder = tmp_path_factory.mktemp("exported")
    prediction = write_prediction(_case("hole_with_island"), imported / "ct.nii.gz", folder / "pred.nii.gz")
    export.export_patient("P01", "nnunet_box", dicom, imported, prediction, folder / "export" / "P01", ImportOptions())
    return folder / "export"


def test_cstore_to_storescp(exported, tmp_path):
    proc, port = start_storescp(tmp_path / "received")
    try:
        sent = export.send(exported, "127.0.0.1", port, "NODE", timeout_s=10)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert sorted(p.name for p in sent) == ["rtstruct.dcm", "seg.dcm"]
    received = {str(d.SOPInstanceUID): d for d in map(pydicom.dcmread, (tmp_path / "received").iterdir())}
    assert len(received) == 2
    for path in sent:
        written = pydicom.dcmread(path)
        got = received[str(written.SOPInstanceUID)]
        # equal outside the file meta group (0002), which storescp writes itself
        assert Dataset(got) == Dataset(written), path.name
        assert got.file_meta.MediaStorageSOPInstanceUID == written.SOPInstanceUID


def test_cstore_refused_unreachable_or_silent(exported, capsys):
    # a node that knows itself by another AE title refuses the association (pynetdicom's acceptor: storescp --refuse
    # refuses too, but its rejection reached pynetdicom as an abort three times in a row in a two-worker test run)
    from pynetdicom import AE
    from pynetdicom.sop_class import CTImageStorage

    node = AE(ae_title="PACS")
    node.require_called_aet = True
    node.add_supported_context(CTImageStorage)
    pacs = node.start_server(("127.0.0.1", 0), block=False)
    port = pacs.server_address[1]
    try:
        with pytest.raises(export.SendError) as raised:
            export.send(exported, "127.0.0.1", port, "NODE", timeout_s=10)
    finally:
        pacs.shutdown()
    refused = f"NODE@127.0.0.1:{port}: the node refused the association; check the called AE title (NODE)"
    assert str(raised.value).startswith(refused)
    closed = free_port()
    with pytest.raises(export.SendError, match=rf"NODE@127.0.0.1:{closed}: cannot connect"):
        export.send(exported, "127.0.0.1", closed, "NODE", timeout_s=2)
    # the command says the same and exits with 3
    assert main(["export", "send", str(exported), "--host", "127.0.0.1", "--port", str(closed), "--aet", "NODE"]) == 3
    assert f"NODE@127.0.0.1:{closed}: cannot connect" in capsys.readouterr().err
    # a port that accepts TCP connections and never answers: a timeout, not a hang
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    held = []
    thread = threading.Thread(target=lambda: held.append(server.accept()), daemon=True)
    thread.start()
    start = time.monotonic()
    try:
        with pytest.raises(export.SendError, match=r"no association within 1 s"):
            export.send(exported, "127.0.0.1", server.getsockname()[1], "NODE", timeout_s=1)
    finally:
        server.close()
        for conn, _ in held:
            conn.close()
    assert time.monotonic() - start < 10


# ------------------------------------------------------------------------------- the workflow, demo predictions


def test_export_rule_on_the_complete_run(complete_run, tmp_path):
    """`snakemake export/<method>/README.md` on a finished study: every evaluated DICOM patient's prediction exported
    and read back exactly; a patient imported from NIfTI skipped with its reason; identifiers only under export/."""
    from workflow_run import planned_jobs

    work = complete_run.copy(tmp_path / "run")
    method = "litemedsam_zeroshot_ct"
    with open(work / "results" / "metrics" / f"{method}.csv") as table:
        patients = sorted({row["patient"] for row in csv.DictReader(table)})
    assert len(patients) >= 3, patients
    # the last evaluated patient as if it had come in as NIfTI (the mtime kept, so nothing upstream reruns)
    nifti = patients[-1]
    record_path = work / "results" / "imported" / nifti / "import.json"
    stat = record_path.stat()
    record_path.write_text(json.dumps({**json.loads(record_path.read_text()), "source": "nifti"}))
    os.utime(record_path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    target = f"export/{method}/README.md"
    dry = complete_run.run(target, "-n", workdir=work)
    assert planned_jobs(dry.stdout) == {"export_dicom": len(patients) - 1, "export_method": 1}, dry.stdout
    complete_run.run(target, workdir=work)
    readme = (work / target).read_text()
    assert "contain patient identifiers" in readme
    assert f"{nifti} (imported from nifti, so there is no CT series to reference)" in readme
    assert not (work / "export" / method / nifti).exists()
    for patient in patients[:-1]:
        out = work / "export" / method / patient
        prediction = sitk.ReadImage(str(work / "results" / "predictions" / method / f"{patient}.nii.gz"))
        labels = sitk.GetArrayFromImage(prediction)
        imported = work / "results" / "imported" / patient
        dicom = complete_run.workdir / "cohort" / "dicom" / patient
        dices = check_export(dicom, imported, labels, out, tmp_path / patient)
        assert min(dices.values()) >= 0.99, dices
        # the exported objects carry the patient's identity; logs and results never do
        phi = json.loads((complete_run.workdir / "cohort" / "truth" / patient / "phi.json").read_text())
        assert pydicom.dcmread(out / "rtstruct.dcm").PatientName == phi["PatientName"]
        logs = [*(work / "logs" / "export_dicom").rglob("*.log"), *(work / "logs" / "export_method").rglob("*.log")]
        for path in [*logs, *(work / "results" / "benchmarks" / "export_dicom").rglob("*")]:
            if path.is_file():
                text = path.read_text()
                secrets = [phi["PatientName"], phi["PatientID"], *phi["uids"]["studies"].values()]
                assert not [secret for secret in secrets if secret in text], path
