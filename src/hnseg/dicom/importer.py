"""Stage import_dicom: one patient's DICOM folder to NIfTI volumes, labels and a record of every choice.

Three entry points, one per workflow rule, so that a patient without MR or PET loses only the branches that need
them (DESIGN.md section 8):

- `import_ct_and_labels`: CT (HU) and labels (0 background, 1 GTV-T, 2 GTV-N) on the CT grid, import.json;
- `import_pet`: PET in SUVbw on its own grid, pet.json;
- `import_mri`: T1w and T2w on their native grids, mri.json.

Choices when a folder holds several candidates (each recorded with its reason):
- RTSTRUCT: among those drawn on a CT of the folder (referenced series, else frame of reference), the newest by
  StructureSetDate/Time, then SeriesNumber; RTSTRUCTs drawn on the PET are never used.
- CT: the one the chosen RTSTRUCT references; without RTSTRUCT, the CT with the most slices.
- PET: attenuation-corrected series in the CT's frame of reference, the most slices; non-AC series are skipped.
- T1w / T2w: MR series classified by description, then by TR/TE (config `import.mri`); the most slices.

Outputs, logs and error messages carry the pseudonymous patient id only: series are named by modality, number and
description (never by UID), files by their name, the patient's DICOM folder never (PACS exports are often named
after the patient), and the volumes are written from arrays (no DICOM header reaches a NIfTI file).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import SimpleITK as sitk

from hnseg.dicom import pet, roi_names
from hnseg.dicom.rtstruct import PLANE_TOLERANCE_MM, rasterize_dataset, referenced_series_uids
from hnseg.dicom.series import ScanResult, Series, scan_folder
from hnseg.dicom.volume import Volume, planes_from_datasets, stack_planes
from hnseg.errors import InputError

log = logging.getLogger(__name__)

LABEL_GTV_T, LABEL_GTV_N = 1, 2
SOURCE = "dicom"  # every record says where its volumes came from (hnseg.nifti.importer writes "nifti")

DEFAULT_MRI_RULES: dict[str, Any] = {
    "t1_description": r"t1",
    "t2_description": r"t2",
    "exclude_description": r"dwi|adc|diff|trace|flair|stir|perf|dce|localizer|scout|survey|cal",
    "t1_max_te_ms": 30.0,
    "t1_max_tr_ms": 1200.0,
    "t2_min_te_ms": 60.0,
    "t2_min_tr_ms": 1500.0,
}


@dataclass
class ImportOptions:
    on_missing_slice: str = "refuse"
    on_gantry_tilt: str = "refuse"
    min_slices: int = 5
    roi_patterns: dict[str, list[str]] | None = None
    mri_rules: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_MRI_RULES))
    contour_plane_tolerance_mm: float = PLANE_TOLERANCE_MM


def options_from_params(params: dict[str, Any]) -> ImportOptions:
    """ImportOptions from the `import` section of the config (as the rules pass it in params)."""
    return ImportOptions(
        on_missing_slice=params["on_missing_slice"],
        on_gantry_tilt=params["on_gantry_tilt"],
        min_slices=int(params["min_slices"]),
        roi_patterns=params.get("roi_patterns"),
        mri_rules={**DEFAULT_MRI_RULES, **(params.get("mri") or {})},
        contour_plane_tolerance_mm=float(params["contour_plane_tolerance_mm"]),
    )


@dataclass
class Choice:
    series: Series
    reason: str
    candidates: list[str]


def _where(patient: str) -> str:
    # never the folder itself: PACS exports are often named after the patient (DESIGN.md section 8)
    return f"patient {patient}"


def scan_patient(patient: str, dicom_dir: str | Path) -> ScanResult:
    dicom_dir = Path(dicom_dir)
    if not dicom_dir.is_dir():
        raise InputError(
            f"{_where(patient)}: the DICOM folder does not exist; fix the patient's dicom_dir in the patients sheet"
        )
    scan = scan_folder(dicom_dir)
    if not scan.series:
        raise InputError(
            f"{_where(patient)}: no DICOM files found ({len(scan.skipped)} other file(s)); check "
            "dicom_dir in the patients sheet"
        )
    return scan


def _n_slices(s: Series) -> int:
    """Image planes of a series: one per instance, NumberOfFrames per enhanced multi-frame instance."""
    return sum(int(i.header.get("NumberOfFrames", 1) or 1) for i in s.instances)


def _image_series(scan: ScanResult, modality: str, min_slices: int) -> list[Series]:
    return [s for s in scan.series if s.modality == modality and s.is_image and _n_slices(s) >= min_slices]


def _structure_set_time(s: Series) -> tuple:
    ds = s.first
    return (
        str(ds.get("StructureSetDate", "") or ds.get("SeriesDate", "") or ""),
        str(ds.get("StructureSetTime", "") or ds.get("SeriesTime", "") or ""),
        s.number if s.number is not None else -1,
    )


def choose_rtstruct_and_ct(
    patient: str, dicom_dir: Path, scan: ScanResult, opts: ImportOptions
) -> tuple[Choice, Choice]:
    where = _where(patient)
    cts = _image_series(scan, "CT", opts.min_slices)
    if not cts:
        found = ", ".join(s.label() for s in scan.series) or "nothing"
        raise InputError(
            f"{where}: no CT series with at least {opts.min_slices} slices (found: {found}); export the planning CT with the patient"
        )
    ct_uids = {s.uid: s for s in cts}
    ct_fors = {s.frame_of_reference for s in cts}
    pet_uids = {s.uid for s in scan.series if s.modality == "PT"}
    usable, notes = [], []
    for rs in (s for s in scan.series if s.modality == "RTSTRUCT"):
        refs = referenced_series_uids(rs.first)
        rs_for = rs.first.get("ReferencedFrameOfReferenceSequence")
        rs_fors = {str(item.FrameOfReferenceUID) for item in rs_for or [] if "FrameOfReferenceUID" in item}
        if rs.first.get("FrameOfReferenceUID"):
            rs_fors.add(str(rs.first.FrameOfReferenceUID))
        if refs & pet_uids and not refs & set(ct_uids):
            notes.append(f"{rs.label()} is drawn on the PET, not used")
        elif refs & set(ct_uids) or rs_fors & ct_fors:
            usable.append(rs)
        else:
            notes.append(f"{rs.label()} references no CT of the folder, not used")
    if not usable:
        detail = "; ".join(notes) if notes else "no RTSTRUCT in the folder"
        raise InputError(
            f"{where}: no RTSTRUCT drawn on a CT of the folder ({detail}); export the planning RTSTRUCT with the CT it was drawn on"
        )
    rtstruct = max(usable, key=_structure_set_time)
    rs_reason = (
        "the only RTSTRUCT drawn on a CT"
        if len(usable) == 1
        else "the newest of the RTSTRUCTs drawn on a CT (StructureSetDate/Time, then SeriesNumber)"
    )
    refs = referenced_series_uids(rtstruct.first)
    referenced_cts = [ct_uids[u] for u in refs if u in ct_uids]
    if referenced_cts:
        ct, ct_reason = referenced_cts[0], "referenced by the chosen RTSTRUCT"
    else:
        rs_fors = {
            str(item.FrameOfReferenceUID)
            for item in rtstruct.first.get("ReferencedFrameOfReferenceSequence") or []
            if "FrameOfReferenceUID" in item
        }
        same_for = [s for s in cts if s.frame_of_reference in rs_fors] or cts
        ct = max(same_for, key=lambda s: len(s.instances))
        ct_reason = "the RTSTRUCT references no series; the CT in its frame of reference with the most slices"
    ct_choice = Choice(ct, ct_reason, [s.label() for s in cts])
    rs_choice = Choice(
        rtstruct,
        rs_reason + ("; " + "; ".join(notes) if notes else ""),
        [s.label() for s in scan.series if s.modality == "RTSTRUCT"],
    )
    return rs_choice, ct_choice


def read_series(series: Series, what: str, opts: ImportOptions) -> Volume:
    planes = planes_from_datasets([i.header for i in series.instances], [str(i.path) for i in series.instances])
    try:
        return stack_planes(planes, what, opts.on_missing_slice, opts.on_gantry_tilt)
    except InputError:
        raise
    except Exception as exc:  # corrupt or truncated pixel data, unsupported compression
        raise InputError(
            f"{what}: cannot read the pixel data ({type(exc).__name__}: {exc}); re-export the series uncompressed or fix the file"
        ) from exc


def write_volume(volume: Volume, path: Path, dtype=np.float32) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(volume.to_sitk(dtype), str(path), useCompression=True)


def hu_dtype(array: np.ndarray):
    """int16 when the HU values are whole numbers in range (the usual CT: 5x faster to write), else float32."""
    if array.size and array.min() >= -32768 and array.max() <= 32767 and np.array_equal(array, np.round(array)):
        return np.int16
    return np.float32


def _series_record(choice: Choice) -> dict[str, Any]:
    return {"series": choice.series.label(), "reason": choice.reason, "candidates": choice.candidates}


def import_ct_and_labels(
    patient: str, dicom_dir: str | Path, out_dir: str | Path, opts: ImportOptions
) -> dict[str, Any]:
    """Write ct.nii.gz, labels.nii.gz and import.json; returns the record."""
    dicom_dir, out_dir = Path(dicom_dir), Path(out_dir)
    scan = scan_patient(patient, dicom_dir)
    rs_choice, ct_choice = choose_rtstruct_and_ct(patient, dicom_dir, scan, opts)
    what = f"patient {patient}, CT {ct_choice.series.label()}"
    ct = read_series(ct_choice.series, what, opts)
    warnings = list(ct.warnings)

    grid = _grid_of(ct)
    rs_path = rs_choice.series.instances[0].path
    rtstruct = pydicom.dcmread(rs_path, force=True)
    masks = rasterize_dataset(
        rtstruct,
        grid,
        what=f"patient {patient}, RTSTRUCT {rs_choice.series.label()}",
        plane_tolerance_mm=opts.contour_plane_tolerance_mm,
    )
    warnings += masks.warnings
    match = roi_names.match_rois(list(masks.masks) + list(masks.skipped), opts.roi_patterns)
    warnings += [f"patient {patient}: {w}" for w in match.warnings]
    gtv_t = [n for n in match.gtv_t if n in masks.masks]
    gtv_n = [n for n in match.gtv_n if n in masks.masks]
    if not gtv_t:
        names = ", ".join(f"'{n}'" for n in list(masks.masks) + list(masks.skipped))
        raise InputError(
            f"patient {patient}, RTSTRUCT {rs_choice.series.label()}: no GTV-T ROI with contours on the "
            f"CT (ROIs: {names}); rename the primary tumour's ROI or add its name to import.roi_patterns.gtv_t"
        )
    t_mask = np.logical_or.reduce([masks.masks[n] for n in gtv_t])
    n_mask = np.logical_or.reduce([masks.masks[n] for n in gtv_n]) if gtv_n else np.zeros_like(t_mask)
    overlap = int(np.count_nonzero(t_mask & n_mask))
    if overlap:
        warnings.append(
            f"patient {patient}: GTV-T and GTV-N overlap in {overlap} voxel(s); they are labelled GTV-T (1)"
        )
    labels = np.zeros(t_mask.shape, dtype=np.uint8)
    labels[n_mask] = LABEL_GTV_N
    labels[t_mask] = LABEL_GTV_T

    write_volume(ct, out_dir / "ct.nii.gz", dtype=hu_dtype(ct.array))
    write_volume(Volume(labels, ct.origin, ct.spacing, ct.direction), out_dir / "labels.nii.gz", dtype=np.uint8)
    spacing = ct.spacing
    record = {
        "patient": patient,
        "source": SOURCE,
        "ct": {**_series_record(ct_choice), "shape_zyx": list(ct.array.shape), "spacing_xyz_mm": list(spacing)},
        "rtstruct": _series_record(rs_choice),
        "rois": {
            "gtv_t": gtv_t,
            "gtv_n": gtv_n,
            "all": sorted(masks.masks),
            "without_contours": masks.skipped,
            "matching": match.to_dict(),
        },
        "voxels": {"gtv_t": int(t_mask.sum()), "gtv_n": int(n_mask.sum()), "overlap": overlap},
        "files_skipped": len(scan.skipped),
        "duplicate_instances": scan.duplicates,
        "excluded_instances": sum(len(s.excluded) for s in scan.series),
        "warnings": warnings,
    }
    _write_json(out_dir / "import.json", record)
    for w in warnings:
        log.warning(w)
    return record


def _grid_of(volume: Volume):
    from hnseg.dicom.volume import Grid

    return Grid(volume.origin, volume.spacing, volume.direction, tuple(volume.array.shape))


def corrected_image_flags(ds: pydicom.Dataset) -> set[str]:
    """The CorrectedImage flags (ATTN, DECY, ...), upper case. A single value is a str in pydicom, not a list."""
    value = ds.get("CorrectedImage")
    if value is None or value == "":
        return set()
    values = [value] if isinstance(value, str | bytes) else list(value)
    return {(v.decode(errors="replace") if isinstance(v, bytes) else str(v)).strip().upper() for v in values}


def choose_pet(patient: str, dicom_dir: Path, scan: ScanResult, ct_for: str | None, opts: ImportOptions) -> Choice:
    where = _where(patient)
    pets = _image_series(scan, "PT", opts.min_slices)
    if not pets:
        raise InputError(
            f"{where}: no PET series; the multimodal methods need the FDG PET (the CT-only methods go on without it)"
        )
    notes, usable = [], []
    for s in pets:
        corrected = corrected_image_flags(s.first)
        if "ATTN" not in corrected:
            notes.append(f"{s.label()} is not attenuation corrected, skipped")
        elif ct_for is not None and s.frame_of_reference != ct_for:
            notes.append(f"{s.label()} is in another frame of reference than the CT (a separate PET/CT?), skipped")
        else:
            usable.append(s)
    if not usable:
        raise InputError(
            f"{where}: no usable PET: {'; '.join(notes)}. hnseg needs the attenuation-corrected PET acquired with the "
            "planning CT (same frame of reference)"
        )
    chosen = max(usable, key=lambda s: len(s.instances))
    reason = "attenuation-corrected PET in the CT's frame of reference" + (
        " with the most slices" if len(usable) > 1 else ""
    )
    return Choice(chosen, reason + ("; " + "; ".join(notes) if notes else ""), [s.label() for s in pets])


def _ct_frame_of_reference(patient: str, dicom_dir: Path, scan: ScanResult, opts: ImportOptions) -> str | None:
    try:
        _, ct_choice = choose_rtstruct_and_ct(patient, dicom_dir, scan, opts)
    except InputError:
        cts = _image_series(scan, "CT", opts.min_slices)
        return max(cts, key=lambda s: len(s.instances)).frame_of_reference if cts else None
    return ct_choice.series.frame_of_reference


def import_pet(
    patient: str, dicom_dir: str | Path, out_dir: str | Path, opts: ImportOptions, weight_kg: float | None = None
) -> dict[str, Any]:
    """Write pet.nii.gz (SUVbw, float32, PET grid) and pet.json."""
    dicom_dir, out_dir = Path(dicom_dir), Path(out_dir)
    scan = scan_patient(patient, dicom_dir)
    choice = choose_pet(patient, dicom_dir, scan, _ct_frame_of_reference(patient, dicom_dir, scan, opts), opts)
    headers = [i.header for i in choice.series.instances]
    what = f"patient {patient}, PET {choice.series.label()}"
    try:
        suv = pet.suv_details(headers, weight_kg=weight_kg)
    except InputError as exc:
        raise InputError(f"{what}: {exc}") from exc
    planes = planes_from_datasets(headers, [str(i.path) for i in choice.series.instances])
    for plane, factor in zip(planes, suv.factors, strict=True):
        plane.slope *= factor
        plane.intercept *= factor
    volume = read_series_planes(planes, what, opts)
    write_volume(volume, out_dir / "pet.nii.gz", dtype=np.float32)
    record = {
        "patient": patient,
        "source": SOURCE,
        "pet": {
            **_series_record(choice),
            "shape_zyx": list(volume.array.shape),
            "spacing_xyz_mm": list(volume.spacing),
        },
        "suv": suv.to_dict() if hasattr(suv, "to_dict") else {},
        "suv_max": float(volume.array.max()),
        "warnings": list(volume.warnings) + [f"{what}: {w}" for w in suv.warnings],
    }
    _write_json(out_dir / "pet.json", record)
    return record


def read_series_planes(planes, what: str, opts: ImportOptions) -> Volume:
    try:
        return stack_planes(planes, what, opts.on_missing_slice, opts.on_gantry_tilt)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(
            f"{what}: cannot read the pixel data ({type(exc).__name__}: {exc}); re-export the series"
        ) from exc


def _ms(ds: pydicom.Dataset, keyword: str) -> float | None:
    value = ds.get(keyword)
    if value in (None, ""):
        # enhanced MR: shared groups, or the first frame's (Philips puts MREchoSequence per frame)
        groups = [
            *(ds.get("SharedFunctionalGroupsSequence") or []),
            *(ds.get("PerFrameFunctionalGroupsSequence") or [])[:1],
        ]
        for group in groups:
            for seq in ("MRTimingAndRelatedParametersSequence", "MREchoSequence"):
                for item in group.get(seq) or []:
                    key = "EffectiveEchoTime" if keyword == "EchoTime" else keyword
                    if item.get(key) not in (None, ""):
                        return float(item.get(key))
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def classify_mri(series: Series, rules: dict[str, Any]) -> tuple[str | None, str]:
    """('t1' | 't2' | None, why) for an MR series, by description first, then by TR/TE."""
    ds = series.first
    image_type = [str(v).strip().upper() for v in (ds.get("ImageType") or [])]
    if {"PROJECTION IMAGE", "LOCALIZER"} & set(image_type):  # e.g. an angiography MIP, whose TR/TE look T1w
        return None, f"ImageType {'/'.join(image_type)} is a projection or localiser, not a T1w/T2w stack"
    text = " ".join(str(ds.get(k, "") or "") for k in ("SeriesDescription", "ProtocolName", "SequenceName")).lower()
    if re.search(rules["exclude_description"], text):
        return None, f"description '{series.description}' is excluded (import.mri.exclude_description)"
    t1 = bool(re.search(rules["t1_description"], text))
    t2 = bool(re.search(rules["t2_description"], text))
    if t1 != t2:
        return ("t1" if t1 else "t2"), f"description '{series.description}'"
    tr, te = _ms(ds, "RepetitionTime"), _ms(ds, "EchoTime")
    if tr is None or te is None:
        return None, "description does not say T1 or T2 and TR/TE are missing"
    if te <= rules["t1_max_te_ms"] and tr <= rules["t1_max_tr_ms"]:
        return "t1", f"TR {tr:g} ms, TE {te:g} ms"
    if te >= rules["t2_min_te_ms"] and tr >= rules["t2_min_tr_ms"]:
        return "t2", f"TR {tr:g} ms, TE {te:g} ms"
    return None, f"TR {tr:g} ms, TE {te:g} ms fit neither T1w nor T2w"


def choose_mri(patient: str, dicom_dir: Path, scan: ScanResult, opts: ImportOptions) -> dict[str, Choice]:
    where = _where(patient)
    mrs = _image_series(scan, "MR", opts.min_slices)
    found: dict[str, list[tuple[Series, str]]] = {"t1": [], "t2": []}
    notes = []
    for s in mrs:
        kind, why = classify_mri(s, opts.mri_rules)
        if kind is None:
            notes.append(f"{s.label()}: {why}")
        else:
            found[kind].append((s, why))
    missing = [k.upper() + "w" for k in ("t1", "t2") if not found[k]]
    if missing:
        detail = "; ".join(notes) if notes else ("no MR series" if not mrs else "")
        raise InputError(
            f"{where}: no {' and no '.join(missing)} MR series ({detail}). The multimodal methods need T1w and T2w; the "
            "CT-only methods go on without them. Export the MR study, or adjust import.mri in the config"
        )
    out = {}
    for kind, candidates in found.items():
        series, why = max(candidates, key=lambda c: len(c[0].instances))
        reason = f"{kind.upper()}w by {why}" + (" (most slices)" if len(candidates) > 1 else "")
        out[kind] = Choice(series, reason, [c[0].label() for c in candidates])
    return out


def import_mri(patient: str, dicom_dir: str | Path, out_dir: str | Path, opts: ImportOptions) -> dict[str, Any]:
    """Write t1.nii.gz and t2.nii.gz (native grids, float32) and mri.json."""
    dicom_dir, out_dir = Path(dicom_dir), Path(out_dir)
    scan = scan_patient(patient, dicom_dir)
    choices = choose_mri(patient, dicom_dir, scan, opts)
    record: dict[str, Any] = {"patient": patient, "source": SOURCE, "warnings": []}
    for kind, choice in choices.items():
        volume = read_series(choice.series, f"patient {patient}, {kind.upper()}w {choice.series.label()}", opts)
        write_volume(volume, out_dir / f"{kind}.nii.gz", dtype=np.float32)
        record[kind] = {
            **_series_record(choice),
            "shape_zyx": list(volume.array.shape),
            "spacing_xyz_mm": list(volume.spacing),
        }
        record["warnings"] += volume.warnings
    if choices["t1"].series.frame_of_reference != choices["t2"].series.frame_of_reference:
        record["warnings"].append(
            f"patient {patient}: T1w and T2w are in different frames of reference; each is registered to the CT on its own"
        )
    _write_json(out_dir / "mri.json", record)
    return record


def _write_json(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, default=str) + "\n")
