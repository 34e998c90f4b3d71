"""Messy variants of a synthetic patient: the traps of real exports (reference/dicom.md section 7), one flag each.

    MESSY_VARIANTS: flag -> one line: what the flag does and what the importer is expected to do
    OUTCOMES: flag -> {"ct": ..., "pet": ..., "mri": ...} with "accept", "warn" (accept with a warning) or "refuse",
        the expected result of each importer entry point under the default ImportOptions (without a sheet weight)
    make_messy_patient(patient_id, seed, dicom_dir, truth_dir, variants, size="demo") -> dict

The clean patient is made by `generate_patient` (or copied from an earlier clean run of the same patient, seed and
size with `clean_from=`, which gives the same bytes), then every flag rewrites the DICOM files after the fact, so a
variant never changes the random draws of the clean patient. Each flag has its own random stream and UIDs derived
from (seed, patient, flag): the same inputs give the same bytes, and flags are independent. Flags are applied in a
fixed order whatever the order given: rebuilds, then content, then encodings, then layouts.

Every accepted variant keeps the truth: the labels of `truth/labels.nii.gz` (or `truth/messy_labels.nii.gz` when a
flag changes what the importer must return, e.g. no GTV-N, or a resampled grid) and the SUV of `truth/suv.nii.gz`,
within half a stored step (PET units, decay correction and vendor scale factors are rewritten consistently).
`truth/messy.json` records the flags, the expected outcomes and what each flag did (notes).

Not covered: JPEG lossless (process 14, SV1) and JPEG 2000, which pydicom cannot encode without extra packages
(pylibjpeg-libjpeg, pylibjpeg-openjpeg); `jpegls_ct` (JPEG-LS lossless, through pyjpegls) and `rle_ct` stand in.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from hnseg.errors import InputError
from hnseg.synthetic import dicom_writer as dw
from hnseg.synthetic.cohort import GENERATOR, generate_patient
from hnseg.synthetic.seeding import digits, rng, uid

__all__ = ["MESSY_VARIANTS", "OUTCOMES", "make_messy_patient"]

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4.1"
GE_CREATOR = "GEMS_PETD_01"
PHILIPS_CREATOR = "Philips PET Private Group"
LOCALIZER = ["ORIGINAL", "PRIMARY", "LOCALIZER"]


# ----------------------------------------------------------------------------------------------- the patient on disk


class _Patient:
    """The files of one generated patient, with helpers to find, read and rewrite them."""

    def __init__(self, patient_id: str, seed: int, size: str, dicom_dir: Path, truth_dir: Path) -> None:
        self.patient_id, self.seed, self.size = patient_id, seed, size
        self.dicom_dir, self.truth_dir = dicom_dir, truth_dir
        phi = json.loads((truth_dir / "phi.json").read_text(encoding="utf-8"))
        self.series_uid: dict[str, str] = phi["uids"]["series"]
        self.study_uid: dict[str, str] = phi["uids"]["studies"]
        self.weight_kg = float(phi["PatientWeight"])
        self.rois = json.loads((truth_dir / "rois.json").read_text(encoding="utf-8"))["rois"]
        labels = sitk.ReadImage(str(truth_dir / "labels.nii.gz"))
        self.labels = sitk.GetArrayFromImage(labels)
        self.labels_image = labels  # replaced when a flag changes the expected labels
        self.labels_changed = False
        self.extra_sops: set[str] = set()  # instances added inside a series of the clean patient (not its slices)
        self._index: list[tuple[Path, Dataset]] | None = None
        self._model = None

    # finding files
    def index(self) -> list[tuple[Path, Dataset]]:
        if self._index is None:
            out = []
            for path in sorted(p for p in self.dicom_dir.rglob("*") if p.is_file()):
                try:
                    header = pydicom.dcmread(path, stop_before_pixels=True, force=True)
                except Exception:
                    continue
                if "SOPInstanceUID" in header:
                    out.append((path, header))
            self._index = out
        return self._index

    def changed(self) -> None:
        self._index = None

    def files(self, key: str) -> list[Path]:
        """The files of a clean series (CT, PT, T1, T2, RTSTRUCT), sorted along the slice normal (inferior first)."""
        target = self.series_uid[key]
        found = [
            (path, header)
            for path, header in self.index()
            if str(header.get("SeriesInstanceUID", "")) == target and str(header.SOPInstanceUID) not in self.extra_sops
        ]
        return [path for path, _ in sorted(found, key=lambda item: _along_normal(item[1]))]

    def roi_numbers(self, role: str) -> list[int]:
        return [int(r["number"]) for r in self.rois if r["role"] == role]

    # randomness and identifiers
    def rng(self, flag: str) -> np.random.Generator:
        return rng(self.seed, self.patient_id, f"messy:{flag}")

    def uid(self, flag: str, *keys: object) -> str:
        return str(uid(self.seed, self.patient_id, "messy", flag, *keys))

    @property
    def model(self):
        if self._model is None:
            from hnseg.synthetic.model import build_model

            self._model = build_model(self.patient_id, self.seed, self.size)
        return self._model

    def set_labels(self, array: np.ndarray, image: sitk.Image | None = None) -> None:
        reference = self.labels_image if image is None else image
        out = sitk.GetImageFromArray(array.astype(np.uint8))
        out.CopyInformation(reference)
        self.labels, self.labels_image, self.labels_changed = array.astype(np.uint8), out, True


def _along_normal(header: Dataset) -> float:
    iop = header.get("ImageOrientationPatient")
    ipp = header.get("ImagePositionPatient")
    if iop is None or ipp is None:
        return 0.0
    v = np.asarray([float(x) for x in iop])
    return float(np.dot(np.cross(v[:3], v[3:]), [float(x) for x in ipp]))


def _read(path: Path) -> Dataset:
    return pydicom.dcmread(path, force=True)


def _save(ds: Dataset, path: Path) -> None:
    """Write a dataset as a DICOM file with its file meta in step with the dataset."""
    if not hasattr(ds, "file_meta") or ds.file_meta is None:
        ds.file_meta = FileMetaDataset()
    meta = ds.file_meta
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if "TransferSyntaxUID" not in meta:
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = dw.IMPLEMENTATION_UID
    meta.ImplementationVersionName = dw.IMPLEMENTATION_VERSION
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def _new_series_dir(like: Path, number: int, description: str, series_uid: str) -> Path:
    """A PACS-style series folder next to the folder of `like` (same study folder)."""
    return like.parent.parent / f"{number}.000000-{dw.safe_text(description)}-{digits(series_uid)}"


def _num(value: float) -> str:
    """A DS text with 10 significant digits (at most 16 characters)."""
    text = f"{value:.10g}"
    return "0" if text == "-0" else text


def _seconds(tm: str) -> float:
    tm = str(tm).strip()
    return int(tm[:2]) * 3600 + int(tm[2:4]) * 60 + float(tm[4:] or 0)


def _tm(seconds: float) -> str:
    s = round(seconds) % 86400
    return f"{s // 3600:02d}{s % 3600 // 60:02d}{s % 60:02d}"


def _shift_date(da: str, days: int) -> str:
    import datetime as dt

    day = dt.date(int(da[:4]), int(da[4:6]), int(da[6:8])) + dt.timedelta(days=days)
    return day.strftime("%Y%m%d")


def _hu_volume(p: _Patient) -> tuple[np.ndarray, list[Path]]:
    files = p.files("CT")
    slices = []
    for f in files:
        ds = _read(f)
        slices.append(ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept))
    return np.stack(slices), files


def _set_pixels(ds: Dataset, pixels: np.ndarray, signed: bool) -> None:
    ds.Rows, ds.Columns = int(pixels.shape[0]), int(pixels.shape[1])
    ds.PixelData = np.ascontiguousarray(pixels).astype("<i2" if signed else "<u2").tobytes()
    ds["PixelData"].VR = "OW"


# ----------------------------------------------------------------------------------------------- 1. scouts


def _ct_localizer(p: _Patient, hu: np.ndarray, template: Path, view: str) -> Dataset:
    """A projection radiograph-like image (mean HU through the CT) in a coronal (AP) or sagittal (LAT) plane."""
    ds = _read(template)
    ipp = [float(v) for v in ds.ImagePositionPatient]
    dy, dx = (float(v) for v in ds.PixelSpacing)
    files = p.files("CT")
    z = [float(_read_header(f).ImagePositionPatient[2]) for f in (files[0], files[-1])]
    dz = (z[1] - z[0]) / (len(files) - 1)
    if view == "AP":
        image = hu.mean(axis=1)[::-1]  # (z, x), top row = most superior
        iop, spacing = ["1", "0", "0", "0", "0", "-1"], [_num(dz), _num(dx)]
        position = [ipp[0], ipp[1] + dy * (hu.shape[1] - 1) / 2, z[1]]
    else:
        image = hu.mean(axis=2)[::-1]  # (z, y)
        iop, spacing = ["0", "1", "0", "0", "0", "-1"], [_num(dz), _num(dy)]
        position = [ipp[0] + dx * (hu.shape[2] - 1) / 2, ipp[1], z[1]]
    ds.ImageType = LOCALIZER
    ds.ImageOrientationPatient = iop
    ds.ImagePositionPatient = [_num(v) for v in position]
    ds.PixelSpacing = spacing
    for keyword in ("SliceLocation", "WindowCenter", "WindowWidth"):
        if keyword in ds:
            delattr(ds, keyword)
    _set_pixels(ds, np.clip(np.rint(image) + 1024, 0, 4095), signed=True)
    return ds


def _read_header(path: Path) -> Dataset:
    return pydicom.dcmread(path, stop_before_pixels=True, force=True)


def _scout_series(p: _Patient, flag: str) -> dict:
    hu, files = _hu_volume(p)
    series_uid = p.uid(flag, "series")
    folder = _new_series_dir(files[0], 1, "Topogram 0.6 T20f", series_uid)
    for i, view in enumerate(("AP", "LAT")):
        ds = _ct_localizer(p, hu, files[0], view)
        ds.SeriesInstanceUID, ds.SeriesNumber, ds.SeriesDescription = series_uid, 1, "Topogram 0.6 T20f"
        ds.SOPInstanceUID = p.uid(flag, "sop", i)
        ds.InstanceNumber = i + 1
        _save(ds, folder / f"1-{i + 1:03d}.dcm")
    return {"series": "CT #1 'Topogram 0.6 T20f'", "images": ["AP (coronal)", "LAT (sagittal)"]}


def _scout_in_ct_series(p: _Patient, flag: str, image_type: list[str] | None = None) -> dict:
    hu, files = _hu_volume(p)
    ds = _ct_localizer(p, hu, files[0], "AP")
    ds.SOPInstanceUID = p.uid(flag, "sop")
    ds.InstanceNumber = len(files) + 1
    if image_type is not None:
        ds.ImageType = image_type
    p.extra_sops.add(ds.SOPInstanceUID)
    _save(ds, files[0].parent / f"1-{len(files) + 1:03d}.dcm")
    return {"instance_number": len(files) + 1, "image_type": list(ds.ImageType), "orientation": "coronal"}


def _stray_plane_in_ct_series(p: _Patient, flag: str) -> dict:
    return _scout_in_ct_series(p, flag, image_type=["ORIGINAL", "PRIMARY", "AXIAL"])


def _mr_scouts(p: _Patient, flag: str) -> dict:
    files = p.files("T1")
    datasets = [_read(f) for f in files]
    volume = np.stack([d.pixel_array for d in datasets])  # (z, y, x), inferior first
    first = datasets[0]
    ipp = [float(v) for v in first.ImagePositionPatient]
    dy, dx = (float(v) for v in first.PixelSpacing)
    z_top = float(datasets[-1].ImagePositionPatient[2])
    dz = (z_top - ipp[2]) / (len(files) - 1)
    nz, ny, nx = volume.shape
    planes = {
        "axial": (volume[nz // 2], ["1", "0", "0", "0", "1", "0"], [dy, dx], [ipp[0], ipp[1], ipp[2] + dz * (nz // 2)]),
        "sagittal": (
            volume[::-1, :, nx // 2],
            ["0", "1", "0", "0", "0", "-1"],
            [dz, dy],
            [ipp[0] + dx * (nx // 2), ipp[1], z_top],
        ),
        "coronal": (
            volume[::-1, ny // 2, :],
            ["1", "0", "0", "0", "0", "-1"],
            [dz, dx],
            [ipp[0], ipp[1] + dy * (ny // 2), z_top],
        ),
    }
    series_uid = p.uid(flag, "series")
    folder = _new_series_dir(files[0], 1, "localizer", series_uid)
    for i, (image, iop, spacing, position) in enumerate(planes.values()):
        ds = copy.deepcopy(first)
        ds.SeriesInstanceUID, ds.SeriesNumber, ds.SeriesDescription = series_uid, 1, "localizer"
        ds.SOPInstanceUID = p.uid(flag, "sop", i)
        ds.InstanceNumber = i + 1
        ds.ImageType = LOCALIZER
        ds.ImageOrientationPatient = iop
        ds.ImagePositionPatient = [_num(v) for v in position]
        ds.PixelSpacing = [_num(v) for v in spacing]
        ds.SliceLocation = _num(position[2])
        _set_pixels(ds, image, signed=False)
        _save(ds, folder / f"1-{i + 1:03d}.dcm")
    return {"series": "MR #1 'localizer'", "images": list(planes)}


# ----------------------------------------------------------------------------------------------- 2. layout


def _all_files(p: _Patient) -> list[Path]:
    return sorted(f for f in p.dicom_dir.rglob("*") if f.is_file())


def _remove_empty_dirs(root: Path) -> None:
    for d in sorted((q for q in root.rglob("*") if q.is_dir()), key=lambda q: len(q.parts), reverse=True):
        if not any(d.iterdir()):
            d.rmdir()


def _random_names(r: np.random.Generator, n: int, length: int = 16) -> list[str]:
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < n:
        name = "".join(f"{int(v):02X}" for v in r.integers(0, 256, length // 2))
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


def _shuffled_names(p: _Patient, flag: str) -> dict:
    files = _all_files(p)
    names = _random_names(p.rng(flag), len(files))
    for f, name in zip(files, names, strict=True):
        f.rename(f.parent / name)
    return {"files": len(files)}


def _flat_folder(p: _Patient, flag: str) -> dict:
    files = _all_files(p)
    names = _random_names(p.rng(flag), len(files), 8)
    staging = p.dicom_dir / ".flat"
    staging.mkdir()
    for f, name in zip(files, names, strict=True):
        f.rename(staging / name)
    _remove_empty_dirs(p.dicom_dir)
    for f in sorted(staging.iterdir()):
        f.rename(p.dicom_dir / f.name)
    staging.rmdir()
    return {"files": len(files), "folder": "the patient folder itself"}


def _nested_folders(p: _Patient, flag: str) -> dict:
    r = p.rng(flag)
    files = _all_files(p)
    root = p.dicom_dir / "EXPORT" / "DICOM" / "2024" / f"P{int(r.integers(0, 10**6)):06d}"
    staging = p.dicom_dir / ".nested"
    staging.mkdir()
    moved = []
    for i, f in enumerate(files):
        target = staging / f"{i:05d}"
        f.rename(target)
        moved.append((target, f.relative_to(p.dicom_dir)))
    _remove_empty_dirs(p.dicom_dir)
    depth = 0
    for i, (source, original) in enumerate(moved):
        study, series = (*original.parts, "", "")[:2]
        folder = root / f"ST{digits(study, 4)}" / f"SE{digits(series, 4)}" / "IMG" / f"{i // 10:03d}" / f"{i % 10:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        source.rename(folder / f"I{i:05d}")
        depth = max(depth, len((folder / "x").relative_to(p.dicom_dir).parts))
    staging.rmdir()
    return {"files": len(files), "depth": depth}


STRAY_FILES = {
    "README.TXT": b"Exported by PACS viewer 7.2\r\nThis CD contains DICOM images.\r\n",
    "Thumbs.db": bytes.fromhex("D0CF11E0A1B11AE1") + bytes(range(256)) * 4,
    ".DS_Store": b"\x00\x00\x00\x01Bud1" + b"\x00" * 120,
    "export.log": b"2024-01-01 12:00:00 export started\n2024-01-01 12:00:09 export finished\n",
    "EMPTY": b"",
    "report.pdf": b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n",
    "IM_TRUNCATED": b"\x00" * 128 + b"DICM" + b"\x02\x00\x00\x00UL\x04\x00",
}


def _stray_files(p: _Patient, flag: str) -> dict:
    folders = sorted({f.parent for f in _all_files(p)})
    r = p.rng(flag)
    placed = []
    for i, (name, data) in enumerate(STRAY_FILES.items()):
        folder = p.dicom_dir if i % 2 == 0 else folders[int(r.integers(0, len(folders)))]
        (folder / name).write_bytes(data)
        placed.append(str((folder / name).relative_to(p.dicom_dir)))
    return {"files": placed, "count": len(placed)}


def _dicomdir(p: _Patient, flag: str) -> dict:
    from pydicom.fileset import FileSet

    files = [path for path, _ in p.index()]
    fs = FileSet()
    fs.UID = p.uid(flag, "fileset")
    fs.ID = "HNSEG"
    for f in files:
        fs.add(f)
    staging = p.dicom_dir.parent / f".{p.dicom_dir.name}.fileset"
    if staging.exists():
        shutil.rmtree(staging)
    fs.write(staging)
    for f in _all_files(p):
        f.unlink()
    _remove_empty_dirs(p.dicom_dir)
    for item in sorted(staging.iterdir()):
        item.rename(p.dicom_dir / item.name)
    staging.rmdir()
    return {"instances": len(files), "layout": "DICOMDIR and PT000000/ST000000/SE000000/IM000000 as written by FileSet"}


def _duplicates(p: _Patient, flag: str) -> dict:
    picks = {"CT": [3, 10, 20], "PT": [0, 5], "RTSTRUCT": [0], "T1": [7]}
    folder = p.dicom_dir / "copies"
    folder.mkdir(exist_ok=True)
    count = 0
    for key, ks in picks.items():
        files = p.files(key)
        for k in ks:
            if k < len(files):
                shutil.copyfile(files[k], folder / f"copy_{key}_{k:03d}")
                count += 1
    return {"copies": count}


def _no_meta(p: _Patient, flag: str) -> dict:
    written = []
    for key, k in (("CT", 7), ("PT", 3), ("T1", 2), ("RTSTRUCT", 0)):
        files = p.files(key)
        if k >= len(files):
            continue
        ds = _read(files[k])
        if ds.file_meta.TransferSyntaxUID.is_compressed or "PerFrameFunctionalGroupsSequence" in ds:
            continue
        ds.preamble = None
        del ds.file_meta
        ds.save_as(files[k], implicit_vr=True, little_endian=True, enforce_file_format=False)
        written.append(f"{key} file {files[k].name}")
    return {"files": written, "encoding": "no preamble, no file meta, implicit VR little endian"}


# ----------------------------------------------------------------------------------------------- 3. RTSTRUCTs


def _contours_of(ds: Dataset, numbers: list[int]) -> list[Dataset]:
    return [item for item in ds.ROIContourSequence if int(item.ReferencedROINumber) in numbers]


def _translate_contours(items: list[Dataset], offset: tuple[float, float, float]) -> None:
    for item in items:
        for contour in item.get("ContourSequence") or []:
            points = np.asarray([float(v) for v in contour.ContourData]).reshape(-1, 3) + np.asarray(offset)
            contour.ContourData = [f"{v:.3f}" for v in points.ravel()]


def _copy_rtstruct(p: _Patient, flag: str, number: int, description: str, days: int) -> tuple[Dataset, Path]:
    source = p.files("RTSTRUCT")[0]
    ds = _read(source)
    ds.SOPInstanceUID = p.uid(flag, "sop")
    ds.SeriesInstanceUID = p.uid(flag, "series")
    ds.SeriesNumber, ds.SeriesDescription = number, description
    for keyword in ("StructureSetDate", "InstanceCreationDate", "SeriesDate"):
        if keyword in ds:
            setattr(ds, keyword, _shift_date(str(getattr(ds, keyword)), days))
    return ds, _new_series_dir(source, number, description, ds.SeriesInstanceUID) / "1-1.dcm"


def _rtstruct_older(p: _Patient, flag: str) -> dict:
    ds, path = _copy_rtstruct(p, flag, 7, "RTstruct old", -30)
    ds.StructureSetLabel = "RTstruct v1"
    _translate_contours(_contours_of(ds, p.roi_numbers("gtv_t") + p.roi_numbers("gtv_n")), (6.0, 0.0, 0.0))
    _save(ds, path)
    return {"structure_set_date": str(ds.StructureSetDate), "series_number": 7, "gtv_shift_mm": [6.0, 0.0, 0.0]}


def _rtstruct_on_pet(p: _Patient, flag: str) -> dict:
    ds, path = _copy_rtstruct(p, flag, 8, "RTstruct_CTsim->PET", 1)
    pet = [_read_header(f) for f in p.files("PT")]
    pet_z = np.array([float(h.ImagePositionPatient[2]) for h in pet])
    for ref_for in ds.ReferencedFrameOfReferenceSequence:
        for study in ref_for.RTReferencedStudySequence:
            for series in study.RTReferencedSeriesSequence:
                series.SeriesInstanceUID = p.series_uid["PT"]
                series.ContourImageSequence = Sequence([_image_ref(dw.PET_IMAGE, str(h.SOPInstanceUID)) for h in pet])
    for item in ds.ROIContourSequence:
        for contour in item.get("ContourSequence") or []:
            z = float(contour.ContourData[2])
            nearest = pet[int(np.argmin(np.abs(pet_z - z)))]
            contour.ContourImageSequence = Sequence([_image_ref(dw.PET_IMAGE, str(nearest.SOPInstanceUID))])
    _translate_contours(_contours_of(ds, p.roi_numbers("gtv_t")), (0.0, 4.0, 0.0))
    _save(ds, path)
    return {"structure_set_date": str(ds.StructureSetDate), "references": "the PET series", "gtv_t_shift_mm": [0, 4, 0]}


def _image_ref(sop_class: str, sop_uid: str) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = sop_class
    item.ReferencedSOPInstanceUID = sop_uid
    return item


def _rtstruct_empty_and_point_roi(p: _Patient, flag: str) -> dict:
    path = p.files("RTSTRUCT")[0]
    ds = _read(path)
    numbers = [int(item.ROINumber) for item in ds.StructureSetROISequence]
    for_uid = str(ds.StructureSetROISequence[0].ReferencedFrameOfReferenceUID)
    gtv = _contours_of(ds, p.roi_numbers("gtv_t"))[0].ContourSequence
    middle = gtv[len(gtv) // 2]
    centre = np.asarray([float(v) for v in middle.ContourData]).reshape(-1, 3).mean(axis=0)
    centre[2] = float(middle.ContourData[2])
    added = {}
    for offset, (name, kind) in enumerate((("Larynx", "ORGAN"), ("Isocenter 1", "ISOCENTER")), start=1):
        number = max(numbers) + offset
        roi = Dataset()
        roi.ROINumber, roi.ReferencedFrameOfReferenceUID, roi.ROIName = number, for_uid, name
        roi.ROIGenerationAlgorithm = "MANUAL"
        ds.StructureSetROISequence.append(roi)
        obs = Dataset()
        obs.ObservationNumber, obs.ReferencedROINumber = number, number
        obs.RTROIInterpretedType, obs.ROIInterpreter = kind, ""
        ds.RTROIObservationsSequence.append(obs)
        item = Dataset()
        item.ROIDisplayColor = [255, 255, 255]
        item.ReferencedROINumber = number
        if kind == "ISOCENTER":
            point = Dataset()
            point.ContourGeometricType = "POINT"
            point.NumberOfContourPoints = 1
            point.ContourNumber = 1
            point.ContourData = [f"{v:.3f}" for v in centre]
            item.ContourSequence = Sequence([point])
        ds.ROIContourSequence.append(item)  # the empty ROI has no ContourSequence at all (as dicompyler's Areola)
        added[name] = "POINT contour" if kind == "ISOCENTER" else "no ContourSequence"
    _save(ds, path)
    return {"added_rois": added}


def _rtstruct_no_contour_image_seq(p: _Patient, flag: str) -> dict:
    path = p.files("RTSTRUCT")[0]
    ds = _read(path)
    removed = 0
    for item in ds.ROIContourSequence:
        for contour in item.get("ContourSequence") or []:
            if "ContourImageSequence" in contour:
                del contour.ContourImageSequence
                removed += 1
    for ref_for in ds.ReferencedFrameOfReferenceSequence:
        for study in ref_for.RTReferencedStudySequence:
            for series in study.RTReferencedSeriesSequence:
                if "ContourImageSequence" in series:
                    del series.ContourImageSequence
    _save(ds, path)
    return {"contours_without_image_reference": removed}


def _rtstruct_no_top_level_for(p: _Patient, flag: str) -> dict:
    path = p.files("RTSTRUCT")[0]
    ds = _read(path)
    for keyword in ("FrameOfReferenceUID", "PositionReferenceIndicator"):
        if keyword in ds:
            delattr(ds, keyword)
    _save(ds, path)
    return {"removed": ["FrameOfReferenceUID", "PositionReferenceIndicator"]}


# ----------------------------------------------------------------------------------------------- 4. PET traps


@dataclass
class _PetNumbers:
    dose_bq: float
    half_life_s: float
    weight_kg: float
    injection_s: float
    scan_s: float

    @property
    def uptake_s(self) -> float:
        return self.scan_s - self.injection_s

    @property
    def to_suv(self) -> float:
        """SUVbw per Bq/ml, as the importer computes it from the clean headers."""
        return self.weight_kg * 1000.0 / (self.dose_bq * 2.0 ** (-self.uptake_s / self.half_life_s))


def _pet_numbers(ds: Dataset) -> _PetNumbers:
    radio = ds.RadiopharmaceuticalInformationSequence[0]
    return _PetNumbers(
        dose_bq=float(radio.RadionuclideTotalDose),
        half_life_s=float(radio.RadionuclideHalfLife),
        weight_kg=float(ds.PatientWeight),
        injection_s=_seconds(radio.RadiopharmaceuticalStartTime),
        scan_s=_seconds(ds.SeriesTime),
    )


def _rewrite_pet(p: _Patient, edit: Callable[[Dataset, int], None]) -> _PetNumbers:
    files = p.files("PT")
    numbers = _pet_numbers(_read_header(files[0]))
    for k, f in enumerate(files):
        ds = _read(f)
        edit(ds, k)
        _save(ds, f)
    return numbers


def _pet_weight_missing(p: _Patient, flag: str) -> dict:
    _rewrite_pet(p, lambda ds, k: delattr(ds, "PatientWeight"))
    return {"sheet_weight_kg": p.weight_kg}


def _pet_weight_zero(p: _Patient, flag: str) -> dict:
    def edit(ds: Dataset, k: int) -> None:
        ds.PatientWeight = "0"

    _rewrite_pet(p, edit)
    return {"sheet_weight_kg": p.weight_kg}


def _pet_dose_mbq(p: _Patient, flag: str) -> dict:
    def edit(ds: Dataset, k: int) -> None:
        radio = ds.RadiopharmaceuticalInformationSequence[0]
        radio.RadionuclideTotalDose = _num(float(radio.RadionuclideTotalDose) / 1e6)

    n = _rewrite_pet(p, edit)
    return {"dose_mbq": n.dose_bq / 1e6}


def _pet_midnight(p: _Patient, flag: str) -> dict:
    header = _read_header(p.files("PT")[0])
    n = _pet_numbers(header)
    new_injection = 23 * 3600 + int(p.rng(flag).integers(5 * 60, 50 * 60))
    shift = new_injection - n.injection_s  # the uptake (and so the SUV) is kept exactly

    def moved(date: str, time: str) -> tuple[str, str]:
        total = _seconds(time) + shift
        return _shift_date(date, int(total // 86400)), _tm(total % 86400)

    def edit(ds: Dataset, k: int) -> None:
        for prefix in ("Series", "Acquisition", "Content"):
            if f"{prefix}Time" in ds:
                date = str(ds.get(f"{prefix}Date") or ds.SeriesDate)
                new_date, new_time = moved(date, str(getattr(ds, f"{prefix}Time")))
                setattr(ds, f"{prefix}Date", new_date)
                setattr(ds, f"{prefix}Time", new_time)
        radio = ds.RadiopharmaceuticalInformationSequence[0]
        radio.RadiopharmaceuticalStartTime = _tm(new_injection)
        if "RadiopharmaceuticalStartDateTime" in radio:
            del radio.RadiopharmaceuticalStartDateTime

    _rewrite_pet(p, edit)
    return {"injection_time": _tm(new_injection), "scan_time": _tm(new_injection + n.uptake_s), "uptake_s": n.uptake_s}


def _post_processed(p: _Patient, flag: str, ge: bool) -> dict:
    header = _read_header(p.files("PT")[0])
    n = _pet_numbers(header)
    late = int(p.rng(flag).integers(20 * 60, 50 * 60))
    bed_delay = 180 if ge else 0  # GE: the head-and-neck bed was the second one, AcquisitionTime after the start
    start_date = str(header.SeriesDate)

    def edit(ds: Dataset, k: int) -> None:
        ds.SeriesTime = _tm(n.scan_s + late)
        ds.AcquisitionTime = _tm(_seconds(ds.AcquisitionTime) + bed_delay)
        if ge:
            block = ds.private_block(0x0009, GE_CREATOR, create=True)
            block.add_new(0x0D, "DT", start_date + _tm(n.scan_s) + ".00")

    _rewrite_pet(p, edit)
    notes = {"series_time": _tm(n.scan_s + late), "true_scan_start": _tm(n.scan_s)}
    if ge:
        notes["acquisition_time"] = _tm(n.scan_s + bed_delay)
        notes["ge_scan_datetime"] = start_date + _tm(n.scan_s)
    return notes


def _pet_post_processed_ge(p: _Patient, flag: str) -> dict:
    return _post_processed(p, flag, ge=True)


def _pet_post_processed(p: _Patient, flag: str) -> dict:
    return _post_processed(p, flag, ge=False)


def _philips(p: _Patient, flag: str, with_suv_factor: bool) -> dict:
    n = _pet_numbers(_read_header(p.files("PT")[0]))
    activity_scale = float(f"{float(p.rng(flag).uniform(0.3, 4.0)):.6g}")  # Bq/ml per count
    suv_factor = _num(activity_scale * n.to_suv)

    def edit(ds: Dataset, k: int) -> None:
        ds.Units = "CNTS"
        ds.Manufacturer, ds.ManufacturerModelName = "Philips Medical Systems", "GEMINI TF Big Bore"
        ds.RescaleSlope = _num(float(ds.RescaleSlope) / activity_scale)
        block = ds.private_block(0x7053, PHILIPS_CREATOR, create=True)
        if with_suv_factor:
            block.add_new(0x00, "DS", suv_factor)
        block.add_new(0x09, "DS", _num(activity_scale))

    _rewrite_pet(p, edit)
    notes = {"units": "CNTS", "activity_concentration_scale_7053_1009": activity_scale}
    if with_suv_factor:
        notes["suv_scale_factor_7053_1000"] = float(suv_factor)
    return notes


def _pet_philips_cnts_suv(p: _Patient, flag: str) -> dict:
    return _philips(p, flag, with_suv_factor=True)


def _pet_philips_cnts_activity(p: _Patient, flag: str) -> dict:
    return _philips(p, flag, with_suv_factor=False)


def _pet_units_gml(p: _Patient, flag: str) -> dict:
    n = _pet_numbers(_read_header(p.files("PT")[0]))

    def edit(ds: Dataset, k: int) -> None:
        ds.Units = "GML"
        ds.RescaleSlope = _num(float(ds.RescaleSlope) * n.to_suv)

    _rewrite_pet(p, edit)
    return {"units": "GML", "slopes": "multiplied by the SUVbw factor, so rescaled values are SUVbw"}


def _pet_decay_admin(p: _Patient, flag: str) -> dict:
    n = _pet_numbers(_read_header(p.files("PT")[0]))
    to_admin = 2.0 ** (n.uptake_s / n.half_life_s)

    def edit(ds: Dataset, k: int) -> None:
        ds.DecayCorrection = "ADMIN"
        ds.RescaleSlope = _num(float(ds.RescaleSlope) * to_admin)

    _rewrite_pet(p, edit)
    return {"decay_correction": "ADMIN", "slope_factor": to_admin}


def _pet_nac_series(p: _Patient, flag: str) -> dict:
    files = p.files("PT")
    series_uid = p.uid(flag, "series")
    folder = _new_series_dir(files[0], 4, "PET NAC", series_uid)
    for k, f in enumerate(files):
        ds = _read(f)
        ds.SeriesInstanceUID, ds.SeriesNumber, ds.SeriesDescription = series_uid, 4, "PET NAC"
        ds.SOPInstanceUID = p.uid(flag, "sop", k)
        ds.CorrectedImage = ["DECY", "RAN", "NORM", "DTIM"]
        ds.AttenuationCorrectionMethod = "NONE"
        ds.RescaleSlope = _num(float(ds.RescaleSlope) * 0.35)
        _save(ds, folder / f.name)
    return {"series": "PT #4 'PET NAC'", "instances": len(files)}


def _pet_first_slope_one(p: _Patient, flag: str) -> dict:
    files = p.files("PT")
    n = _pet_numbers(_read_header(files[0]))
    suv = sitk.GetArrayFromImage(sitk.ReadImage(str(p.truth_dir / "suv.nii.gz")))
    to_bqml = 1.0 / n.to_suv
    for k, f in enumerate(files):  # the first slice along z whose activity fits int16 with slope 1
        activity = suv[k].astype(np.float64) * to_bqml
        if activity.max() < 32766:
            ds = _read(f)
            ds.RescaleSlope = "1"
            _set_pixels(ds, np.rint(activity), signed=True)
            _save(ds, f)
            return {"slice_index": k, "instance_number": int(ds.InstanceNumber), "max_bqml": float(activity.max())}
    raise InputError(f"{p.patient_id}: no PET slice fits int16 with a rescale slope of 1")  # pragma: no cover


# ----------------------------------------------------------------------------------------------- 5. ROI names

GTV_T_VARIANTS = ("GTV", "GTVp", "GTV-1", "GTV_T", "GTVt", "GTV primaire", "GTV_70Gy", "gtv pet", "GTVp_KW", "GTVt(2)")
GTV_N_VARIANTS = ("GTVn", "GTV_N", "GTV GG", "GTV ggs", "NODAL GTV", "GTVnd", "GTVn(2)", "GTV_nd_70gy")
GTV_N_PER_NODE = ("GTVn{k}", "GTV_N{k}", "GANGLION{k}", "GTVn0{k}", "GTV-N{k}", "GTV_N_{k}")


def _rename_rois(ds: Dataset, names: dict[int, str]) -> None:
    for item in ds.StructureSetROISequence:
        if int(item.ROINumber) in names:
            item.ROIName = names[int(item.ROINumber)]


def _roi_name_variants(p: _Patient, flag: str) -> dict:
    r = p.rng(flag)
    path = p.files("RTSTRUCT")[0]
    ds = _read(path)
    current = {int(item.ROINumber): str(item.ROIName) for item in ds.StructureSetROISequence}
    names: dict[int, str] = {}
    for number in p.roi_numbers("gtv_t"):
        names[number] = str(r.choice([n for n in GTV_T_VARIANTS if n != current[number]]))
    nodes = p.roi_numbers("gtv_n")
    if len(nodes) == 1:
        names[nodes[0]] = str(r.choice([n for n in GTV_N_VARIANTS if n != current[nodes[0]]]))
    elif nodes:
        pattern = str(r.choice(GTV_N_PER_NODE))
        names.update({number: pattern.format(k=k) for k, number in enumerate(nodes, start=1)})
        if all(names[number] == current[number] for number in nodes):
            names.update({number: f"GTVnd{k}" for k, number in enumerate(nodes, start=1)})
    _rename_rois(ds, names)
    _save(ds, path)
    return {"renamed": {current[k]: v for k, v in names.items()}, "gtv_t": [names[n] for n in p.roi_numbers("gtv_t")]}


def _add_roi(ds: Dataset, name: str, kind: str, contour_items: list[Dataset], offset=(0.0, 0.0, 0.0)) -> int:
    number = max(int(item.ROINumber) for item in ds.StructureSetROISequence) + 1
    for_uid = str(ds.StructureSetROISequence[0].ReferencedFrameOfReferenceUID)
    roi = Dataset()
    roi.ROINumber, roi.ReferencedFrameOfReferenceUID, roi.ROIName = number, for_uid, name
    roi.ROIGenerationAlgorithm = "MANUAL"
    ds.StructureSetROISequence.append(roi)
    obs = Dataset()
    obs.ObservationNumber, obs.ReferencedROINumber = number, number
    obs.RTROIInterpretedType, obs.ROIInterpreter = kind, ""
    ds.RTROIObservationsSequence.append(obs)
    item = Dataset()
    item.ROIDisplayColor = [200, 200, 200]
    contours = [copy.deepcopy(c) for source in contour_items for c in source.get("ContourSequence") or []]
    for i, c in enumerate(contours, start=1):
        c.ContourNumber = i
    item.ContourSequence = Sequence(contours)
    item.ReferencedROINumber = number
    if any(offset):
        _translate_contours([item], offset)
    ds.ROIContourSequence.append(item)
    return number


def _roi_traps(p: _Patient, flag: str) -> dict:
    path = p.files("RTSTRUCT")[0]
    ds = _read(path)
    t = _contours_of(ds, p.roi_numbers("gtv_t"))
    n = _contours_of(ds, p.roi_numbers("gtv_n"))
    ctv = _contours_of(ds, p.roi_numbers("expansion"))
    ring = _contours_of(ds, p.roi_numbers("ring"))
    traps = {
        "PTV_GTV": ("PTV", ctv, (0.0, 0.0, 0.0)),
        "zGTV_old": ("GTV", t, (5.0, 0.0, 0.0)),
        "ring_GTV": ("CONTROL", ring, (0.0, 0.0, 0.0)),
        "GTV T et N": ("GTV", t + n, (0.0, 0.0, 0.0)),
        "GTV T irm": ("GTV", t, (0.0, -3.0, 0.0)),
        "GTV-T_old": ("GTV", t, (-4.0, 0.0, 0.0)),
    }
    for name, (kind, items, offset) in traps.items():
        _add_roi(ds, name, kind, items, offset)
    _save(ds, path)
    return {"added_rois": ["CTV_GTVp+5mm (already in the clean patient)", *traps]}


def _remove_rois(p: _Patient, numbers: list[int]) -> list[str]:
    path = p.files("RTSTRUCT")[0]
    ds = _read(path)
    removed = [str(item.ROIName) for item in ds.StructureSetROISequence if int(item.ROINumber) in numbers]
    ds.StructureSetROISequence = Sequence([i for i in ds.StructureSetROISequence if int(i.ROINumber) not in numbers])
    ds.ROIContourSequence = Sequence([i for i in ds.ROIContourSequence if int(i.ReferencedROINumber) not in numbers])
    ds.RTROIObservationsSequence = Sequence(
        [i for i in ds.RTROIObservationsSequence if int(i.ReferencedROINumber) not in numbers]
    )
    _save(ds, path)
    return removed


def _no_gtv_n(p: _Patient, flag: str) -> dict:
    removed = _remove_rois(p, p.roi_numbers("gtv_n"))
    labels = p.labels.copy()
    labels[labels == 2] = 0
    p.set_labels(labels)
    return {"removed_rois": removed, "expected_labels": "the truth without label 2"}


def _no_gtv_t(p: _Patient, flag: str) -> dict:
    return {"removed_rois": _remove_rois(p, p.roi_numbers("gtv_t"))}


# ----------------------------------------------------------------------------------------------- 6. MR


def _rotation(axis: np.ndarray, degrees: float) -> np.ndarray:
    axis = axis / np.linalg.norm(axis)
    a = math.radians(degrees)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(a) * k + (1 - math.cos(a)) * (k @ k)


def _mr_oblique(p: _Patient, flag: str) -> dict:
    r = p.rng(flag)
    degrees = float(r.uniform(5.0, 15.0))
    axis = np.array([1.0, float(r.uniform(-0.3, 0.3)), 0.0])  # mostly about left-right, as an oblique axial
    rot = _rotation(axis, degrees)
    iop_text = [f"{v:.10f}" for v in np.concatenate([rot[:, 0], rot[:, 1]])]
    written = np.asarray([float(v) for v in iop_text])
    row, col = written[:3], written[3:]
    normal = np.cross(row, col)
    headers = [_read_header(f) for f in p.files("T1")]
    first = headers[0]
    dy, dx = (float(v) for v in first.PixelSpacing)
    origin = np.asarray([float(v) for v in first.ImagePositionPatient])
    top = np.asarray([float(v) for v in headers[-1].ImagePositionPatient])
    dz = (top[2] - origin[2]) / (len(headers) - 1)
    centre = origin + np.array([dx * (int(first.Columns) - 1), dy * (int(first.Rows) - 1), top[2] - origin[2]]) / 2
    for key in ("T1", "T2"):
        for f in p.files(key):
            ds = _read(f)
            k = round((float(ds.ImagePositionPatient[2]) - origin[2]) / dz)
            position = centre + (origin[0] - centre[0]) * row + (origin[1] - centre[1]) * col
            position = position + (origin[2] + k * dz - centre[2]) * normal
            ds.ImageOrientationPatient = iop_text
            ds.ImagePositionPatient = [f"{v:.6f}" for v in position]
            ds.SliceLocation = f"{float(np.dot(position, normal)):.6f}"
            _save(ds, f)
    return {
        "degrees": degrees,
        "axis": [float(v) for v in axis / np.linalg.norm(axis)],
        "direction_columns": [[float(v) for v in row], [float(v) for v in col], [float(v) for v in normal]],
        "centre_mm": [float(v) for v in centre],
        "note": "pixels unchanged; patient coordinates of the MR become centre + R (old - centre), R = "
        "[row, col, normal] as written; the MR truth sidecars (pose, landmarks) are not rotated",
    }


def _mr_t2_other_for(p: _Patient, flag: str) -> dict:
    new_for = p.uid(flag, "for")
    for f in p.files("T2"):
        ds = _read(f)
        ds.FrameOfReferenceUID = new_for
        _save(ds, f)
    return {"t2_frame_of_reference": "a new one, not T1's"}


def _functional(**items: Dataset) -> Dataset:
    group = Dataset()
    for keyword, item in items.items():
        setattr(group, keyword, Sequence([item]))
    return group


def _mr_t1_enhanced(p: _Patient, flag: str) -> dict:
    files = p.files("T1")
    classic = [_read(f) for f in files]
    classic.sort(key=lambda d: int(d.InstanceNumber))  # scanner order: most superior first
    first = classic[0]
    e = dw.new_dataset(ENHANCED_MR)
    e.SpecificCharacterSet = first.get("SpecificCharacterSet", "ISO_IR 100")
    for keyword in (
        "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge", "PatientSize", "PatientWeight",
        "StudyInstanceUID", "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber",
        "StudyDescription", "Modality", "SeriesInstanceUID", "SeriesNumber", "SeriesDate", "SeriesTime",
        "SeriesDescription", "OperatorsName", "BodyPartExamined", "PatientPosition", "FrameOfReferenceUID",
        "PositionReferenceIndicator", "Manufacturer", "InstitutionName", "StationName", "ManufacturerModelName",
        "DeviceSerialNumber", "SoftwareVersions", "ContentDate", "ContentTime", "MagneticFieldStrength",
    ):  # fmt: skip
        if keyword in first:
            setattr(e, keyword, first[keyword].value)
    dw.set_instance(e, p.uid(flag, "sop"))
    e.InstanceNumber = 1
    e.ImageType = ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
    e.AcquisitionNumber = 1
    e.AcquisitionDateTime = str(first.AcquisitionDate) + str(first.AcquisitionTime)
    e.AcquisitionDuration = 180.0
    e.PixelPresentation, e.VolumetricProperties, e.VolumeBasedCalculationTechnique = "MONOCHROME", "VOLUME", "NONE"
    e.ComplexImageComponent, e.AcquisitionContrast = "MAGNITUDE", "T1"
    e.ContentQualification, e.ResonantNucleus, e.KSpaceFiltering = "PRODUCT", "1H", "NONE"
    e.ApplicableSafetyStandardAgency = "IEC"
    e.BurnedInAnnotation, e.LossyImageCompression = "NO", "00"
    e.PulseSequenceName = str(first.SequenceName).lstrip("*")
    e.MRAcquisitionType, e.EchoPulseSequence, e.MultipleSpinEcho = "2D", "SPIN", "NO"
    e.PhaseContrast, e.SteadyStatePulseSequence, e.EchoPlanarPulseSequence = "NO", "NONE", "NO"
    e.SaturationRecovery, e.SpectrallySelectedSuppression, e.OversamplingPhase = "NO", "NONE", "NONE"
    e.GeometryOfKSpaceTraversal, e.SegmentedKSpaceTraversal = "RECTILINEAR", "PARTIAL"
    e.RectilinearPhaseEncodeReordering = "LINEAR"
    e.MultiPlanarExcitation, e.TimeOfFlightContrast = "NO", "NO"
    e.PresentationLUTShape = "IDENTITY"
    e.NumberOfKSpaceTrajectories = 1
    e.SamplesPerPixel, e.PhotometricInterpretation = 1, "MONOCHROME2"
    e.BitsAllocated, e.BitsStored, e.HighBit, e.PixelRepresentation = 16, 12, 11, 0
    e.NumberOfFrames = len(classic)
    dim_uid = p.uid(flag, "dimension")
    organisation = Dataset()
    organisation.DimensionOrganizationUID = dim_uid
    e.DimensionOrganizationSequence = Sequence([organisation])
    indices = []
    for pointer in (0x00209056, 0x00209057):  # StackID, InStackPositionNumber, in FrameContentSequence
        item = Dataset()
        item.DimensionOrganizationUID = dim_uid
        item.DimensionIndexPointer = pointer
        item.FunctionalGroupPointer = 0x00209111
        indices.append(item)
    e.DimensionIndexSequence = Sequence(indices)
    measures = Dataset()
    measures.PixelSpacing = first.PixelSpacing
    measures.SliceThickness = first.SliceThickness
    measures.SpacingBetweenSlices = first.SpacingBetweenSlices
    orientation = Dataset()
    orientation.ImageOrientationPatient = first.ImageOrientationPatient
    timing = Dataset()
    timing.RepetitionTime = float(first.RepetitionTime)
    timing.FlipAngle = float(first.FlipAngle)
    timing.EchoTrainLength = int(first.EchoTrainLength)
    timing.RFEchoTrainLength = int(first.EchoTrainLength)
    timing.GradientEchoTrainLength = 0
    sar = Dataset()
    sar.SpecificAbsorptionRateDefinition, sar.SpecificAbsorptionRateValue = "IEC_WHOLE_BODY", 0.8
    timing.SpecificAbsorptionRateSequence = Sequence([sar])
    mode = Dataset()
    mode.OperatingModeType, mode.OperatingMode = "STATIC FIELD", "IEC_NORMAL"
    timing.OperatingModeSequence = Sequence([mode])
    echo = Dataset()
    echo.EffectiveEchoTime = float(first.EchoTime)
    frame_type = Dataset()
    frame_type.FrameType = ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
    frame_type.PixelPresentation, frame_type.VolumetricProperties = "MONOCHROME", "VOLUME"
    frame_type.VolumeBasedCalculationTechnique, frame_type.ComplexImageComponent = "NONE", "MAGNITUDE"
    frame_type.AcquisitionContrast = "T1"
    anatomy = Dataset()
    region = Dataset()
    region.CodeValue, region.CodingSchemeDesignator, region.CodeMeaning = "774007", "SCT", "Head and Neck"
    anatomy.AnatomicRegionSequence = Sequence([region])
    anatomy.FrameLaterality = "U"
    transform = Dataset()
    transform.RescaleIntercept, transform.RescaleSlope, transform.RescaleType = "0", "1", "US"
    fov = Dataset()
    fov.InPlanePhaseEncodingDirection = "ROW"
    fov.MRAcquisitionFrequencyEncodingSteps = int(first.Columns)
    fov.MRAcquisitionPhaseEncodingStepsInPlane = int(first.Rows)
    fov.PercentSampling, fov.PercentPhaseFieldOfView = 100.0, float(first.PercentPhaseFieldOfView)
    modifier = Dataset()
    modifier.InversionRecovery, modifier.FlowCompensation, modifier.T2Preparation = "NO", "NONE", "NO"
    modifier.SpectrallySelectedExcitation, modifier.SpatialPresaturation = "NONE", "NONE"
    modifier.PartialFourier, modifier.ParallelAcquisition = "NO", "NO"
    imaging = Dataset()
    imaging.MagnetizationTransfer, imaging.BloodSignalNulling, imaging.Tagging = "NONE", "NO", "NONE"
    imaging.TransmitterFrequency = float(first.ImagingFrequency)
    imaging.PixelBandwidth = float(first.PixelBandwidth)
    receive = Dataset()
    receive.ReceiveCoilName, receive.ReceiveCoilManufacturerName = str(first.ReceiveCoilName), str(first.Manufacturer)
    receive.ReceiveCoilType, receive.QuadratureReceiveCoil = "VOLUME", "NO"
    transmit = Dataset()
    transmit.TransmitCoilName, transmit.TransmitCoilManufacturerName = "Body", str(first.Manufacturer)
    transmit.TransmitCoilType = "BODY"
    averages = Dataset()
    averages.NumberOfAverages = 1.0
    e.SharedFunctionalGroupsSequence = Sequence(
        [
            _functional(
                PixelMeasuresSequence=measures,
                PlaneOrientationSequence=orientation,
                MRTimingAndRelatedParametersSequence=timing,
                MREchoSequence=echo,
                MRImageFrameTypeSequence=frame_type,
                FrameAnatomySequence=anatomy,
                PixelValueTransformationSequence=transform,
                MRFOVGeometrySequence=fov,
                MRModifierSequence=modifier,
                MRImagingModifierSequence=imaging,
                MRReceiveCoilSequence=receive,
                MRTransmitCoilSequence=transmit,
                MRAveragesSequence=averages,
            )
        ]
    )
    e.AcquisitionContextSequence = Sequence([])
    per_frame = []
    for i, d in enumerate(classic):
        content = Dataset()
        content.FrameAcquisitionDateTime = e.AcquisitionDateTime
        content.FrameReferenceDateTime = e.AcquisitionDateTime
        content.FrameAcquisitionDuration = 180000.0
        content.StackID = "1"
        content.InStackPositionNumber = i + 1
        content.DimensionIndexValues = [1, i + 1]
        position = Dataset()
        position.ImagePositionPatient = d.ImagePositionPatient
        per_frame.append(_functional(FrameContentSequence=content, PlanePositionSequence=position))
    e.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    frames = np.stack([d.pixel_array for d in classic])
    e.Rows, e.Columns = int(frames.shape[1]), int(frames.shape[2])
    e.add_new(0x7FE00010, "OW", frames.astype("<u2").tobytes())
    folder = files[0].parent
    for f in files:
        f.unlink()
    dw.write(e, folder / "1-001.dcm")
    return {"frames": len(classic), "sop_class": "Enhanced MR Image Storage", "frame_order": "most superior first"}


def _mr_missing(p: _Patient, flag: str) -> dict:
    removed = 0
    for path, header in p.index():
        if str(header.get("Modality", "")) == "MR":
            path.unlink()
            removed += 1
    _remove_empty_dirs(p.dicom_dir)
    return {"removed_files": removed}


# ----------------------------------------------------------------------------------------------- 7. geometry


def _gantry_tilt(p: _Patient, flag: str) -> dict:
    from scipy import ndimage

    tilt = 15.0
    files = p.files("CT")
    z0 = float(_read_header(files[0]).ImagePositionPatient[2])
    for f in files:
        ds = _read(f)
        ipp = [float(v) for v in ds.ImagePositionPatient]
        shift = (ipp[2] - z0) * math.tan(math.radians(tilt))  # mm along +y; the lowest slice keeps its origin
        dy = float(ds.PixelSpacing[0])
        hu = ds.pixel_array.astype(np.float64)
        # the slice's rows now start `shift` mm further along +y: sample the same anatomy there
        moved = ndimage.shift(hu, (-shift / dy, 0.0), order=1, mode="nearest")
        _set_pixels(ds, np.rint(moved), signed=True)
        ds.ImagePositionPatient = [ds.ImagePositionPatient[0], _num(ipp[1] + shift), ds.ImagePositionPatient[2]]
        ds.GantryDetectorTilt = _num(tilt)
        _save(ds, f)
    return {
        "gantry_detector_tilt_deg": tilt,
        "shear_mm_per_mm": math.tan(math.radians(tilt)),
        "note": "slice origins move along +y with z; pixels resampled so the anatomy stays in place; the lowest "
        "slice is unchanged, so an orthogonal resampling onto its grid is the clean CT grid",
    }


def _slices_with_labels(p: _Patient) -> np.ndarray:
    return np.nonzero(p.labels.reshape(p.labels.shape[0], -1).any(axis=1))[0]


def _missing_ct_slice(p: _Patient, flag: str) -> dict:
    files = p.files("CT")
    with_gtv = [int(k) for k in _slices_with_labels(p) if 0 < k < len(files) - 1]
    k = with_gtv[len(with_gtv) // 2] if with_gtv else len(files) // 2
    removed = files[k]
    removed.unlink()
    return {"removed_slice_index": k, "file": removed.name}


def _duplicate_ipp(p: _Patient, flag: str) -> dict:
    files = p.files("CT")
    k = len(files) // 2
    ds = _read(files[k])
    other = _read(files[k + 1])
    ds.SOPInstanceUID = p.uid(flag, "sop")
    ds.InstanceNumber = len(files) + 1
    ds.PixelData = other.PixelData
    p.extra_sops.add(ds.SOPInstanceUID)
    _save(ds, files[k].parent / f"1-{len(files) + 1:03d}.dcm")
    return {"slice_index": k, "duplicate_of": files[k].name}


def _nonuniform_spacing(p: _Patient, flag: str) -> dict:
    """2 mm slices through the targets, 3 mm elsewhere; the RTSTRUCT has contours on every slice."""
    from hnseg.synthetic import imaging
    from hnseg.synthetic import rtstruct as rs
    from hnseg.synthetic.geometry import Grid, ds, position

    model = p.model
    g = model.ct_grid
    files = p.files("CT")
    n = len(files)
    dz, fine = g.spacing[2], 2.0
    rows = _slices_with_labels(p)
    # the dense range runs between two kept 3 mm slices lo < hi, 6 mm multiples apart, lo on the 2 mm lattice
    # that starts at the lowest slice (so the importer's resampled grid passes through every dense slice)
    lo = max(int(rows.min()) - 1, 0)
    lo -= lo % 2
    hi = min(int(rows.max()) + 1, n - 1)
    if (hi - lo) % 2:
        hi = hi + 1 if hi + 1 <= n - 1 else hi - 1
    z_lo = g.slice_z(lo)
    dense = [position(z_lo + fine * j) for j in range(1, round((hi - lo) * dz / fine))]
    xs, ys = g.axis(0), g.axis(1)
    noise = p.rng(flag + ":noise")
    template = _read(files[0])
    kept = [f for k, f in enumerate(files) if not lo < k < hi]
    for f in files:
        if f not in kept:
            f.unlink()
    slices: list[tuple[float, Dataset]] = [(float(_read_header(f).ImagePositionPatient[2]), _read(f)) for f in kept]
    for i, z in enumerate(dense):
        labels, _ = model.anatomy.sample_slice(xs, ys, z)
        hu = imaging.ct_slice(labels, model.contrast, noise)
        d = copy.deepcopy(template)
        d.SOPInstanceUID = p.uid(flag, "sop", i)
        d.ImagePositionPatient = [template.ImagePositionPatient[0], template.ImagePositionPatient[1], ds(z)]
        d.SliceLocation = ds(z)
        _set_pixels(d, np.clip(np.rint(hu) + 1024, 0, 4095), signed=True)
        slices.append((z, d))
    slices.sort(key=lambda item: item[0])
    for f in kept:
        f.unlink()
    folder = files[0].parent
    total = len(slices)
    for k, (_, d) in enumerate(slices):
        d.InstanceNumber = total - k
        _save(d, folder / f"1-{total - k:03d}.dcm")
    # RTSTRUCT rebuilt with contours on every slice of the new series, as a planning system would write it
    z_text = [str(d.ImagePositionPatient[2]) for _, d in slices]
    contours = rs.contour_rois(model.rois, g, z_text)
    rs_path = p.files("RTSTRUCT")[0]
    old = _read_header(rs_path)
    rs.write_rtstruct(
        rs_path,
        ident=model.identity,
        study=model.studies["A"],
        series=model.series["RTSTRUCT"],
        ct_series_uid=p.series_uid["CT"],
        ct_sop_uids=[str(d.SOPInstanceUID) for _, d in slices],
        rois=contours,
        sop_uid=str(old.SOPInstanceUID),
        date=str(old.StructureSetDate),
        time=str(old.StructureSetTime),
        order=model.roi_order,
    )
    # what the importer must return under on_missing_slice: resample: the smallest gap (2 mm) from the lowest
    # slice; lattice positions with a written slice carry its contours, the others (interpolated CT) none
    written = Grid(size=(g.size[0], g.size[1], total), spacing=g.spacing, origin=g.origin)
    slice_labels = np.zeros(written.shape_zyx, dtype=np.uint8)
    for roi in contours:
        mask = roi.mask(written) > 0
        if roi.spec.role == "gtv_n":
            slice_labels[mask & (slice_labels == 0)] = 2
        elif roi.spec.role == "gtv_t":
            slice_labels[mask] = 1
    z0 = slices[0][0]
    n_lattice = int(np.rint((slices[-1][0] - z0) / fine)) + 1
    labels = np.zeros((n_lattice, g.size[1], g.size[0]), dtype=np.uint8)
    on_lattice = 0
    for k, (z, _) in enumerate(slices):
        j = (z - z0) / fine
        if abs(j - round(j)) < 1e-6 and round(j) < n_lattice:
            labels[round(j)] = slice_labels[k]
            on_lattice += 1
    # the analytic truth at the lattice positions without a slice: must hold no target for the comparison to be fair
    lattice_text = [ds(position(z0 + fine * j)) for j in range(n_lattice)]
    ideal = np.zeros_like(labels)
    for roi in rs.contour_rois([r for r in model.rois if r.role in ("gtv_t", "gtv_n")], g, lattice_text):
        mask = roi.mask(Grid(size=(g.size[0], g.size[1], n_lattice), spacing=g.spacing, origin=g.origin)) > 0
        ideal[mask & (ideal == 0)] = 2 if roi.spec.role == "gtv_n" else 1
        if roi.spec.role == "gtv_t":
            ideal[mask] = 1
    image = sitk.GetImageFromArray(labels)
    image.SetOrigin((g.origin[0], g.origin[1], z0))
    image.SetSpacing((g.spacing[0], g.spacing[1], fine))
    p.set_labels(labels, image)
    return {
        "dense_range_mm": [z_lo, g.slice_z(hi)],
        "spacing_mm": {"dense": fine, "elsewhere": dz},
        "slices": total,
        "lattice_slices": n_lattice,
        "lattice_slices_with_a_written_slice": on_lattice,
        "expected_equals_analytic_truth": bool(np.array_equal(labels, ideal)),
        "expected_labels": "on the 2 mm lattice from the lowest slice; lattice positions without a written slice "
        "(outside the dense range) carry no contours and are 0",
    }


def _reversed_instance_numbers(p: _Patient, flag: str) -> dict:
    for key in ("CT", "PT"):
        for k, f in enumerate(p.files(key)):
            ds = _read(f)
            ds.InstanceNumber = k + 1
            _save(ds, f)
    return {"series": ["CT", "PT"], "instance_1": "the most inferior slice"}


def _iop_float_noise(p: _Patient, flag: str) -> dict:
    iop = ["1", "-1.224646799e-16", "0", "1.224646799e-16", "1", "-2.449293598e-16"]
    for key in ("CT", "PT"):
        for f in p.files(key):
            ds = _read(f)
            ds.ImageOrientationPatient = iop
            _save(ds, f)
    return {"image_orientation_patient": "\\".join(iop)}


def _exponent(text: str) -> str:
    """The same decimal value in exponent notation (falls back to the text if that is longer than 16)."""
    value = Decimal(str(text).strip())
    out = f"{value:E}"
    return out if len(out) <= 16 else str(text)


def _ds_exponent_padded(p: _Patient, flag: str) -> dict:
    for f in p.files("CT"):
        ds = _read(f)
        ds.ImagePositionPatient = [_exponent(v.original_string) for v in ds.ImagePositionPatient]
        ds.PixelSpacing = [f" {v.original_string} " for v in ds.PixelSpacing]
        ds.SliceThickness = f"{float(ds.SliceThickness):.6f}"
        ds.RescaleIntercept, ds.RescaleSlope = "-1.024E+03", " 1.0E0"
        _save(ds, f)
    for f in p.files("PT"):
        ds = _read(f)
        ds.RescaleSlope = _exponent(ds.RescaleSlope.original_string)
        ds.PatientWeight = _exponent(ds.PatientWeight.original_string)
        _save(ds, f)
    path = p.files("RTSTRUCT")[0]
    ds = _read(path)
    for item in _contours_of(ds, p.roi_numbers("gtv_t")):
        for contour in item.ContourSequence:
            contour.ContourData = [_exponent(v.original_string) for v in contour.ContourData]
    _save(ds, path)
    return {"ct": "ImagePositionPatient in exponent notation, PixelSpacing padded with spaces", "pet": "slopes",
            "rtstruct": "GTV-T ContourData in exponent notation"}  # fmt: skip


def _contour_z_offset(p: _Patient, flag: str) -> dict:
    path = p.files("RTSTRUCT")[0]
    ds = _read(path)
    count = 0
    for item in ds.ROIContourSequence:
        for contour in item.get("ContourSequence") or []:
            delta = Decimal("0.01") if count % 2 == 0 else Decimal("-0.01")
            values = [v.original_string for v in contour.ContourData]
            values[2::3] = [str(Decimal(z) + delta) for z in values[2::3]]
            contour.ContourData = values
            count += 1
    _save(ds, path)
    return {"contours": count, "z_offset_mm": "+0.01 and -0.01 alternately"}


# ----------------------------------------------------------------------------------------------- 8. encodings


def _implicit_vr(p: _Patient, flag: str) -> dict:
    count = 0
    for path, _ in p.index():
        ds = _read(path)
        meta = getattr(ds, "file_meta", None)
        if meta is None or "TransferSyntaxUID" not in meta or meta.TransferSyntaxUID.is_compressed:
            continue
        meta.TransferSyntaxUID = ImplicitVRLittleEndian
        _save(ds, path)
        count += 1
    return {"files": count, "transfer_syntax": "implicit VR little endian"}


def _compress_ct(p: _Patient, syntax: str) -> dict:
    for f in p.files("CT"):
        ds = _read(f)
        ds.compress(syntax, generate_instance_uid=False)  # lossless: the instance keeps its UID
        _save(ds, f)
    return {"files": len(p.files("CT")), "transfer_syntax": str(syntax)}


def _rle_ct(p: _Patient, flag: str) -> dict:
    from pydicom.uid import RLELossless

    return _compress_ct(p, RLELossless)


def _jpegls_ct(p: _Patient, flag: str) -> dict:
    from pydicom.uid import JPEGLSLossless

    try:
        import jpeg_ls  # noqa: F401  (the pyjpegls encoder)
    except ImportError as exc:
        raise InputError("the jpegls_ct variant needs the pyjpegls package (pip install pyjpegls)") from exc
    return _compress_ct(p, JPEGLSLossless)


FRENCH = {
    "PatientName": "Müller^Jörg",
    "ReferringPhysicianName": "Lévesque^Hélène",
    "InstitutionName": "Hôpital général de Québec",
    "study": {"A": "TEP-TDM SPHÈRE ORL tête et cou", "B": "IRM tête et cou"},
    "series": {
        "CT": "TDM tête et cou",
        "PT": "TEP corrigée (AC)",
        "RTSTRUCT": "Structures RT dosimétrie",
        "T1": "T1 axial tête et cou",
        "T2": "T2 axial tête et cou",
    },
    "rois": {"oar": ("Moelle épinière", "Parotide gauche", "Parotide droite", "Mandibule"), "body": "Contour externe"},
}


def _utf8_charset(p: _Patient, flag: str) -> dict:
    study_of = {v: k for k, v in p.study_uid.items()}
    series_of = {v: k for k, v in p.series_uid.items()}
    for path, _ in p.index():
        ds = _read(path)
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.PatientName = FRENCH["PatientName"]
        ds.ReferringPhysicianName = FRENCH["ReferringPhysicianName"]
        if "InstitutionName" in ds:
            ds.InstitutionName = FRENCH["InstitutionName"]
        study = study_of.get(str(ds.get("StudyInstanceUID", "")))
        if study:
            ds.StudyDescription = FRENCH["study"][study]
        series = series_of.get(str(ds.get("SeriesInstanceUID", "")))
        if series:
            ds.SeriesDescription = FRENCH["series"][series]
        if str(ds.get("Modality", "")) == "RTSTRUCT":
            oar = dict(zip(p.roi_numbers("oar"), FRENCH["rois"]["oar"], strict=False))
            oar.update(dict.fromkeys(p.roi_numbers("body"), FRENCH["rois"]["body"]))
            _rename_rois(ds, oar)
            for obs in ds.get("RTROIObservationsSequence") or []:
                if "ROIInterpreter" in obs:
                    obs.ROIInterpreter = FRENCH["ReferringPhysicianName"]
        _save(ds, path)
    return {"specific_character_set": "ISO_IR 192", "patient_name": FRENCH["PatientName"], **FRENCH["series"]}


def _secondary_capture(p: _Patient, flag: str, count: int) -> dict:
    hu, files = _hu_volume(p)
    template = _read(files[0])
    series_uid = p.uid(flag, "series")
    folder = _new_series_dir(files[0], 20, "CT screen capture", series_uid)
    for i in range(count):
        k = i % hu.shape[0]
        gray = np.clip((hu[k] + 160.0) / 400.0 * 255.0, 0, 255).astype(np.uint8)
        d = dw.new_dataset(SECONDARY_CAPTURE)
        for keyword in (
            "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
            "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber", "StudyDescription", "Manufacturer",
        ):  # fmt: skip
            setattr(d, keyword, template[keyword].value)
        d.Modality = "CT"  # as in deid-data's ctbrain1.dcm: a capture that calls itself CT
        d.SeriesInstanceUID, d.SeriesNumber, d.SeriesDescription = series_uid, 20, "CT screen capture"
        dw.set_instance(d, p.uid(flag, "sop", i))
        d.InstanceNumber = i + 1
        d.ConversionType = "WSD"
        d.ImageType = ["DERIVED", "SECONDARY"]
        d.PatientOrientation = ""
        d.SamplesPerPixel, d.PhotometricInterpretation, d.PlanarConfiguration = 3, "RGB", 0
        d.Rows, d.Columns = gray.shape
        d.BitsAllocated, d.BitsStored, d.HighBit, d.PixelRepresentation = 8, 8, 7, 0
        d.add_new(0x7FE00010, "OB", np.repeat(gray[:, :, None], 3, axis=2).tobytes())
        _save(d, folder / f"1-{i + 1:03d}.dcm")
    return {"series": "CT #20 'CT screen capture'", "instances": count, "sop_class": "Secondary Capture Image Storage"}


def _sc_ct_series(p: _Patient, flag: str) -> dict:
    return _secondary_capture(p, flag, 45)


def _sc_ct_only(p: _Patient, flag: str) -> dict:
    notes = _secondary_capture(p, flag, 45)
    for f in p.files("CT"):
        f.unlink()
    _remove_empty_dirs(p.dicom_dir)
    notes["removed"] = "the real CT series"
    return notes


# ----------------------------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class _Variant:
    phase: int  # 0 rebuild, 1 content, 2 encoding, 3 layout (copies and strays), 4 layout (moves every file)
    description: str
    outcome: str  # for MESSY_VARIANTS
    ct: str = "accept"
    pet: str = "accept"
    mri: str = "accept"
    apply: Callable[[_Patient, str], dict] | None = None


_A, _W, _R = "accept", "warn", "refuse"

_REGISTRY: dict[str, _Variant] = {
    # 1. scouts
    "scout_series": _Variant(1, "CT localiser series (AP and lateral LOCALIZER images) in its own series",
                             "accept: set aside as scouts", apply=_scout_series),
    "scout_in_ct_series": _Variant(1, "a coronal LOCALIZER image inside the CT's SeriesInstanceUID",
                                   "accept: set aside by ImageType", apply=_scout_in_ct_series),
    "stray_plane_in_ct_series": _Variant(1, "a coronal image typed AXIAL (no LOCALIZER) inside the CT series",
                                         "accept with warning: left out by orientation", ct=_W,
                                         apply=_stray_plane_in_ct_series),
    "mr_scouts": _Variant(1, "3-plane MR localiser series (axial, sagittal, coronal) in the MR study",
                          "accept: set aside as scouts", apply=_mr_scouts),
    # 3. RTSTRUCTs
    "rtstruct_older": _Variant(1, "an older RTSTRUCT (30 days earlier, higher SeriesNumber, GTVs shifted 6 mm)",
                               "accept: the newer (clean) one wins", apply=_rtstruct_older),
    "rtstruct_on_pet": _Variant(1, "a newer RTSTRUCT that references the PET series (GTV-T shifted 4 mm)",
                                "accept: never used, the CT's RTSTRUCT wins", apply=_rtstruct_on_pet),
    "rtstruct_empty_and_point_roi": _Variant(1, "an ROI without ContourSequence and a POINT ROI (isocentre)",
                                             "accept: both listed without contours", apply=_rtstruct_empty_and_point_roi),
    "rtstruct_no_contour_image_seq": _Variant(1, "RTSTRUCT without any ContourImageSequence (as pycerr's)",
                                              "accept: contours placed by geometry", apply=_rtstruct_no_contour_image_seq),
    "rtstruct_no_top_level_for": _Variant(1, "RTSTRUCT without a top-level FrameOfReferenceUID (legacy files)",
                                          "accept", apply=_rtstruct_no_top_level_for),
    # 4. PET
    "pet_weight_missing": _Variant(1, "PET without PatientWeight", "refuse without the sheet's weight_kg; accept "
                                   "with it", pet=_R, apply=_pet_weight_missing),
    "pet_weight_zero": _Variant(1, "PET PatientWeight 0", "refuse without the sheet's weight_kg; accept with it",
                                pet=_R, apply=_pet_weight_zero),
    "pet_dose_mbq": _Variant(1, "RadionuclideTotalDose in MBq (e.g. 203.16)", "refuse: looks like MBq", pet=_R,
                             apply=_pet_dose_mbq),
    "pet_midnight": _Variant(1, "RadiopharmaceuticalStartTime only, injection before and scan after midnight",
                             "accept with warning: injection on the previous day", pet=_W, apply=_pet_midnight),
    "pet_post_processed_ge": _Variant(1, "SeriesTime 20-50 min after AcquisitionTime, AcquisitionTime 3 min after "
                                      "the start, GE private scan datetime (0009,100D)",
                                      "accept with warning: the GE scan datetime is the scan time", pet=_W,
                                      apply=_pet_post_processed_ge),
    "pet_post_processed": _Variant(1, "SeriesTime 20-50 min after AcquisitionTime, no GE private tag",
                                   "accept with warning: the earliest AcquisitionTime is the scan time", pet=_W,
                                   apply=_pet_post_processed),
    "pet_philips_cnts_suv": _Variant(1, "Philips Units CNTS with SUV scale factor (7053,1000) and (7053,1009)",
                                     "accept: (7053,1000) is the factor", apply=_pet_philips_cnts_suv),
    "pet_philips_cnts_activity": _Variant(1, "Philips Units CNTS with only the activity scale factor (7053,1009)",
                                          "accept: counts to Bq/ml, then BQML", apply=_pet_philips_cnts_activity),
    "pet_units_gml": _Variant(1, "Units GML (slopes rewritten so rescaled values are SUVbw)", "accept: factor 1",
                              apply=_pet_units_gml),
    "pet_decay_admin": _Variant(1, "DecayCorrection ADMIN (slopes rewritten to the administration time)",
                                "accept: no decay factor", apply=_pet_decay_admin),
    "pet_nac_series": _Variant(1, "a non-attenuation-corrected PET series (no ATTN) next to the AC one",
                               "accept: the NAC series is skipped", apply=_pet_nac_series),
    "pet_first_slope_one": _Variant(1, "first PET slice along z requantised with RescaleSlope exactly 1.0",
                                    "accept: per-slice rescale in float", apply=_pet_first_slope_one),
    # 5. ROI names
    "roi_name_variants": _Variant(1, "GTV-T and GTV-N renamed to other real-world names (gtv pet, GTVnd, ...)",
                                  "accept: matched", apply=_roi_name_variants),
    "roi_traps": _Variant(1, "trap ROIs PTV_GTV, zGTV_old, ring_GTV, 'GTV T et N', 'GTV T irm', GTV-T_old",
                          "accept with warning: traps not taken, combined and MR-drawn GTVs named", ct=_W,
                          apply=_roi_traps),
    "no_gtv_n": _Variant(1, "no GTV-N ROI (a patient without nodes)", "accept: labels without 2", apply=_no_gtv_n),
    "no_gtv_t": _Variant(1, "no GTV-T ROI", "refuse the CT/labels import, naming the ROIs and the fix", ct=_R,
                         apply=_no_gtv_t),
    # 6. MR
    "mr_oblique": _Variant(1, "T1 and T2 oblique: IOP tilted 5-15 degrees with consistent positions",
                           "accept: direction kept", apply=_mr_oblique),
    "mr_t2_other_for": _Variant(1, "T2 in another FrameOfReferenceUID than T1", "accept with warning", mri=_W,
                                apply=_mr_t2_other_for),
    "mr_t1_enhanced": _Variant(1, "T1 as one Enhanced MR Image Storage object with per-frame functional groups",
                               "accept: frames become slices", apply=_mr_t1_enhanced),
    "mr_missing": _Variant(1, "no MR at all", "refuse the MR import only; CT and PET go on", mri=_R,
                           apply=_mr_missing),
    # 7. geometry
    "gantry_tilt": _Variant(1, "CT with GantryDetectorTilt 15 and sheared ImagePositionPatient",
                            "refuse; accept with warning under import.on_gantry_tilt: resample", ct=_R,
                            apply=_gantry_tilt),
    "missing_ct_slice": _Variant(1, "one CT slice through the tumour missing",
                                 "refuse; accept with warning under import.on_missing_slice: resample", ct=_R,
                                 apply=_missing_ct_slice),
    "duplicate_ipp": _Variant(1, "an extra CT instance at the position of another slice",
                              "refuse: two slices at the same position", ct=_R, apply=_duplicate_ipp),
    "nonuniform_spacing": _Variant(0, "CT slices 2 mm apart through the targets, 3 mm elsewhere (contours on all)",
                                   "refuse; accept with warning under import.on_missing_slice: resample", ct=_R,
                                   apply=_nonuniform_spacing),
    "reversed_instance_numbers": _Variant(1, "CT and PET InstanceNumber rising from the feet", "accept",
                                          apply=_reversed_instance_numbers),
    "iop_float_noise": _Variant(1, "CT and PET ImageOrientationPatient with -1.2e-16 style noise", "accept",
                                apply=_iop_float_noise),
    "ds_exponent_padded": _Variant(1, "DS values in exponent notation and padded with spaces (CT, PET, contours)",
                                   "accept", apply=_ds_exponent_padded),
    "contour_z_offset": _Variant(1, "every contour 0.01 mm off its CT slice (alternating sign)", "accept",
                                 apply=_contour_z_offset),
    # 8. encodings
    "utf8_charset": _Variant(2, "SpecificCharacterSet ISO_IR 192, 'Müller^Jörg', French descriptions and ROI names",
                             "accept", apply=_utf8_charset),
    "rle_ct": _Variant(2, "CT in RLE Lossless", "accept", apply=_rle_ct),
    "jpegls_ct": _Variant(2, "CT in JPEG-LS Lossless (needs pyjpegls)", "accept", apply=_jpegls_ct),
    "implicit_vr": _Variant(2, "every uncompressed file in implicit VR little endian", "accept", apply=_implicit_vr),
    "no_meta": _Variant(2, "one CT, PET and T1 file and the RTSTRUCT without preamble and file meta", "accept",
                        apply=_no_meta),
    "sc_ct_series": _Variant(1, "a Secondary Capture series with Modality CT (45 RGB screen captures)",
                             "accept: set aside, the real CT is used", apply=_sc_ct_series),
    "sc_ct_only": _Variant(1, "the CT replaced by a Secondary Capture series with Modality CT",
                           "refuse the CT/labels import (no CT series); PET and MR go on", ct=_R, apply=_sc_ct_only),
    # 2. layout
    "duplicates": _Variant(3, "duplicate copies of 7 instances (CT, PET, RTSTRUCT, T1) in another folder",
                           "accept: counted, extra copies ignored", apply=_duplicates),
    "stray_files": _Variant(3, "stray non-DICOM files: text, Thumbs.db, .DS_Store, PDF, empty, truncated 'DICM'",
                            "accept: counted as skipped", apply=_stray_files),
    "shuffled_names": _Variant(4, "random file names without extension (folders kept)", "accept",
                               apply=_shuffled_names),
    "flat_folder": _Variant(4, "every file of every series in one folder, random names", "accept",
                            apply=_flat_folder),
    "nested_folders": _Variant(4, "deeply nested folders (9 levels), 10 files per folder", "accept",
                               apply=_nested_folders),
    "dicomdir": _Variant(4, "a DICOMDIR file set (pydicom FileSet) as on a CD export", "accept: DICOMDIR skipped",
                         apply=_dicomdir),
}  # fmt: skip

_CONFLICTS = [
    {"shuffled_names", "flat_folder", "nested_folders", "dicomdir"},
    {"rle_ct", "jpegls_ct"},
]

MESSY_VARIANTS: dict[str, str] = {name: f"{v.description} -> {v.outcome}" for name, v in _REGISTRY.items()}
OUTCOMES: dict[str, dict[str, str]] = {name: {"ct": v.ct, "pet": v.pet, "mri": v.mri} for name, v in _REGISTRY.items()}


# ----------------------------------------------------------------------------------------------- entry point


def _check_variants(variants: list[str]) -> list[str]:
    if isinstance(variants, str):
        variants = [variants]
    unknown = [v for v in variants if v not in _REGISTRY]
    if unknown:
        raise InputError(f"unknown messy variant(s) {unknown}; choose from: {', '.join(_REGISTRY)}")
    chosen = set(variants)
    for group in _CONFLICTS:
        if len(chosen & group) > 1:
            raise InputError(f"messy variants {sorted(chosen & group)} cannot be combined; choose one of them")
    order = list(_REGISTRY)
    return sorted(chosen, key=lambda v: (_REGISTRY[v].phase, order.index(v)))


def _copy_clean(clean_from, patient_id: str, seed: int, size: str, dicom_dir: Path, truth_dir: Path) -> None:
    src_dicom, src_truth = (Path(p) for p in clean_from)
    try:
        info = json.loads((src_truth / "patient.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(
            f"clean_from {src_truth}: no readable patient.json ({exc}); give generate_patient's folders"
        ) from exc
    found = (info.get("patient_id"), info.get("seed"), info.get("size"), info.get("generator"))
    if found != (patient_id, seed, size, GENERATOR) or (src_truth / "messy.json").exists():
        raise InputError(
            f"clean_from {src_truth} holds {found[:3]} (generator {found[3]!r}), not a clean {(patient_id, seed, size)} "
            f"made by {GENERATOR!r}; generate it with generate_patient first"
        )
    shutil.copytree(src_dicom, dicom_dir, dirs_exist_ok=True)
    shutil.copytree(src_truth, truth_dir, dirs_exist_ok=True)


def make_messy_patient(
    patient_id: str,
    seed: int,
    dicom_dir: str | Path,
    truth_dir: str | Path,
    variants: list[str],
    size: str = "demo",
    clean_from: tuple[str | Path, str | Path] | None = None,
) -> dict:
    """Generate the clean patient, then apply each messy flag (see MESSY_VARIANTS); returns a summary.

    `clean_from` = (dicom_dir, truth_dir) of generate_patient's output for the same patient, seed and size: copied
    instead of generated again (same bytes, faster). Output folders must be new, empty, or an earlier messy run.
    """
    ordered = _check_variants(list(variants))
    dicom_dir, truth_dir = Path(dicom_dir), Path(truth_dir)
    if dicom_dir.exists() and any(dicom_dir.iterdir()):
        if not (truth_dir / "messy.json").exists():
            raise InputError(
                f"{dicom_dir} is not empty and {truth_dir} holds no messy.json of an earlier messy run; give an "
                "empty or new folder for the messy patient"
            )
        shutil.rmtree(dicom_dir)
    for stale in ("messy.json", "messy_labels.nii.gz"):
        (truth_dir / stale).unlink(missing_ok=True)
    summary = None
    if clean_from is None:
        summary = generate_patient(patient_id, seed, dicom_dir, truth_dir, size=size)
    else:
        _copy_clean(clean_from, patient_id, seed, size, dicom_dir, truth_dir)
    patient = _Patient(patient_id, seed, size, dicom_dir, truth_dir)
    notes: dict[str, dict] = {}
    for flag in ordered:
        apply = _REGISTRY[flag].apply
        assert apply is not None
        notes[flag] = apply(patient, flag)
        patient.changed()
    expected_labels = "labels.nii.gz"
    if patient.labels_changed:
        expected_labels = "messy_labels.nii.gz"
        sitk.WriteImage(patient.labels_image, str(truth_dir / expected_labels), useCompression=True)
    record = {
        "patient_id": patient_id,
        "seed": seed,
        "size": size,
        "variants": ordered,
        "descriptions": {flag: MESSY_VARIANTS[flag] for flag in ordered},
        "outcomes": {flag: OUTCOMES[flag] for flag in ordered},
        "expected_labels": expected_labels,
        "expected_suv": "suv.nii.gz",
        "notes": notes,
    }
    (truth_dir / "messy.json").write_text(
        json.dumps(_plain(record), indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return {**record, "clean": summary}


def _plain(obj):
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return float(f"{float(obj):.12g}")
    return obj
