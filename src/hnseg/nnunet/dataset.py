"""nnU-Net raw datasets from the registered volumes (DESIGN.md section 3.9; reference/nnunet.md sections 1 and 2).

One dataset per variant, in `{nnUNet_raw}/Dataset{ID}_{Name}/`:

- `imagesTr/{p}_0000..0003.nii.gz` (CT, PET, T1w, T2w: the volumes every patient of the training set has, the
  paper's four for the paper's cohort, CT and PET for a HECKTOR one; `box` adds the box channel last) and `labelsTr/{p}.nii.gz`
  (0 background, 1 GTV-T, 2 GTV-N) for the train and validation patients; case ids are the pseudonymous ids;
- `imagesTs/` the same channels for any `test` patients given to :func:`convert_dataset` (a patient also in
  training gets hard links to its `imagesTr` files). The workflow passes none and writes the patients it predicts
  with :func:`write_test_images` into a folder of their own, so that the evaluated subsets never change the
  training data;
- `dataset.json`: channel names select nnU-Net's normalisation: `CT` (dataset-wide foreground percentiles) for the
  CT, `zscore` (per case) for PET, T1w and T2w (nnU-Net's default for anything not CT), `noNorm` for the box
  channel so that it stays 0/1; `channel_modalities` (ignored by nnU-Net) says which modality each channel holds;
- `splits_final.json`: one fold, train = the train patients, val = the validation patients. nnU-Net's planner copies
  it into the preprocessed folder, so fold 0 is exactly the study's split.

Every channel is written with the CT's geometry, after checking that the volume really is on the CT grid (an
InputError names the patient and the file otherwise): nnU-Net refuses channels whose spacing differs even in the last
bit. Files are copies (written by SimpleITK), not symlinks: a dataset folder is self-contained, survives the rerun of
an upstream stage and reads the same from every node of a cluster.

The box channel holds, on every axial slice, the union of that slice's perturbed boxes of every target (the prompts
every method shares, 0-20 mm margins), rendered by `hnseg.prompts.render_box_channel`: the training boxes and the
test boxes follow the same rule (DESIGN.md section 4). As in the paper, the channel is an ordinary nnU-Net input:
where a case's spacing differs from the plans' target spacing nnU-Net resamples it like the images (splines).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from hnseg.errors import InputError
from hnseg.nnunet import VARIANTS
from hnseg.prompts import read_prompts, render_box_channel

log = logging.getLogger(__name__)

FILE_ENDING = ".nii.gz"
LABELS = {"background": 0, "GTV-T": 1, "GTV-N": 2}
MODALITIES = ("CT", "PET", "T1", "T2")
VOLUMES = ("ct", "pet", "t1", "t2")  # the volumes on the CT grid each modality channel comes from, in channel order
MODALITY_OF_VOLUME = dict(zip(VOLUMES, MODALITIES, strict=True))
NORMALIZATION = {"CT": "CT", "PET": "zscore", "T1": "zscore", "T2": "zscore", "box": "noNorm"}
SPACING_TOL_MM = 1e-3
ORIGIN_TOL_MM = 1e-3
DIRECTION_TOL = 1e-4


@dataclass(frozen=True)
class CaseFiles:
    """One patient's inputs: the registered volumes (all on the CT grid), labels and prompts where needed."""

    ct: str | Path
    pet: str | Path | None = None
    t1: str | Path | None = None
    t2: str | Path | None = None
    labels: str | Path | None = None
    prompts: str | Path | None = None

    def modality_paths(self, volumes: tuple[str, ...] = VOLUMES) -> list[Path]:
        """The files of the given volumes (ct first), in channel order."""
        missing = [v for v in volumes if getattr(self, v) is None]
        if missing:
            raise ValueError(f"no file given for {', '.join(missing)}")
        return [Path(getattr(self, v)) for v in volumes]


def check_volumes(volumes) -> tuple[str, ...]:
    """The volumes nnU-Net trains on, validated: CT first, then any of PET, T1w, T2w, in that order."""
    volumes = tuple(volumes)
    if (
        not volumes
        or volumes[0] != "ct"
        or any(v not in VOLUMES for v in volumes)
        or list(volumes) != sorted(volumes, key=VOLUMES.index)
    ):
        raise ValueError(f"nnU-Net volumes {volumes}: CT first, then any of pet, t1, t2 in that order")
    return volumes


def channels(variant: str, volumes: tuple[str, ...] = VOLUMES) -> tuple[str, ...]:
    """The modality of each channel, in channel order: the given volumes' (the paper's four by default), then the box
    channel for `box`."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown nnU-Net variant {variant!r}: expected one of {', '.join(VARIANTS)}")
    mods = tuple(MODALITY_OF_VOLUME[v] for v in check_volumes(volumes))
    return (*mods, "box") if variant == "box" else mods


def make_dataset_json(
    variant: str, num_training: int, test_cases: Iterable[str] = (), volumes: tuple[str, ...] = VOLUMES
) -> dict:
    mods = channels(variant, volumes)
    return {
        "channel_names": {str(i): NORMALIZATION[m] for i, m in enumerate(mods)},
        "labels": dict(LABELS),
        "numTraining": int(num_training),
        "file_ending": FILE_ENDING,
        "overwrite_image_reader_writer": "SimpleITKIO",
        "name": f"hnseg {variant}",
        "description": "Head and neck GTV-T / GTV-N on the CT grid (Ren et al. 2024 nnU-Net baseline, hnseg).",
        "channel_modalities": {str(i): m for i, m in enumerate(mods)},
        "modalities": "the volumes every patient of the training set has: "
        + ", ".join(MODALITY_OF_VOLUME[v] for v in volumes),
        "box_channel": "slice-wise union of the perturbed prompt boxes of every target (results/prompts)"
        if variant == "box"
        else None,
        "test_cases": sorted(test_cases),
    }


def image_name(case: str, channel: int) -> str:
    return f"{case}_{channel:04d}{FILE_ENDING}"


def check_same_grid(reference: sitk.Image, image: sitk.Image, patient: str, path: str | Path) -> None:
    """Raise InputError unless `image` has the size, spacing, origin and direction of the CT `reference`."""
    problems = []
    if image.GetSize() != reference.GetSize():
        problems.append(f"size {image.GetSize()} instead of {reference.GetSize()}")
    if image.GetDimension() == reference.GetDimension() == 3:
        if not np.allclose(image.GetSpacing(), reference.GetSpacing(), rtol=0, atol=SPACING_TOL_MM):
            problems.append(f"spacing {image.GetSpacing()} instead of {reference.GetSpacing()}")
        if not np.allclose(image.GetOrigin(), reference.GetOrigin(), rtol=0, atol=ORIGIN_TOL_MM):
            problems.append(f"origin {image.GetOrigin()} instead of {reference.GetOrigin()}")
        if not np.allclose(image.GetDirection(), reference.GetDirection(), rtol=0, atol=DIRECTION_TOL):
            problems.append("a different direction")
    else:
        problems.append(f"{image.GetDimension()} dimensions instead of 3")
    if problems:
        raise InputError(
            f"patient {patient}: {path} is not on the CT grid ({'; '.join(problems)}); nnU-Net needs every channel "
            "and the labels on the CT grid: rerun the registration stage for this patient (results/registered)"
        )


def _read(path: Path, patient: str) -> sitk.Image:
    if not path.is_file():
        raise InputError(f"patient {patient}: {path} is missing; run the registration stage for this patient first")
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise InputError(f"patient {patient}: cannot read {path} ({str(exc).strip().splitlines()[-1]})") from None


def _as_channel(image: sitk.Image, reference: sitk.Image, patient: str, path: Path) -> sitk.Image:
    check_same_grid(reference, image, patient, path)
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"patient {patient}: {path} has {image.GetNumberOfComponentsPerPixel()} components, not 1")
    if image.GetPixelID() in (sitk.sitkFloat64, sitk.sitkFloat32):
        array = sitk.GetArrayViewFromImage(image)
        if not np.isfinite(array).all():
            raise InputError(f"patient {patient}: {path} holds NaN or infinite values; nnU-Net refuses them")
        if image.GetPixelID() == sitk.sitkFloat64:
            image = sitk.Cast(image, sitk.sitkFloat32)
    image = sitk.Image(image)  # own copy: CopyInformation must not touch a cached input
    image.CopyInformation(reference)
    return image


def box_channel(prompts_path: str | Path, reference: sitk.Image, patient: str) -> sitk.Image:
    """The box channel of a patient (uint8, 1 inside the perturbed boxes of their slice) on the CT grid."""
    path = Path(prompts_path)
    if not path.is_file():
        raise InputError(f"patient {patient}: prompts {path} are missing; run make_prompts for this patient first")
    record = json.loads(path.read_text())
    shape = tuple(reversed(reference.GetSize()))
    if record.get("patient") not in (None, patient):
        raise InputError(f"patient {patient}: {path} holds the prompts of {record['patient']}, not of {patient}")
    if tuple(record.get("ct_shape_zyx", shape)) != shape:
        raise InputError(
            f"patient {patient}: {path} was made on a {tuple(record['ct_shape_zyx'])} grid, the CT is {shape} (z, y, x);"
            " rerun make_prompts for this patient"
        )
    image = sitk.GetImageFromArray(render_box_channel(read_prompts(path), shape, "box"))
    image.CopyInformation(reference)
    return image


def read_case(
    patient: str, files: CaseFiles, variant: str, with_labels: bool, volumes: tuple[str, ...] = VOLUMES
) -> tuple[list[sitk.Image], sitk.Image | None]:
    """A case's channels (the given volumes, with the box channel for `box`) and labels, checked and on the CT's
    exact geometry."""
    try:
        paths = files.modality_paths(check_volumes(volumes))
    except ValueError as exc:
        raise InputError(f"patient {patient}: {exc}; nnU-Net trains on {', '.join(volumes)}") from None
    reference = _read(paths[0], patient)
    images = [_as_channel(reference, reference, patient, paths[0])]
    images += [_as_channel(_read(p, patient), reference, patient, p) for p in paths[1:]]
    if variant == "box":
        if files.prompts is None:
            raise InputError(f"patient {patient}: the box dataset needs the patient's prompts (results/prompts)")
        images.append(box_channel(files.prompts, reference, patient))
    labels = None
    if with_labels:
        if files.labels is None:
            raise InputError(f"patient {patient}: a training case needs its labels (results/registered/{patient})")
        path = Path(files.labels)
        labels = _as_channel(_read(path, patient), reference, patient, path)
        values = np.unique(sitk.GetArrayViewFromImage(labels))
        unexpected = sorted(set(values.tolist()) - set(LABELS.values()))
        if unexpected:
            raise InputError(
                f"patient {patient}: {path} holds label values {unexpected}; expected 0 (background), 1 (GTV-T), "
                "2 (GTV-N): rerun the import for this patient"
            )
        labels = sitk.Cast(labels, sitk.sitkUInt8)
    return images, labels


def _write(image: sitk.Image, path: Path) -> None:
    sitk.WriteImage(image, str(path), useCompression=True)


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def write_splits(path: str | Path, train: Iterable[str], val: Iterable[str]) -> list[dict]:
    """nnU-Net's `splits_final.json` with one fold: the study's train and validation patients."""
    splits = [{"train": sorted(train), "val": sorted(val)}]
    Path(path).write_text(json.dumps(splits, indent=1) + "\n")
    return splits


def convert_dataset(
    dataset_dir: str | Path,
    variant: str,
    cases: Mapping[str, CaseFiles],
    train: Iterable[str],
    val: Iterable[str],
    test: Iterable[str],
    processes: int = 1,
    volumes: tuple[str, ...] = VOLUMES,
) -> dict:
    """Write the raw nnU-Net dataset of `variant` into `dataset_dir` (named `Dataset###_Name`); returns a summary.

    `train` and `val` patients go to imagesTr/labelsTr and make fold 0 of splits_final.json; `test` (the evaluated
    patients, which may include the validation patients) go to imagesTs without labels. The folder is built beside
    its final place and renamed when complete, so a killed job never leaves a half-written dataset behind.
    """
    channels(variant, volumes)  # validates the variant and the volumes
    train, val, test = sorted(train), sorted(val), sorted(test)
    overlap = set(train) & set(val)
    if overlap:
        raise InputError(f"patients {sorted(overlap)} are in both the train and the validation subset")
    if not train or not val:
        raise InputError(
            f"nnU-Net needs at least one train and one validation patient (got {len(train)} and {len(val)}); "
            "change split.ratio"
        )
    missing = sorted((set(train) | set(val) | set(test)) - set(cases))
    if missing:
        raise InputError(f"no input files given for patients {missing}")
    dataset_dir = Path(dataset_dir)
    tmp = dataset_dir.with_name(dataset_dir.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (tmp / sub).mkdir(parents=True)
    training, in_test = {*train, *val}, set(test)

    def write_case(patient: str) -> None:
        in_training = patient in training
        images, labels = read_case(patient, cases[patient], variant, with_labels=in_training, volumes=volumes)
        folder = tmp / ("imagesTr" if in_training else "imagesTs")
        for i, image in enumerate(images):
            _write(image, folder / image_name(patient, i))
        if labels is not None:
            _write(labels, tmp / "labelsTr" / f"{patient}{FILE_ENDING}")
        if in_training and patient in in_test:
            for i in range(len(images)):
                _link_or_copy(folder / image_name(patient, i), tmp / "imagesTs" / image_name(patient, i))

    patients = sorted(training | in_test)
    try:
        with ThreadPoolExecutor(max_workers=max(1, processes)) as pool:
            for patient, _ in zip(patients, pool.map(write_case, patients), strict=True):
                log.info("%s: written", patient)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    dataset = make_dataset_json(variant, len(training), test, volumes)
    (tmp / "dataset.json").write_text(json.dumps(dataset, indent=1) + "\n")
    write_splits(tmp / "splits_final.json", train, val)
    if dataset_dir.exists():
        shutil.rmtree(dataset_dir)
    tmp.rename(dataset_dir)
    summary = {
        "dataset": dataset_dir.name,
        "variant": variant,
        "channels": list(channels(variant, volumes)),
        "train": len(train),
        "val": len(val),
        "test": len(test),
    }
    log.info("%s", json.dumps(summary))
    return summary


def write_test_images(
    folder: str | Path,
    variant: str,
    cases: Mapping[str, CaseFiles],
    processes: int = 1,
    volumes: tuple[str, ...] = VOLUMES,
) -> dict[str, list[Path]]:
    """The channels of the patients to predict (nnU-Net's imagesTs layout) in `folder`; returns the files per patient.

    The workflow keeps these apart from the raw training dataset, so that changing which patients are evaluated
    (evaluate.subsets) never touches the dataset nnU-Net plans and trains on. Built beside its final place and
    renamed when complete, like the dataset."""
    channels(variant, volumes)  # validates the variant and the volumes
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)

    def write_case(patient: str) -> int:
        images, _ = read_case(patient, cases[patient], variant, with_labels=False, volumes=volumes)
        for i, image in enumerate(images):
            _write(image, tmp / image_name(patient, i))
        return len(images)

    patients = sorted(cases)
    try:
        with ThreadPoolExecutor(max_workers=max(1, processes)) as pool:
            counts = dict(zip(patients, pool.map(write_case, patients), strict=True))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)
    log.info("%d patients to predict written to %s", len(patients), folder)
    return {p: [folder / image_name(p, i) for i in range(n)] for p, n in counts.items()}
