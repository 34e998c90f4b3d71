"""Series discovery: walk a patient's folder as a PACS or TCIA export left it, and group what is DICOM.

Any layout is accepted: nested folders, files without extensions, several studies, stray non-DICOM files,
DICOMDIR files, duplicate copies of the same instance, files without preamble or file meta. Instances are
grouped by SeriesInstanceUID (never by folder); localisers and secondary captures are set aside with a reason.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

log = logging.getLogger(__name__)

SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.2": ("CT", "CT Image Storage"),
    "1.2.840.10008.5.1.4.1.1.2.1": ("CT", "Enhanced CT Image Storage"),
    "1.2.840.10008.5.1.4.1.1.128": ("PT", "PET Image Storage"),
    "1.2.840.10008.5.1.4.1.1.130": ("PT", "Enhanced PET Image Storage"),
    "1.2.840.10008.5.1.4.1.1.4": ("MR", "MR Image Storage"),
    "1.2.840.10008.5.1.4.1.1.4.1": ("MR", "Enhanced MR Image Storage"),
    "1.2.840.10008.5.1.4.1.1.481.3": ("RTSTRUCT", "RT Structure Set Storage"),
}
SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"
DICOMDIR_SOP = "1.2.840.10008.1.3.10"


@dataclass
class Instance:
    path: Path
    header: pydicom.Dataset  # read without pixel data


@dataclass
class Series:
    uid: str
    modality: str
    sop_class: str
    instances: list[Instance]
    excluded: list[tuple[Instance, str]] = field(default_factory=list)  # instances set aside, with the reason

    @property
    def first(self) -> pydicom.Dataset:
        """The header of the first usable instance (of the first set-aside one if none is usable)."""
        return self.instances[0].header if self.instances else self.excluded[0][0].header

    @property
    def is_image(self) -> bool:
        return self.sop_class in SOP_CLASSES and SOP_CLASSES[self.sop_class][0] in {"CT", "PT", "MR"}

    @property
    def description(self) -> str:
        return str(self.first.get("SeriesDescription", "") or "").strip()

    @property
    def number(self) -> int | None:
        value = self.first.get("SeriesNumber")
        return int(value) if value not in (None, "") else None

    @property
    def frame_of_reference(self) -> str | None:
        value = self.first.get("FrameOfReferenceUID")
        return str(value) if value else None

    @property
    def study_uid(self) -> str | None:
        value = self.first.get("StudyInstanceUID")
        return str(value) if value else None

    def label(self) -> str:
        """How messages and import.json name the series: modality, number and description, no UIDs."""
        number = f" #{self.number}" if self.number is not None else ""
        return f"{self.modality}{number} '{self.description}' ({len(self.instances)} instance(s))"


@dataclass
class ScanResult:
    series: list[Series]
    skipped: list[tuple[str, str]]  # (path relative to the root, reason) of files that are not usable DICOM
    duplicates: int  # instances seen more than once (same SOPInstanceUID), extra copies dropped


def _read_header(path: Path) -> pydicom.Dataset | None:
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        # a file cut after its preamble and 'DICM' (or after the file meta) reads without error but holds nothing
        return ds if "SOPClassUID" in ds or "DirectoryRecordSequence" in ds else None
    except InvalidDicomError:
        pass  # no preamble or no file meta: try again leniently, and keep it only if it looks like DICOM
    except Exception:
        return None
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        if "SOPClassUID" in ds and ("SeriesInstanceUID" in ds or ds.get("SOPClassUID") == DICOMDIR_SOP):
            return ds
    except Exception:
        return None
    return None


def _is_localizer(ds: pydicom.Dataset) -> bool:
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
    return "LOCALIZER" in image_type or "SCOUT" in image_type


def scan_folder(root: Path) -> ScanResult:
    """Every DICOM series under root, grouped by SeriesInstanceUID, in a deterministic order."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(
            "the DICOM folder does not exist"
        )  # not named: folders are often named after the patient
    files = sorted(Path(dirpath) / name for dirpath, _, names in os.walk(root) for name in names)
    groups: dict[str, Series] = {}
    seen_sops: set[str] = set()
    skipped: list[tuple[str, str]] = []
    duplicates = 0
    for path in files:
        rel = str(path.relative_to(root))
        ds = _read_header(path)
        if ds is None:
            skipped.append((rel, "not a readable DICOM file"))
            continue
        sop_class = str(ds.get("SOPClassUID", ""))
        if sop_class == DICOMDIR_SOP or path.name.upper() == "DICOMDIR" or "DirectoryRecordSequence" in ds:
            skipped.append((rel, "DICOMDIR (an index, not an image)"))
            continue
        sop = str(ds.get("SOPInstanceUID", ""))
        if sop and sop in seen_sops:
            duplicates += 1
            continue
        seen_sops.add(sop)
        uid = str(ds.get("SeriesInstanceUID", ""))
        modality = str(ds.get("Modality", "")).upper()
        series = groups.get(uid)
        if series is None:
            series = groups[uid] = Series(uid=uid, modality=modality, sop_class=sop_class, instances=[])
        if sop_class.startswith(SECONDARY_CAPTURE_PREFIX):
            series.excluded.append(
                (Instance(path, ds), f"secondary capture (SOP class {sop_class}), not an acquired image")
            )
        elif modality in {"CT", "MR", "PT"} and _is_localizer(ds):
            series.excluded.append((Instance(path, ds), "localiser/scout image"))
        elif sop_class != series.sop_class and sop_class in SOP_CLASSES:
            series.excluded.append(
                (Instance(path, ds), f"SOP class {sop_class} differs from the series' {series.sop_class}")
            )
        else:
            series.instances.append(Instance(path, ds))
    if duplicates:
        log.info("%d duplicate instance(s) (same SOPInstanceUID) ignored", duplicates)
    ordered = sorted(
        (s for s in groups.values() if s.instances or s.excluded),
        key=lambda s: (s.modality, s.number if s.number is not None else 1 << 30, s.uid),
    )
    return ScanResult(series=ordered, skipped=skipped, duplicates=duplicates)
