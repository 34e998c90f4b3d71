"""Stage import from NIfTI: one patient's NIfTI files to what the DICOM import writes (hnseg.dicom.importer).

The patients sheet names, per patient, `ct` (HU) and `labels`, and optionally `pet` (SUVbw), `t1`, `t2`. Three entry
points, one per workflow rule, as for DICOM, so that a patient without PET or MR loses only what needs them:

- `import_ct_and_labels`: ct.nii.gz (int16 when the HU are whole numbers in range, else float32) and labels.nii.gz
  (uint8: 0 background, 1 GTV-T, 2 GTV-N) on the CT grid, import.json;
- `import_pet`: pet.nii.gz (float32, on the PET's own grid), pet.json;
- `import_mri`: t1.nii.gz and t2.nii.gz (float32, native grids), mri.json.

Every record says ``"source": "nifti"`` (the DICOM import's say ``"dicom"``), so that a later stage that needs the
DICOM (the DICOM export) knows to skip the patient.

Messages and records name a file by its name and sheet column, never its folder (folders are often named after the
patient; the sheet, which the user keeps, has the full path).

Geometry: a file is read as SimpleITK reads it (LPS), and written in the orientation the DICOM import writes an axial
series (axes towards left, posterior, superior: identity direction), by flips and axis permutations only, so voxel
values are never interpolated. Refused, each with a message that names the patient, the file and the fix:
a file whose qform and sform disagree (readers would place it differently), a 4D file, labels not on the CT's grid,
label values other than the configured ones (listed), labels that are neither integers nor whole-number floats.
PET and MR keep their own grids: resample_pet and register_mri bring them onto the CT grid as for DICOM.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from hnseg.dicom.importer import LABEL_GTV_N, LABEL_GTV_T, hu_dtype
from hnseg.errors import InputError

log = logging.getLogger(__name__)

SOURCE = "nifti"
ORIENTATION = "LPS"  # what the DICOM import writes for an axial series: identity direction
DEFAULT_LABEL_VALUES = {"gtv_t": 1, "gtv_n": 2}  # HECKTOR: 1 GTVp, 2 GTVn
AFFINE_TOL_MM = 1e-3  # qform against sform: the quaternion is float32, so equal affines differ by ~1e-5 mm
GRID_TOL_MM = 1e-3
SPACING_TOL_MM = 1e-5
DIRECTION_TOL = 1e-5
MAX_SUV = 1000.0  # a PET whose maximum exceeds this is activity (Bq/mL), not SUV
COLUMNS = {"ct": "CT", "labels": "labels", "pet": "PET", "t1": "T1w", "t2": "T2w"}


def _without(exc: Exception, path: Path) -> str:
    """An exception's text with the file's folder left out (folders may be named after the patient)."""
    return str(exc).replace(str(path.parent), "").replace(str(path.resolve().parent), "")


def _fix_column(column: str) -> str:
    return f"fix the '{column}' column of the patients sheet"


def check_header(patient: str, path: Path, column: str) -> None:
    """Refuse a 4D file and a file whose qform and sform (both set) place the voxels differently."""
    import nibabel as nib

    try:
        image = nib.load(str(path))
    except Exception as exc:  # not a NIfTI, truncated header
        raise InputError(
            f"patient {patient}: cannot read the {COLUMNS[column]} {path.name} as NIfTI ({type(exc).__name__}: {_without(exc, path)}); "
            f"{_fix_column(column)} or re-export the file"
        ) from None
    shape = tuple(int(n) for n in image.shape)
    if len(shape) > 3 and any(n > 1 for n in shape[3:]):
        raise InputError(
            f"patient {patient}: the {COLUMNS[column]} {path.name} is 4D (shape {shape}); hnseg takes one 3D volume per "
            "file: split the time frames or channels (e.g. one file per modality) and name the 3D file in the sheet"
        )
    if len(shape) < 3:
        raise InputError(f"patient {patient}: the {COLUMNS[column]} {path.name} has shape {shape}, not a 3D volume")
    header = image.header
    qform, qcode = header.get_qform(coded=True)
    sform, scode = header.get_sform(coded=True)
    if qcode and scode and not np.allclose(qform, sform, rtol=0, atol=AFFINE_TOL_MM):
        raise InputError(
            f"patient {patient}: the {COLUMNS[column]} {path.name} has a qform (code {int(qcode)}) and an sform (code "
            f"{int(scode)}) that disagree (largest difference {np.abs(qform - sform).max():.4g} mm), so readers "
            "place its voxels differently; rewrite the file with one affine (e.g. nibabel: img.set_qform(img.affine); "
            "or set the wrong one's code to 0)"
        )


def read_nifti(patient: str, path: str | Path | None, column: str) -> sitk.Image:
    """A checked 3D scalar NIfTI as SimpleITK reads it (LPS), reoriented to the DICOM import's orientation."""
    if path is None or str(path) == "":
        raise InputError(
            f"patient {patient}: the patients sheet names no {COLUMNS[column]} file (column '{column}'); add it to "
            "the sheet to use it (the methods that need it leave this patient out until then)"
        )
    path = Path(path)
    if not path.is_file():
        raise InputError(
            f"patient {patient}: the {COLUMNS[column]} file {path.name} (sheet column '{column}') does not exist; "
            f"{_fix_column(column)}"
        )
    check_header(patient, path, column)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise InputError(
            f"patient {patient}: cannot read the {COLUMNS[column]} {path.name} ({_without(exc, path).strip().splitlines()[-1]}); "
            "re-export the file"
        ) from None
    if image.GetDimension() == 4 and image.GetSize()[3] == 1:  # a trailing singleton axis
        size = list(image.GetSize())
        image = sitk.Extract(image, [*size[:3], 0], [0, 0, 0, 0])
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            f"patient {patient}: the {COLUMNS[column]} {path.name} is not a 3D scalar volume (dimension "
            f"{image.GetDimension()}, {image.GetNumberOfComponentsPerPixel()} components per voxel)"
        )
    return sitk.DICOMOrient(image, ORIENTATION)


def grid_differences(a: sitk.Image, b: sitk.Image) -> list[str]:
    """How b's grid differs from a's (empty when they are one grid within NIfTI's float32 precision)."""
    problems = []
    if a.GetSize() != b.GetSize():
        problems.append(f"size {b.GetSize()} against {a.GetSize()}")
    if not np.allclose(a.GetSpacing(), b.GetSpacing(), rtol=0, atol=SPACING_TOL_MM):
        problems.append(f"spacing {tuple(round(v, 5) for v in b.GetSpacing())} against "
                        f"{tuple(round(v, 5) for v in a.GetSpacing())} mm")  # fmt: skip
    if not np.allclose(a.GetOrigin(), b.GetOrigin(), rtol=0, atol=GRID_TOL_MM):
        problems.append(f"origin {tuple(round(v, 3) for v in b.GetOrigin())} against "
                        f"{tuple(round(v, 3) for v in a.GetOrigin())} mm")  # fmt: skip
    if not np.allclose(a.GetDirection(), b.GetDirection(), rtol=0, atol=DIRECTION_TOL):
        problems.append("another direction")
    return problems


def label_array(patient: str, image: sitk.Image, path: Path, values: Mapping[str, int]) -> np.ndarray:
    """labels (uint8, 0/1/2) from a label volume holding 0, values['gtv_t'] and values['gtv_n'] only."""
    array = sitk.GetArrayFromImage(image)
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)) or not np.array_equal(array, np.round(array)):
            odd = np.unique(array[~np.isfinite(array) | (array != np.round(array))])[:5]
            raise InputError(
                f"patient {patient}: the labels {path.name} hold values that are not whole numbers (e.g. "
                f"{', '.join(f'{v:g}' for v in odd)}); labels must be integers (or floats holding whole numbers): "
                "resample label volumes with nearest neighbour, never linearly"
            )
    elif not np.issubdtype(array.dtype, np.integer):
        raise InputError(
            f"patient {patient}: the labels {path.name} have voxel type {array.dtype}; give integer labels"
        )
    t, n = int(values["gtv_t"]), int(values["gtv_n"])
    found = sorted(int(v) for v in np.unique(array))
    unexpected = sorted(set(found) - {0, t, n})
    if unexpected:
        raise InputError(
            f"patient {patient}: the labels {path.name} hold the values {found}, of which {unexpected} are neither "
            f"background (0), GTV-T ({t}) nor GTV-N ({n}); set import.nifti_labels in the config to the file's "
            "values, or relabel the file"
        )
    labels = np.zeros(array.shape, dtype=np.uint8)
    labels[array == n] = LABEL_GTV_N
    labels[array == t] = LABEL_GTV_T
    return labels


def _write(image: sitk.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), useCompression=True)


def _from_array(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(reference)
    return image


def _file_record(path: Path, image: sitk.Image) -> dict[str, Any]:
    # the file's name only: a folder may be named after the patient (as for DICOM, no folder reaches a record)
    return {
        "file": path.name,
        "shape_zyx": list(image.GetSize()[::-1]),
        "spacing_xyz_mm": [round(v, 6) for v in image.GetSpacing()],
    }


def _write_json(path: Path, record: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, default=str) + "\n")


def import_ct_and_labels(
    patient: str, files: Mapping[str, str | Path], out_dir: str | Path, label_values: Mapping[str, int] | None = None
) -> dict[str, Any]:
    """ct.nii.gz, labels.nii.gz and import.json from the sheet's `ct` and `labels` files; returns the record."""
    out_dir = Path(out_dir)
    values = {**DEFAULT_LABEL_VALUES, **(label_values or {})}
    if values["gtv_t"] == values["gtv_n"] or 0 in (values["gtv_t"], values["gtv_n"]):
        raise InputError(f"import.nifti_labels {values}: GTV-T and GTV-N need two different values other than 0")
    ct_path, labels_path = Path(files.get("ct") or ""), Path(files.get("labels") or "")
    ct = read_nifti(patient, files.get("ct"), "ct")
    labels_image = read_nifti(patient, files.get("labels"), "labels")
    problems = grid_differences(ct, labels_image)
    if problems:
        raise InputError(
            f"patient {patient}: the labels {labels_path.name} are not on the grid of the CT {ct_path.name} "
            f"({'; '.join(problems)}); labels must be drawn on the CT: resample them onto the CT (nearest "
            "neighbour) or name the CT they belong to"
        )
    labels = label_array(patient, labels_image, labels_path, values)
    hu = sitk.GetArrayFromImage(ct)
    if not np.all(np.isfinite(hu)):
        raise InputError(f"patient {patient}: the CT {ct_path.name} holds NaN or infinite values; re-export it")
    dtype = hu_dtype(hu)
    _write(_from_array(hu.astype(dtype, copy=False), ct), out_dir / "ct.nii.gz")
    _write(_from_array(labels, ct), out_dir / "labels.nii.gz")  # the CT's grid exactly
    t_mask, n_mask = labels == LABEL_GTV_T, labels == LABEL_GTV_N
    warnings = []
    if not t_mask.any():
        warnings.append(f"patient {patient}: the labels {labels_path.name} hold no GTV-T ({values['gtv_t']})")
    record = {
        "patient": patient,
        "source": SOURCE,
        "ct": {**_file_record(ct_path, ct), "dtype": np.dtype(dtype).name},
        "labels": {**_file_record(labels_path, labels_image), "values": values},
        "voxels": {"gtv_t": int(t_mask.sum()), "gtv_n": int(n_mask.sum()), "overlap": 0},
        "warnings": warnings,
    }
    _write_json(out_dir / "import.json", record)
    for w in warnings:
        log.warning(w)
    return record


def import_pet(patient: str, files: Mapping[str, str | Path], out_dir: str | Path) -> dict[str, Any]:
    """pet.nii.gz (SUVbw, float32, on the PET's own grid) and pet.json from the sheet's `pet` file."""
    out_dir = Path(out_dir)
    pet = read_nifti(patient, files.get("pet"), "pet")
    path = Path(files["pet"])
    suv = sitk.GetArrayFromImage(pet).astype(np.float32)
    if not np.all(np.isfinite(suv)):
        raise InputError(f"patient {patient}: the PET {path.name} holds NaN or infinite values; re-export it")
    if suv.max() > MAX_SUV:
        raise InputError(
            f"patient {patient}: the PET {path.name} reaches {suv.max():.4g}, far above any SUV (it looks like activity in "
            "Bq/mL); convert it to SUVbw (body weight), as HECKTOR ships it, or give the DICOM PET instead"
        )
    _write(_from_array(suv, pet), out_dir / "pet.nii.gz")
    record = {
        "patient": patient,
        "source": SOURCE,
        "pet": _file_record(path, pet),
        "suv": {"method": "given in SUVbw by the NIfTI file"},
        "suv_max": float(suv.max()),
        "warnings": [],
    }
    _write_json(out_dir / "pet.json", record)
    return record


def import_mri(patient: str, files: Mapping[str, str | Path], out_dir: str | Path) -> dict[str, Any]:
    """t1.nii.gz and t2.nii.gz (float32, native grids) and mri.json from the sheet's `t1` and `t2` files."""
    out_dir = Path(out_dir)
    missing = [COLUMNS[k] for k in ("t1", "t2") if not files.get(k)]
    if missing:
        raise InputError(
            f"patient {patient}: the patients sheet names no {' and no '.join(missing)} file (columns t1, t2). The "
            "fusions that use MRI and an nnU-Net on MRI need T1w and T2w; the others go on without them"
        )
    record: dict[str, Any] = {"patient": patient, "source": SOURCE, "warnings": []}
    images = {kind: read_nifti(patient, files[kind], kind) for kind in ("t1", "t2")}
    for kind, image in images.items():
        array = sitk.GetArrayFromImage(image).astype(np.float32)
        if not np.all(np.isfinite(array)):
            raise InputError(
                f"patient {patient}: the {COLUMNS[kind]} {Path(files[kind]).name} holds NaN or infinite values"
            )
        _write(_from_array(array, image), out_dir / f"{kind}.nii.gz")
        record[kind] = _file_record(Path(files[kind]), image)
    _write_json(out_dir / "mri.json", record)
    return record
