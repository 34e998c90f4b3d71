"""Stage resample_pet, per patient: the CT and labels (they define the grid, copied byte for byte) and the PET (SUVbw)
on the CT grid, linear. PET and CT share the frame of reference (the PET/CT), so no registration: no ANTs here.

Its own rule, apart from register_mri, so that retuning the MR registration never reruns the PET, a patient without
MR still gets a PET on the CT grid, and a refused PET says so in its own record.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from hnseg.errors import InputError
from hnseg.registration import masks
from hnseg.registration.images import extent, grid_json, read_volume, same_grid, write_volume
from hnseg.registration.resample import resample_like, resample_pet_to_ct

log = logging.getLogger(__name__)

OUTPUT_FILES = ("ct.nii.gz", "labels.nii.gz", "pet.nii.gz")  # what resample_pet writes into its folder


def copy_ct(patient: str, ct_path: str | Path, labels_path: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """CT and labels into the registered folder, unchanged (they define the grid); checks the labels' grid."""
    ct, labels = read_volume(patient, ct_path, "CT"), read_volume(patient, labels_path, "labels")
    if not same_grid(ct, labels):
        raise InputError(
            f"patient {patient}: the labels {labels_path} are not on the CT grid of {ct_path} (labels "
            f"{grid_json(labels)}, CT {grid_json(ct)}); rerun the import of this patient"
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ct_path, out_dir / "ct.nii.gz")
    shutil.copyfile(labels_path, out_dir / "labels.nii.gz")
    log.info("patient %s: CT %s and labels copied (grid %s)", patient, ct.GetSize(), grid_json(ct))
    return {"patient": patient, "grid": grid_json(ct)}


def resample_pet(
    patient: str,
    ct_path: str | Path,
    labels_path: str | Path,
    pet_path: str | Path,
    out_dir: str | Path,
    body_threshold_hu: float,
) -> dict[str, Any]:
    """ct.nii.gz and labels.nii.gz (copied, see :func:`copy_ct`) and pet.nii.gz: the PET (SUVbw) on the CT grid,
    linear, 0 outside its field of view. Refuses a PET that misses the CT body. Returns the stage's record."""
    record = copy_ct(patient, ct_path, labels_path, out_dir)
    ct, pet = read_volume(patient, ct_path, "CT"), read_volume(patient, pet_path, "PET")
    body = masks.ct_body_mask(ct, body_threshold_hu)
    on_ct = resample_pet_to_ct(pet, ct)
    ones = sitk.Image(pet.GetSize(), sitk.sitkUInt8) + 1
    ones.CopyInformation(pet)
    fov = sitk.GetArrayFromImage(resample_like(ones, ct, sitk.sitkNearestNeighbor, 0, pixel_type=sitk.sitkUInt8))
    inside = sitk.GetArrayViewFromImage(body) > 0
    covered = float(np.count_nonzero(fov[inside])) / max(1, int(np.count_nonzero(inside)))
    if covered == 0.0:
        raise InputError(
            f"patient {patient}: the PET {pet_path} does not overlap the CT body ({extent(pet)} against the CT's "
            f"{extent(ct)}). PET and CT must share a frame of reference (the PET of the PET/CT); check the series "
            "chosen at import (pet.json)"
        )
    if covered < 0.5:
        log.warning(
            "patient %s: the PET covers only %.0f%% of the CT body (PET %s, CT %s); the rest is 0 on the CT grid",
            patient,
            100 * covered,
            extent(pet),
            extent(ct),
        )
    write_volume(on_ct, Path(out_dir) / "pet.nii.gz")
    log.info(
        "patient %s: PET %s resampled onto the CT grid %s; it covers %.1f%% of the body",
        patient, pet.GetSize(), ct.GetSize(), 100 * covered,
    )  # fmt: skip
    return {**record, "input": {"ct": str(ct_path), "labels": str(labels_path), "pet": str(pet_path)},
            "pet_body_coverage": round(covered, 4)}  # fmt: skip
