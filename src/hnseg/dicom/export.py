"""Stage export_dicom: a method's prediction back to the clinic as DICOM RTSTRUCT and DICOM SEG on the original CT.

The CT to reference is found again in the patient's DICOM folder by the import's own series choice
(`hnseg.dicom.importer.choose_rtstruct_and_ct`), and the export refuses when that series is not the one whose grid
the prediction lies on: another series than the import recorded, slices the import had to resample (a missing
slice, a gantry tilt: no acquired image to draw on), an enhanced multi-frame CT, or a geometry that differs from
the imported `ct.nii.gz`. Patients imported from NIfTI have no series to reference and are not exported.

Both objects carry the CT's patient and study modules, read from the source DICOM at export time (they go back to
the same patient's record), so they are written outside `results/` with a README that says they contain
identifiers (DESIGN.md section 8). Messages and logs name the pseudonymous patient only.

- RTSTRUCT: one ROI per target (GTV-T, GTV-N), RTROIInterpretedType GTV, names that say they are predictions (no
  default `import.roi_patterns` takes them for clinical GTVs), ROIGenerationAlgorithm AUTOMATIC, the method and
  hnseg's version in ROIGenerationDescription, ApprovalStatus UNAPPROVED; contours traced by hnseg.dicom.contours
  (along pixel edges, holes keyholed), each with its ContourImageSequence.
- SEG (highdicom): BINARY, one segment per target, coded category and type, algorithm identification.
- `send`: C-STORE of the exported files to a DICOM node (pynetdicom), with a clear error on refusal or timeout.
"""

from __future__ import annotations

import datetime
import json
import logging
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ImplicitVRLittleEndian, generate_uid

import hnseg
from hnseg.dicom.contours import trace_slice
from hnseg.dicom.importer import LABEL_GTV_N, LABEL_GTV_T, ImportOptions, choose_rtstruct_and_ct, scan_patient
from hnseg.dicom.volume import Grid, plan_stack, planes_from_datasets
from hnseg.errors import InputError

log = logging.getLogger(__name__)

RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"
STUDY_REFERENCE_SOP_CLASS = "1.2.840.10008.3.1.2.3.1"  # RTReferencedStudySequence's class, as planning systems write it
RESEARCH_ONLY = "research use only, not for clinical use"
SERIES_DESCRIPTION = {
    "RTSTRUCT": f"hnseg contours, {RESEARCH_ONLY}",
    "SEG": f"hnseg segmentation, {RESEARCH_ONLY}",
}
SERIES_NUMBER = {"RTSTRUCT": 9701, "SEG": 9702}
ORIGIN_TOL_MM = 0.01  # the imported ct.nii.gz stores its origin in float32
SPACING_REL_TOL = 1e-4
DIRECTION_TOL = 1e-4


@dataclass(frozen=True)
class Target:
    label: int
    key: str  # import.roi_patterns key
    roi_name: str
    colour: tuple[int, int, int]


# Names that say "prediction" first: no default import.roi_patterns matches them (they must match the whole name),
# so a re-import of a folder holding both never takes a prediction for the clinical GTV.
TARGETS = (
    Target(LABEL_GTV_T, "gtv_t", "PRED GTV-T hnseg", (255, 64, 64)),
    Target(LABEL_GTV_N, "gtv_n", "PRED GTV-N hnseg", (64, 160, 255)),
)
ROI_PATTERNS = {t.key: [t.roi_name] for t in TARGETS}  # import.roi_patterns that re-import an export

# Patient module (PS3.3 C.7.1.1), General Study (C.7.2.1) and Patient Study (C.7.2.2) attributes: copied from the
# CT when present there, so that the objects file into the same patient and study.
PATIENT_MODULE = (
    "PatientName", "PatientID", "IssuerOfPatientID", "IssuerOfPatientIDQualifiersSequence", "TypeOfPatientID",
    "PatientBirthDate", "PatientBirthTime", "PatientBirthDateInAlternativeCalendar", "PatientDeathDateInAlternativeCalendar",
    "PatientAlternativeCalendar", "PatientSex", "QualityControlSubject", "ReferencedPatientPhotoSequence",
    "OtherPatientIDsSequence", "OtherPatientNames", "EthnicGroup", "EthnicGroupCodeSequence", "PatientComments",
    "PatientSpeciesDescription", "PatientSpeciesCodeSequence", "PatientBreedDescription", "PatientBreedCodeSequence",
    "BreedRegistrationSequence", "StrainDescription", "StrainNomenclature", "StrainCodeSequence",
    "StrainAdditionalInformation", "StrainStockSequence", "GeneticModificationsSequence", "ResponsiblePerson",
    "ResponsiblePersonRole", "ResponsibleOrganization", "PatientIdentityRemoved", "DeidentificationMethod",
    "DeidentificationMethodCodeSequence", "SourcePatientGroupIdentificationSequence",
    "GroupOfPatientsIdentificationSequence",
)  # fmt: skip
STUDY_MODULES = (
    "StudyInstanceUID", "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber",
    "IssuerOfAccessionNumberSequence", "StudyDescription", "PatientAge", "PatientSize", "PatientWeight",
)  # fmt: skip


class NotExportable(InputError):
    """The patient cannot be exported as DICOM (e.g. imported from NIfTI): skip it, the others go on."""


@dataclass
class ReferencedCT:
    """The original CT series, slice k of the imported volume = headers[k]."""

    headers: list[pydicom.Dataset]
    paths: list[Path]
    grid: Grid
    label: str

    @property
    def first(self) -> pydicom.Dataset:
        return self.headers[0]


def import_source(record: dict[str, Any]) -> str:
    """Where a patient's CT came from: "dicom" (also when the record predates the key) or e.g. "nifti"."""
    return str(record.get("source", "dicom") or "dicom").lower()


def exportable(import_record_path: str | Path) -> tuple[bool, str]:
    """Whether a patient can be exported as DICOM, and if not why (from its import.json)."""
    record = json.loads(Path(import_record_path).read_text())
    source = import_source(record)
    if source != "dicom":
        return False, f"imported from {source}, so there is no CT series to reference"
    if record.get("status", "ok") != "ok":
        return False, "its CT import did not succeed"
    return True, ""


def find_referenced_ct(
    patient: str, dicom_dir: str | Path, imported_dir: str | Path, opts: ImportOptions
) -> ReferencedCT:
    """The CT series the import used, found again by the import's choice, checked against the imported CT."""
    imported_dir = Path(imported_dir)
    record = json.loads((imported_dir / "import.json").read_text())
    ok, why = exportable(imported_dir / "import.json")
    if not ok:
        raise NotExportable(f"patient {patient}: not exported as DICOM: {why}")
    scan = scan_patient(patient, dicom_dir)
    _, ct_choice = choose_rtstruct_and_ct(patient, Path(dicom_dir), scan, opts)
    series = ct_choice.series
    what = f"patient {patient}, {series.label()}"
    recorded = (record.get("ct") or {}).get("series")
    if recorded != series.label():
        raise InputError(
            f"{what}: the import used {recorded}, but the folder now yields this one; the DICOM folder changed "
            "since the import: rerun the import (snakemake reruns it when the folder changes) before exporting"
        )
    if any("PerFrameFunctionalGroupsSequence" in i.header for i in series.instances):
        raise InputError(
            f"{what}: an enhanced multi-frame CT; the export references single-frame CT images only. Export the "
            "CT as classic single-frame images"
        )
    planes, instance_of = [], {}
    for instance in series.instances:
        (plane,) = planes_from_datasets([instance.header], [str(instance.path)])
        planes.append(plane)
        instance_of[id(plane)] = instance
    try:
        plan = plan_stack(planes, what, on_missing_slice="refuse", on_gantry_tilt="refuse")
    except InputError as exc:
        raise InputError(
            f"{exc}. The import resampled this CT, so the prediction lies on slices that no acquired image holds and "
            "contours on them would reference no CT image: the export needs a CT imported as acquired. Re-export "
            "the complete series without tilt from the planning system and rerun the study for this patient"
        ) from None
    resampled = [w for w in record.get("warnings", []) if "resampled" in w and "CT" in w]
    if resampled:
        raise InputError(f"{what}: the import resampled this CT ({resampled[0]}); the export needs it as acquired")
    _check_grid(what, plan.grid, imported_dir / "ct.nii.gz")
    chosen = [instance_of[id(p)] for p in plan.planes]
    return ReferencedCT([i.header for i in chosen], [i.path for i in chosen], plan.grid, series.label())


def _check_grid(what: str, grid: Grid, ct_path: Path) -> None:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(ct_path))
    reader.ReadImageInformation()
    size_zyx = tuple(reversed(reader.GetSize()))
    problems = []
    if size_zyx != tuple(grid.shape_zyx):
        problems.append(f"size {size_zyx} (z, y, x) against {tuple(grid.shape_zyx)}")
    if np.abs(np.subtract(reader.GetOrigin(), grid.origin)).max() > ORIGIN_TOL_MM:
        problems.append(
            f"origin {np.round(reader.GetOrigin(), 3).tolist()} against {np.round(grid.origin, 3).tolist()}"
        )
    if np.abs(np.subtract(reader.GetSpacing(), grid.spacing) / np.asarray(grid.spacing)).max() > SPACING_REL_TOL:
        problems.append(f"spacing {reader.GetSpacing()} against {grid.spacing}")
    if np.abs(np.subtract(reader.GetDirection(), grid.direction)).max() > DIRECTION_TOL:
        problems.append("direction")
    if problems:
        raise InputError(
            f"{what}: its geometry differs from the imported CT ({'; '.join(problems)}), so the prediction does not "
            "lie on this series' slices; rerun the import for this patient before exporting"
        )


def read_prediction(prediction_path: str | Path, grid: Grid, patient: str) -> np.ndarray:
    """The predicted labels (z, y, x) as uint8, checked to lie on the CT's grid."""
    image = sitk.ReadImage(str(prediction_path))
    same = (
        tuple(reversed(image.GetSize())) == tuple(grid.shape_zyx)
        and np.abs(np.subtract(image.GetOrigin(), grid.origin)).max() <= ORIGIN_TOL_MM
        and np.abs(np.subtract(image.GetSpacing(), grid.spacing)).max() <= SPACING_REL_TOL * max(grid.spacing)
        and np.abs(np.subtract(image.GetDirection(), grid.direction)).max() <= DIRECTION_TOL
    )
    if not same:
        raise InputError(
            f"patient {patient}: the prediction {Path(prediction_path).name} is not on the CT grid; rerun the method"
        )
    labels = sitk.GetArrayFromImage(image)
    unknown = sorted(set(np.unique(labels).tolist()) - {0, *(t.label for t in TARGETS)})
    if unknown:
        raise InputError(f"patient {patient}: the prediction holds labels {unknown} besides 0, 1 and 2")
    return labels.astype(np.uint8)


# ----------------------------------------------------------------------------------------------------- RTSTRUCT


def _copy_modules(target: Dataset, source: Dataset) -> None:
    for keyword in (*PATIENT_MODULE, *STUDY_MODULES):
        if keyword in source:
            target[keyword] = source[keyword]  # the same element (VR, value): nothing is re-encoded
    if "SpecificCharacterSet" in source:
        target.SpecificCharacterSet = source.SpecificCharacterSet


def _ref(sop_class: str, sop_uid: str) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = sop_class
    item.ReferencedSOPInstanceUID = sop_uid
    return item


def _ds(values: np.ndarray) -> list[str]:
    """Decimal strings with 4 decimals (0.1 micrometre; well inside DS's 16 characters)."""
    return [f"{round(float(v), 4) + 0.0:.4f}".rstrip("0").rstrip(".") for v in values]


def _now() -> tuple[str, str]:
    now = datetime.datetime.now()
    return now.strftime("%Y%m%d"), now.strftime("%H%M%S")


def _equipment(ds: Dataset) -> None:
    ds.Manufacturer = "hnseg"
    ds.ManufacturerModelName = "hnseg"
    ds.SoftwareVersions = hnseg.__version__
    ds.DeviceSerialNumber = "0"


def contours_in_patient_space(labels: np.ndarray, label: int, grid: Grid) -> dict[int, list[np.ndarray]]:
    """Slice index -> closed contours (n, 3) in patient coordinates (mm) of one label."""
    direction = np.asarray(grid.direction, dtype=np.float64).reshape(3, 3)
    spacing = np.asarray(grid.spacing, dtype=np.float64)
    out: dict[int, list[np.ndarray]] = {}
    for k in np.nonzero((labels == label).any(axis=(1, 2)))[0].tolist():
        for polygon in trace_slice(labels[k] == label):
            index = np.column_stack([polygon, np.full(len(polygon), float(k))])  # (column, row, slice)
            out.setdefault(k, []).append(np.asarray(grid.origin) + (index * spacing) @ direction.T)
    return out


def build_rtstruct(ct: ReferencedCT, labels: np.ndarray, method: str) -> Dataset:
    """The RTSTRUCT of a prediction (labels on the CT grid) drawn on the CT series `ct`."""
    first = ct.first
    date, time = _now()
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = RTSTRUCT_SOP_CLASS
    # implicit VR: a contour's ContourData may exceed the 64 KiB an explicit-VR DS element can hold (a ragged
    # prediction's outline with its keyholed holes), as planning systems write RTSTRUCTs
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    _copy_modules(ds, first)
    ds.SOPClassUID = RTSTRUCT_SOP_CLASS
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    # RT Series
    ds.Modality = "RTSTRUCT"
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = SERIES_NUMBER["RTSTRUCT"]
    ds.SeriesDate, ds.SeriesTime = date, time
    ds.SeriesDescription = SERIES_DESCRIPTION["RTSTRUCT"]
    ds.OperatorsName = ""
    _equipment(ds)
    # Frame of Reference (the CT's: the contours are in its patient coordinates)
    ds.FrameOfReferenceUID = str(first.FrameOfReferenceUID)
    ds.PositionReferenceIndicator = first.get("PositionReferenceIndicator", "")
    # Structure Set
    ds.StructureSetLabel = "hnseg PRED"
    ds.StructureSetName = method[:64]
    ds.StructureSetDescription = f"Predicted by hnseg {hnseg.__version__}, method {method}; {RESEARCH_ONLY}"
    ds.StructureSetDate, ds.StructureSetTime = date, time
    ds.InstanceNumber = 1
    frame_of_reference = str(first.FrameOfReferenceUID)
    sop_class = str(first.SOPClassUID)
    ref_series = Dataset()
    ref_series.SeriesInstanceUID = str(first.SeriesInstanceUID)
    ref_series.ContourImageSequence = Sequence([_ref(sop_class, str(h.SOPInstanceUID)) for h in ct.headers])
    ref_study = _ref(STUDY_REFERENCE_SOP_CLASS, str(first.StudyInstanceUID))
    ref_study.RTReferencedSeriesSequence = Sequence([ref_series])
    ref_for = Dataset()
    ref_for.FrameOfReferenceUID = frame_of_reference
    ref_for.RTReferencedStudySequence = Sequence([ref_study])
    ds.ReferencedFrameOfReferenceSequence = Sequence([ref_for])
    rois, roi_contours, observations = [], [], []
    for number, target in enumerate(TARGETS, start=1):
        roi = Dataset()
        roi.ROINumber = number
        roi.ReferencedFrameOfReferenceUID = frame_of_reference
        roi.ROIName = target.roi_name
        roi.ROIDescription = f"{target.key.upper().replace('_', '-')} predicted by {method}; {RESEARCH_ONLY}"[:64]
        roi.ROIGenerationAlgorithm = "AUTOMATIC"
        roi.ROIGenerationDescription = f"hnseg {hnseg.__version__} {method}"[:64]
        rois.append(roi)
        item = Dataset()
        item.ROIDisplayColor = list(target.colour)
        item.ReferencedROINumber = number
        contours = []
        for k, polygons in sorted(contours_in_patient_space(labels, target.label, ct.grid).items()):
            for points in polygons:
                contour = Dataset()
                contour.ContourImageSequence = Sequence([_ref(sop_class, str(ct.headers[k].SOPInstanceUID))])
                contour.ContourGeometricType = "CLOSED_PLANAR"
                contour.NumberOfContourPoints = len(points)
                contour.ContourNumber = len(contours) + 1
                contour.ContourData = _ds(points.ravel())
                contours.append(contour)
        if contours:  # ContourSequence is type 3: an empty target is an ROI without contours
            item.ContourSequence = Sequence(contours)
        roi_contours.append(item)
        observation = Dataset()
        observation.ObservationNumber = number
        observation.ReferencedROINumber = number
        observation.ROIObservationLabel = target.roi_name.removesuffix(" hnseg")  # SH: 16 characters
        observation.RTROIInterpretedType = "GTV"
        observation.ROIInterpreter = ""
        observations.append(observation)
    ds.StructureSetROISequence = Sequence(rois)
    ds.ROIContourSequence = Sequence(roi_contours)
    ds.RTROIObservationsSequence = Sequence(observations)
    ds.ApprovalStatus = "UNAPPROVED"
    return ds


# ---------------------------------------------------------------------------------------------------------- SEG


def build_seg(ct: ReferencedCT, labels: np.ndarray, method: str) -> Dataset:
    """The DICOM SEG (BINARY, one segment per target) of a prediction on the CT series `ct`."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    algorithm = hd.AlgorithmIdentificationSequence(
        name=f"hnseg {method}"[:64], version=hnseg.__version__, family=codes.cid7162.ArtificialIntelligence
    )
    descriptions = []
    for number, target in enumerate(TARGETS, start=1):
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=number,
                segment_label=target.roi_name,
                segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
                segmented_property_type=codes.SCT.Neoplasm,
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                algorithm_identification=algorithm,
                anatomic_regions=[codes.SCT.LymphNode] if target.label == LABEL_GTV_N else None,
                tracking_id=f"{target.key} {method}"[:64],
                tracking_uid=generate_uid(),
            )
        )
    pixels = np.stack([labels == t.label for t in TARGETS], axis=-1)  # (frames, rows, columns, segments)
    # highdicom logs the source images' SOP Instance UIDs at INFO: original UIDs never reach a log (DESIGN.md 8)
    logging.getLogger("highdicom").setLevel(logging.WARNING)
    seg = hd.seg.Segmentation(
        source_images=ct.headers,
        pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=generate_uid(),
        series_number=SERIES_NUMBER["SEG"],
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="hnseg",
        manufacturer_model_name="hnseg",
        software_versions=hnseg.__version__,
        device_serial_number="0",
        series_description=SERIES_DESCRIPTION["SEG"],
        content_description=f"Predicted by hnseg {hnseg.__version__}, method {method}"[:64],
        content_label="HNSEG_PRED",
    )
    _copy_modules(seg, ct.first)
    return seg


# ------------------------------------------------------------------------------------------------------ export


def export_patient(
    patient: str,
    method: str,
    dicom_dir: str | Path,
    imported_dir: str | Path,
    prediction_path: str | Path,
    out_dir: str | Path,
    opts: ImportOptions,
) -> dict[str, Any]:
    """Write out_dir/rtstruct.dcm and out_dir/seg.dcm of one patient's prediction; returns what was written
    (counts only: no identifier)."""
    ct = find_referenced_ct(patient, dicom_dir, imported_dir, opts)
    labels = read_prediction(prediction_path, ct.grid, patient)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rtstruct = build_rtstruct(ct, labels, method)
    rtstruct.save_as(out_dir / "rtstruct.dcm", enforce_file_format=True)
    seg = build_seg(ct, labels, method)
    seg.save_as(out_dir / "seg.dcm", enforce_file_format=True)
    summary = {
        "patient": patient,
        "method": method,
        "ct_slices": len(ct.headers),
        "contours": {t.key: _contour_count(rtstruct, i) for i, t in enumerate(TARGETS)},
        "voxels": {t.key: int(np.count_nonzero(labels == t.label)) for t in TARGETS},
        "seg_frames": int(seg.NumberOfFrames),
    }
    log.info(
        "patient %s, %s: RTSTRUCT with %s contours and SEG with %d frames on %d CT slices",
        patient, method, summary["contours"], summary["seg_frames"], summary["ct_slices"],
    )  # fmt: skip
    return summary


def _contour_count(rtstruct: Dataset, index: int) -> int:
    return len(rtstruct.ROIContourSequence[index].get("ContourSequence") or [])


README = """# DICOM export of {method}: these files contain patient identifiers

Each folder holds one patient's predicted GTV-T and GTV-N by hnseg's method `{method}` as a DICOM RTSTRUCT
(`rtstruct.dcm`) and a DICOM SEG (`seg.dcm`) on the original planning CT. **They carry the patient module of the
original CT (name, ID, birth date, ...) and its study**, so that they file into the patient's record: keep them
inside the clinical network, and never copy them into `results/` or share them with the study outputs.

They are predictions for research, not for clinical use: their series description says so, the RTSTRUCT is
UNAPPROVED and its ROI names start with PRED. Send them to a DICOM node with
`hnseg export send export/{method} --host HOST --port PORT --aet AET`.

Exported: {exported}
Not exported: {skipped}
"""


def write_readme(path: str | Path, method: str, exported: list[str], skipped: dict[str, str]) -> None:
    """The README beside a method's export (pseudonymous ids only)."""
    text = README.format(
        method=method,
        exported=", ".join(exported) or "none",
        skipped="; ".join(f"{p} ({why})" for p, why in sorted(skipped.items())) or "none",
    )
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(text)


# ------------------------------------------------------------------------------------------------------- C-STORE


class SendError(RuntimeError):
    """A C-STORE that did not go through: refused, unreachable, timed out or a failure status."""


def send(
    directory: str | Path,
    host: str,
    port: int,
    called_aet: str,
    calling_aet: str = "HNSEG",
    timeout_s: float = 30.0,
) -> list[Path]:
    """C-STORE every DICOM file under `directory` to the node host:port (AE title `called_aet`); returns the files.

    Raises SendError naming the node and the fix when it cannot be reached, refuses the association, does not
    answer within timeout_s, or answers a store with a failure status."""
    from pynetdicom import AE

    node = f"{called_aet}@{host}:{port}"
    files = sorted(p for p in Path(directory).rglob("*.dcm") if p.is_file())
    if not files:
        raise SendError(f"no .dcm files under {directory}; run the export first")
    datasets = []
    for path in files:
        try:
            datasets.append(pydicom.dcmread(path))
        except Exception as exc:
            raise SendError(f"{path} is not a readable DICOM file ({exc}); send only an export folder") from None
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except TimeoutError:
        raise SendError(f"{node}: no answer within {timeout_s:g} s; check the host, port and firewall") from None
    except OSError as exc:
        raise SendError(
            f"{node}: cannot connect ({exc.strerror or exc}); check that the node runs, its host and port"
        ) from None
    ae = AE(ae_title=calling_aet)
    for sop_class, syntax in sorted({(str(d.SOPClassUID), str(d.file_meta.TransferSyntaxUID)) for d in datasets}):
        ae.add_requested_context(sop_class, syntax)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = timeout_s
    assoc = ae.associate(host, port, ae_title=called_aet)
    if not assoc.is_established:
        if assoc.is_rejected:
            raise SendError(
                f"{node}: the node refused the association; check the called AE title ({called_aet}) and that "
                f"the node accepts this calling AE title ({calling_aet})"
            )
        raise SendError(f"{node}: no association within {timeout_s:g} s (aborted or timed out); check the port")
    try:
        for path, dataset in zip(files, datasets, strict=True):
            status = assoc.send_c_store(dataset)
            if not status:
                raise SendError(f"{node}: no answer to the C-STORE of {path.name} within {timeout_s:g} s")
            code = int(status.Status)
            if code not in (0x0000, 0xB000, 0xB006, 0xB007):
                raise SendError(f"{node}: the C-STORE of {path.name} failed with status 0x{code:04X}")
    finally:
        assoc.release()
    log.info("%d file(s) sent to %s", len(files), node)
    return files
