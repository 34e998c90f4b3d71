"""CT, PET and MR image series writers (one file per axial slice).

Instance 1 is the most superior slice (head-first scanning); slice index k in the arrays is SimpleITK order
(k = 0 most inferior), so instance number = n_slices - k.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from hnseg.synthetic import dicom_writer as dw
from hnseg.synthetic.geometry import Grid, ds
from hnseg.synthetic.identity import Identity, dicom_time

F18_HALF_LIFE_S = 6586.2
IOP_AXIAL = ["1", "0", "0", "0", "1", "0"]


def _plane(d: Dataset, grid: Grid, thickness: float) -> None:
    """Image Plane attributes shared by every slice."""
    d.ImageOrientationPatient = IOP_AXIAL
    d.PixelSpacing = [ds(grid.spacing[1]), ds(grid.spacing[0])]  # row spacing (y), column spacing (x)
    d.SliceThickness = ds(thickness)


def _instance(grid: Grid, k: int, sop_uid: str, pixels: np.ndarray, signed: bool) -> Dataset:
    """The attributes that differ between the slices of a series."""
    z = grid.slice_z(k)
    d = Dataset()
    d.SOPInstanceUID = sop_uid
    d.InstanceNumber = grid.size[2] - k
    d.ImagePositionPatient = [ds(grid.origin[0]), ds(grid.origin[1]), ds(z)]
    d.SliceLocation = ds(z)
    dw.add_pixel_data(d, pixels, signed)
    return d


def slice_z_strings(grid: Grid) -> list[str]:
    """The DS text of every slice's z, index k (the RTSTRUCT reuses these strings for its contour z)."""
    return [ds(grid.slice_z(k)) for k in range(grid.size[2])]


def _file(directory: Path, instance: int) -> Path:
    return directory / f"1-{instance:03d}.dcm"


# ----------------------------------------------------------------------------------------------- CT


def write_ct(
    directory: Path,
    *,
    ident: Identity,
    study: dw.Study,
    series: dw.Series,
    grid: Grid,
    stored: np.ndarray,
    sop_uids: list[str],
) -> list[Path]:
    """stored: int16 (z, y, x) with HU = stored - 1024."""
    d = dw.new_dataset(dw.CT_IMAGE)
    dw.add_patient_study(d, ident, study)
    dw.add_series(d, ident, series)
    d.BodyPartExamined = "HEADNECK"
    d.PatientPosition = "HFS"
    dw.add_frame_of_reference(d, study)
    dw.add_equipment(d, ident, "GE MEDICAL SYSTEMS", "Discovery ST", "PETCT01")
    d.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    d.AcquisitionNumber = 1
    d.AcquisitionDate = d.ContentDate = series.date
    d.AcquisitionTime = d.ContentTime = series.time
    d.ScanOptions = "HELICAL MODE"
    d.KVP = "120"
    d.DataCollectionDiameter = "500"
    d.ReconstructionDiameter = ds(grid.spacing[0] * grid.size[0])
    d.GantryDetectorTilt = "0"
    d.TableHeight = "160"
    d.RotationDirection = "CW"
    d.ExposureTime = "1000"
    d.XRayTubeCurrent = 200
    d.Exposure = 200
    d.ConvolutionKernel = "STANDARD"
    d.RescaleIntercept = "-1024"
    d.RescaleSlope = "1"
    d.WindowCenter = "40"
    d.WindowWidth = "400"
    d.BurnedInAnnotation = "NO"
    _plane(d, grid, grid.spacing[2])
    dw.add_pixel_format(d, grid.size[1], grid.size[0], signed=True, bits_stored=16)
    writer = dw.InstanceWriter(d)
    paths = []
    for k in range(grid.size[2]):
        inst = _instance(grid, k, sop_uids[k], stored[k], signed=True)
        path = _file(directory, inst.InstanceNumber)
        writer.write(path, inst)
        paths.append(path)
    return paths


# ----------------------------------------------------------------------------------------------- PET


@dataclass(frozen=True)
class PetDose:
    dose_bq: float  # as written (DS)
    weight_kg: float  # as written (DS)
    injection_s: int
    series_s: int

    @property
    def decayed_dose_bq(self) -> float:
        return self.dose_bq * 2.0 ** (-(self.series_s - self.injection_s) / F18_HALF_LIFE_S)

    @property
    def suv_to_bqml(self) -> float:
        """Activity concentration (Bq/ml) per SUV unit: decayed dose / (weight in g)."""
        return self.decayed_dose_bq / (self.weight_kg * 1000.0)


def _code(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = "SCT"
    item.CodeMeaning = meaning
    return item


def _slice_scale(activity: np.ndarray) -> tuple[str, np.ndarray]:
    """Per-slice RescaleSlope (as DS text) and int16 stored values for one slice of Bq/ml."""
    peak = float(activity.max())
    if peak <= 0.0:
        return "1", np.zeros(activity.shape, dtype=np.int16)
    text = f"{peak / 32766.0:.10g}"
    slope = float(text)
    stored = np.rint(activity / slope)
    if stored.max() > 32767:  # pragma: no cover - the 32766 margin prevents it
        raise RuntimeError("PET slope too small")
    return text, stored.astype(np.int16)


def write_pet(
    directory: Path,
    *,
    ident: Identity,
    study: dw.Study,
    series: dw.Series,
    grid: Grid,
    suv: np.ndarray,
    dose: PetDose,
    sop_uids: list[str],
    bed_slices: int,
    bed_seconds: int = 180,
) -> list[Path]:
    """suv: float32 (z, y, x) SUVbw truth; written as BQML with a per-slice RescaleSlope."""
    d = dw.new_dataset(dw.PET_IMAGE)
    dw.add_patient_study(d, ident, study)
    dw.add_series(d, ident, series)
    d.BodyPartExamined = "HEADNECK"
    dw.add_frame_of_reference(d, study)
    dw.add_equipment(d, ident, "GE MEDICAL SYSTEMS", "Discovery ST", "PETCT01")
    # PET Series
    d.Units = "BQML"
    d.CountsSource = "EMISSION"
    d.SeriesType = ["WHOLE BODY", "IMAGE"]
    d.NumberOfSlices = grid.size[2]
    d.CorrectedImage = ["DECY", "ATTN", "SCAT", "DTIM", "RAN", "RADL", "NORM"]
    d.DecayCorrection = "START"
    d.RandomsCorrectionMethod = "DLYD"
    d.AttenuationCorrectionMethod = "CT-derived mu-map"
    d.ScatterCorrectionMethod = "Model-based"
    d.ReconstructionMethod = "OSEM 2i20s"
    d.CollimatorType = "NONE"
    d.AxialAcceptance = "11"
    d.ReconstructionDiameter = ds(grid.spacing[0] * grid.size[0])
    # PET Isotope
    radio = Dataset()
    radio.RadionuclideCodeSequence = Sequence([_code("77004003", "^18^Fluorine")])
    radio.RadiopharmaceuticalRoute = "Intravenous route"
    radio.RadiopharmaceuticalStartTime = dicom_time(dose.injection_s)
    radio.RadiopharmaceuticalStartDateTime = study.date + dicom_time(dose.injection_s)
    radio.RadionuclideTotalDose = ds(dose.dose_bq, 0)
    radio.RadionuclideHalfLife = ds(F18_HALF_LIFE_S, 1)
    radio.RadionuclidePositronFraction = "0.97"
    radio.Radiopharmaceutical = "Fluorodeoxyglucose"
    radio.RadiopharmaceuticalCodeSequence = Sequence([_code("35321007", "Fluorodeoxyglucose F^18^")])
    d.RadiopharmaceuticalInformationSequence = Sequence([radio])
    # NM/PET Patient Orientation (no PatientPosition with these codes)
    orientation = _code("102538003", "recumbent")
    orientation.PatientOrientationModifierCodeSequence = Sequence([_code("40199007", "supine")])
    d.PatientOrientationCodeSequence = Sequence([orientation])
    d.PatientGantryRelationshipCodeSequence = Sequence([_code("102540008", "headfirst")])
    # PET Image
    d.ImageType = ["ORIGINAL", "PRIMARY"]
    d.RescaleIntercept = "0"
    d.ActualFrameDuration = bed_seconds * 1000
    d.DeadTimeFactor = "1.02"
    d.ScatterFractionFactor = "0.31"
    d.DoseCalibrationFactor = "1"
    d.BurnedInAnnotation = "NO"
    lam = math.log(2.0) / F18_HALF_LIFE_S
    mid = -math.log((1.0 - math.exp(-lam * bed_seconds)) / (lam * bed_seconds)) / lam  # decay-weighted
    n = grid.size[2]
    bed_step = max(1, bed_slices - 11)
    n_beds = max(1, math.ceil((n - bed_slices) / bed_step) + 1) if n > bed_slices else 1
    d.SliceSensitivityFactor = "1"
    d.AcquisitionDate = d.ContentDate = series.date
    _plane(d, grid, grid.spacing[2])
    dw.add_pixel_format(d, grid.size[1], grid.size[0], signed=True, bits_stored=16)
    writer = dw.InstanceWriter(d)
    factor = dose.suv_to_bqml
    paths = []
    for k in range(n):
        slope_text, stored = _slice_scale(suv[k].astype(np.float64) * factor)
        inst = _instance(grid, k, sop_uids[k], stored, signed=True)
        bed = min(n_beds - 1, (inst.InstanceNumber - 1) // bed_step) if n_beds > 1 else 0
        acq_s = dose.series_s + bed * bed_seconds
        frame_ref_s = (acq_s - dose.series_s) + mid
        inst.ImageIndex = inst.InstanceNumber
        inst.AcquisitionTime = inst.ContentTime = dicom_time(acq_s)
        inst.FrameReferenceTime = ds(frame_ref_s * 1000.0, 1)
        inst.DecayFactor = ds(math.exp(lam * frame_ref_s), 6)
        inst.RescaleSlope = slope_text
        path = _file(directory, inst.InstanceNumber)
        writer.write(path, inst)
        paths.append(path)
    return paths


# ----------------------------------------------------------------------------------------------- MR


@dataclass(frozen=True)
class MrProtocol:
    weighting: str  # T1 or T2
    repetition_ms: float
    echo_ms: float
    echo_train: int
    sequence_name: str
    field_t: float
    flip_deg: float


def write_mr(
    directory: Path,
    *,
    ident: Identity,
    study: dw.Study,
    series: dw.Series,
    grid: Grid,
    thickness: float,
    pixels: np.ndarray,
    protocol: MrProtocol,
    sop_uids: list[str],
) -> list[Path]:
    """pixels: uint16 (z, y, x), 12 bits stored."""
    d = dw.new_dataset(dw.MR_IMAGE)
    dw.add_patient_study(d, ident, study)
    dw.add_series(d, ident, series)
    d.BodyPartExamined = "HEADNECK"
    d.PatientPosition = "HFS"
    dw.add_frame_of_reference(d, study)
    dw.add_equipment(d, ident, "SIEMENS", "Avanto", "MRC40123")
    d.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
    d.AcquisitionNumber = 1
    d.AcquisitionDate = d.ContentDate = series.date
    d.AcquisitionTime = d.ContentTime = series.time
    d.ScanningSequence = "SE"
    d.SequenceVariant = ["SK", "SP", "OSP"]
    d.ScanOptions = "PFP"
    d.MRAcquisitionType = "2D"
    d.SequenceName = protocol.sequence_name
    d.AngioFlag = "N"
    d.RepetitionTime = ds(protocol.repetition_ms, 1)
    d.EchoTime = ds(protocol.echo_ms, 2)
    d.EchoTrainLength = protocol.echo_train
    d.NumberOfAverages = "1"
    d.ImagingFrequency = ds(42.577478 * protocol.field_t, 6)
    d.ImagedNucleus = "1H"
    d.EchoNumbers = 1
    d.MagneticFieldStrength = ds(protocol.field_t, 1)
    d.SpacingBetweenSlices = ds(grid.spacing[2])
    d.PercentSampling = "100"
    d.PercentPhaseFieldOfView = ds(100.0 * grid.size[1] / grid.size[0], 4)
    d.PixelBandwidth = "190"
    d.ReceiveCoilName = "HeadNeck_20"
    d.TransmitCoilName = "Body"
    d.AcquisitionMatrix = [0, grid.size[0], grid.size[1], 0]
    d.InPlanePhaseEncodingDirection = "ROW"
    d.FlipAngle = ds(protocol.flip_deg, 1)
    d.VariableFlipAngleFlag = "N"
    d.PatientOrientation = ["L", "P"]
    d.WindowCenter = ds(float(np.percentile(pixels, 99.5)) / 2, 0)
    d.WindowWidth = ds(float(np.percentile(pixels, 99.5)), 0)
    d.BurnedInAnnotation = "NO"
    _plane(d, grid, thickness)
    dw.add_pixel_format(d, grid.size[1], grid.size[0], signed=False, bits_stored=12)
    writer = dw.InstanceWriter(d)
    paths = []
    for k in range(grid.size[2]):
        inst = _instance(grid, k, sop_uids[k], pixels[k], signed=False)
        path = _file(directory, inst.InstanceNumber)
        writer.write(path, inst)
        paths.append(path)
    return paths
