"""DICOM writing shared by every series: file meta, the common IOD modules and PACS-style paths.

Files go to ``<dicom_dir>/<MM-DD-YYYY>-<StudyDescription>-<5 digits>/<SeriesNumber>.000000-<SeriesDescription>-
<5 digits>/1-NNN.dcm`` as in a TCIA (NBIA) download. Everything is explicit VR little endian, written with
``enforce_file_format=True``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import correct_ambiguous_vr, write_data_element, write_file_meta_info
from pydicom.uid import ExplicitVRLittleEndian

from hnseg.synthetic.geometry import ds as ds_text
from hnseg.synthetic.identity import Identity
from hnseg.synthetic.seeding import digits

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
PET_IMAGE = "1.2.840.10008.5.1.4.1.1.128"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
RT_STRUCT = "1.2.840.10008.5.1.4.1.1.481.3"
IMPLEMENTATION_UID = "1.2.826.0.1.3680043.8.498.1"
IMPLEMENTATION_VERSION = "HNSEG_SYN_1"
SOFTWARE = "hnseg synthetic 1"


@dataclass(frozen=True)
class Study:
    uid: str
    date: str
    time: str
    description: str
    accession: str
    study_id: str
    frame_of_reference: str

    def folder(self) -> str:
        return f"{self.date[4:6]}-{self.date[6:8]}-{self.date[:4]}-{safe_text(self.description)}-{digits(self.uid)}"


@dataclass(frozen=True)
class Series:
    uid: str
    number: int
    description: str
    modality: str
    date: str
    time: str

    def folder(self) -> str:
        return f"{self.number}.000000-{safe_text(self.description)}-{digits(self.uid)}"


def safe_text(text: str) -> str:
    """Folder-safe text the way NBIA exports mangle descriptions (keeps letters, digits, space, . _ - + ( ))."""
    return re.sub(r"[^A-Za-z0-9 ._+()-]", "", text).strip() or "NA"


def series_dir(dicom_dir: Path, study: Study, series: Series) -> Path:
    path = Path(dicom_dir) / study.folder() / series.folder()
    path.mkdir(parents=True, exist_ok=True)
    return path


def new_dataset(sop_class: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = IMPLEMENTATION_UID
    ds.file_meta.ImplementationVersionName = IMPLEMENTATION_VERSION
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    return ds


def set_instance(ds: Dataset, sop_uid: str) -> None:
    ds.SOPInstanceUID = sop_uid
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid


def add_patient_study(ds: Dataset, ident: Identity, study: Study, with_body: bool = True) -> None:
    """Patient, General Study and Patient Study modules."""
    ds.PatientName = ident.patient_name
    ds.PatientID = ident.patient_id
    ds.PatientBirthDate = ident.birth_date
    ds.PatientSex = ident.sex
    ds.StudyInstanceUID = study.uid
    ds.StudyDate = study.date
    ds.StudyTime = study.time
    ds.ReferringPhysicianName = ident.referring_physician
    ds.StudyID = study.study_id
    ds.AccessionNumber = study.accession
    ds.StudyDescription = study.description
    if with_body:
        ds.PatientAge = ident.age
        ds.PatientSize = f"{ident.size_m:.2f}"
        ds.PatientWeight = ds_text(ident.weight_kg, 1)


def add_series(ds: Dataset, ident: Identity, series: Series) -> None:
    ds.Modality = series.modality
    ds.SeriesInstanceUID = series.uid
    ds.SeriesNumber = series.number
    ds.SeriesDate = series.date
    ds.SeriesTime = series.time
    ds.SeriesDescription = series.description
    ds.OperatorsName = ident.operator


def add_equipment(ds: Dataset, ident: Identity, manufacturer: str, model: str, station: str) -> None:
    ds.Manufacturer = manufacturer
    ds.InstitutionName = ident.institution
    ds.StationName = station
    ds.ManufacturerModelName = model
    ds.DeviceSerialNumber = digits(station + ident.institution, 6)
    ds.SoftwareVersions = SOFTWARE


def add_frame_of_reference(ds: Dataset, study: Study) -> None:
    ds.FrameOfReferenceUID = study.frame_of_reference
    ds.PositionReferenceIndicator = ""


def add_pixel_format(ds: Dataset, rows: int, columns: int, signed: bool, bits_stored: int) -> None:
    """Image Pixel module attributes (16 bits allocated), without the pixel data."""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(rows), int(columns)
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0


def add_pixel_data(ds: Dataset, pixels, signed: bool) -> None:
    ds.add_new(0x7FE00010, "OW", pixels.astype("<i2" if signed else "<u2").tobytes())


def write(ds: Dataset, path: Path) -> None:
    ds.save_as(path, enforce_file_format=True)


class InstanceWriter:
    """Writes the instances of one series fast: the elements shared by all instances are encoded once.

    ``write(path, changes)`` produces exactly the bytes of ``dataset.save_as(path, enforce_file_format=True)``
    for the template updated with ``changes`` (explicit VR little endian; tested against pydicom).
    """

    def __init__(self, template: Dataset) -> None:
        correct_ambiguous_vr(template, True)
        self._meta = template.file_meta
        self._encodings = template.get("SpecificCharacterSet")
        self._fixed = {int(tag): self._encode(elem) for tag, elem in template.items()}

    def _encode(self, elem: DataElement) -> bytes:
        buf = DicomBytesIO()
        buf.is_little_endian, buf.is_implicit_VR = True, False
        write_data_element(buf, elem, self._encodings)
        return buf.getvalue()

    def write(self, path: Path, changes: Dataset) -> None:
        correct_ambiguous_vr(changes, True)
        encoded = dict(self._fixed)
        encoded.update({int(tag): self._encode(elem) for tag, elem in changes.items()})
        meta = FileMetaDataset(self._meta)
        meta.MediaStorageSOPInstanceUID = changes.SOPInstanceUID
        head = DicomBytesIO()
        head.is_little_endian, head.is_implicit_VR = True, False
        head.write(b"\x00" * 128 + b"DICM")
        write_file_meta_info(head, meta, enforce_standard=True)
        body = b"".join(encoded[tag] for tag in sorted(encoded) if not (tag & 0xFFFF == 0 and tag >> 16 > 6))
        Path(path).write_bytes(head.getvalue() + body)
