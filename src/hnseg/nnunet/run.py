"""nnU-Net's folders, plan and preprocess, training, prediction, and the box-masked no-box prediction.

All of nnU-Net's state lives under one root (`results/nnunet`): `raw/`, `preprocessed/` and `results/`, which
:func:`nnunet_environment` puts in `nnUNet_raw`, `nnUNet_preprocessed` and `nnUNet_results` for this process and
the processes nnU-Net starts. nnU-Net reads a few process counts when it is first imported; the environment is
therefore set before nnunetv2 is imported here, and the counts are also set on nnU-Net's modules directly.

CPU and GPU:
- the device comes from the caller (`hnseg.gpu.job_device`: a GPU slot, else the CPU); nnU-Net's own choice of
  `cuda:0` is overridden so the slot's GPU is used;
- on the CPU nothing is compiled (`nnUNet_compile=f`; nnU-Net >= 2.5 also refuses) and data augmentation runs in
  the training process (`nnUNet_n_proc_DA=0`): the cores do the convolutions and, with the seed, the sampling of
  patches is reproducible; on a GPU the job's threads minus one are augmentation workers;
- nnU-Net's own pools (integrity check, fingerprint, preprocessing, export of the validation) get the job's
  threads.

Seeding: Python, NumPy and torch are seeded before the network is built (its initial weights) and before training
(patch sampling and augmentation when they run in the training process). nnU-Net's multi-process augmentation and
cuDNN are non-deterministic by design (reference/nnunet.md section 5): GPU runs are not bit-reproducible.

Resuming: :func:`train` records a run key (settings, plans, fingerprint, split, code) in `fold_0/hnseg_run.json`.
Run again with the same key, it continues from `checkpoint_final.pth` (only the validation is left) or
`checkpoint_latest.pth` (nnU-Net's `--c`; written every `checkpoint_every` epochs, so the epochs after it are run
again); with another key it starts afresh. nnU-Net's checkpoint holds the weights, the optimizer, the gradient
scaler and the logs, but no random state, and its data loaders start anew: a resumed run reseeds with seed + the
epoch it resumes at. It completes the configured epochs, but it is not the run an uninterrupted training would have
made (other patches, other augmentations after the resume point).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from hnseg.errors import InputError
from hnseg.nnunet import FOLD, PLANS_NAME, TRAINER_NAME, model_folder_name
from hnseg.nnunet.dataset import check_same_grid
from hnseg.prompts import read_prompts, render_box_channel

log = logging.getLogger(__name__)


def nnunet_paths(root: str | Path) -> dict[str, Path]:
    root = Path(root).resolve()
    return {"raw": root / "raw", "preprocessed": root / "preprocessed", "results": root / "results"}


def nnunet_environment(
    root: str | Path, threads: int = 1, device_type: str = "cpu", augmentation_workers: int | None = None
) -> dict[str, str]:
    """Point nnU-Net at `root` and size its workers for a job with `threads` cores; returns what was set.

    `augmentation_workers` (nnUNet_n_proc_DA) defaults to 0 on the CPU and threads - 1 on a GPU. nnU-Net's planner
    also sizes torch's threads by it, so planning needs at least 1.
    """
    paths = nnunet_paths(root)
    threads = max(1, int(threads))
    if augmentation_workers is None:
        augmentation_workers = 0 if device_type != "cuda" else max(1, threads - 1)
    env = {
        "nnUNet_raw": str(paths["raw"]),
        "nnUNet_preprocessed": str(paths["preprocessed"]),
        "nnUNet_results": str(paths["results"]),
        "nnUNet_n_proc_DA": str(int(augmentation_workers)),
        "nnUNet_def_n_proc": str(threads),
        "nnUNet_extTrainer": str(Path(__file__).resolve().parent),
    }
    if device_type != "cuda":
        env["nnUNet_compile"] = "f"
    os.environ.update(env)
    for path in paths.values():
        path.mkdir(parents=True, exist_ok=True)
    _set_nnunet_process_counts(threads)
    return env


def _set_nnunet_process_counts(threads: int) -> None:
    """nnU-Net copies `nnUNet_def_n_proc` into its modules when they are imported: fix the copies already made."""
    import sys

    for name, module in list(sys.modules.items()):
        if name.startswith("nnunetv2.") and module is not None and hasattr(module, "default_num_processes"):
            module.default_num_processes = threads


def find_dataset(folder: str | Path, dataset_id: int) -> str:
    """The `Dataset###_*` folder of `dataset_id` in an nnU-Net folder (exactly one)."""
    prefix = f"Dataset{int(dataset_id):03d}_"
    found = sorted(p.name for p in Path(folder).glob(prefix + "*") if p.is_dir() and not p.name.endswith(".partial"))
    if len(found) != 1:
        raise InputError(
            f"expected one nnU-Net dataset with id {dataset_id} in {folder}, found {found or 'none'}: "
            "check nnunet.dataset_id_nobox / dataset_id_box and remove stale dataset folders"
        )
    return found[0]


def _sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _folder_digest(folder: Path) -> str:
    """A cheap digest of a preprocessed folder: every file's relative path and size."""
    entries = sorted((str(p.relative_to(folder)), p.stat().st_size) for p in folder.rglob("*") if p.is_file())
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()


def plan_and_preprocess(
    root: str | Path,
    dataset_id: int,
    configuration: str = "3d_fullres",
    processes: int = 1,
    verify: bool = True,
    foreground_samples: int | None = None,
) -> Path:
    """Integrity check, fingerprint, plans and preprocessing of one configuration; returns the plans file.

    The split of the raw dataset (`splits_final.json`) is copied by nnU-Net's planner into the preprocessed folder,
    so training uses it; a stale preprocessed folder of the dataset is removed first. `foreground_samples` is the
    number of foreground voxels the fingerprint draws (with replacement, over all cases) for the CT normalisation
    statistics: None keeps nnU-Net's 1e8, which costs about 25 s on two cores whatever the dataset's size; a small
    cohort needs far fewer.
    """
    paths = nnunet_paths(root)
    nnunet_environment(root, processes, "cpu", augmentation_workers=max(1, processes))
    from nnunetv2.experiment_planning.dataset_fingerprint.fingerprint_extractor import DatasetFingerprintExtractor
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (
        extract_fingerprint_dataset,
        plan_experiment_dataset,
        preprocess_dataset,
    )
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    name = find_dataset(paths["raw"], dataset_id)
    raw, pre = paths["raw"] / name, paths["preprocessed"] / name
    if not (raw / "splits_final.json").is_file():
        raise InputError(f"{raw} has no splits_final.json: rebuild the dataset with hnseg.nnunet.dataset")
    if pre.exists():
        shutil.rmtree(pre)
    if verify:
        try:
            verify_dataset_integrity(str(raw), processes)
        except (AssertionError, RuntimeError, FileNotFoundError) as exc:
            raise InputError(f"nnU-Net's integrity check refused {raw}: {exc} (details above in the log)") from None

    class SampledFingerprintExtractor(DatasetFingerprintExtractor):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.num_foreground_voxels_for_intensitystats = int(foreground_samples)

    extractor = DatasetFingerprintExtractor if foreground_samples is None else SampledFingerprintExtractor
    extract_fingerprint_dataset(
        dataset_id,
        extractor,
        processes,
        check_dataset_integrity=False,
        clean=True,
        verbose=False,
        show_progress_bar=False,
    )
    plan_experiment_dataset(dataset_id)
    plans_file = pre / f"{PLANS_NAME}.json"
    available = json.loads(plans_file.read_text())["configurations"]
    if configuration not in available:
        raise InputError(
            f"nnU-Net planned no {configuration!r} configuration for {name} (planned: {', '.join(available)}); "
            "choose one of those in nnunet.configuration"
        )
    preprocess_dataset(dataset_id, PLANS_NAME, (configuration,), (processes,), verbose=False, show_progress_bar=False)
    if not (pre / "splits_final.json").is_file():
        shutil.copy(raw / "splits_final.json", pre / "splits_final.json")
    log.info("%s: planned and preprocessed %s", name, configuration)
    return plans_file


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (nnU-Net samples patches and augments with the legacy global RNG)
    torch.manual_seed(seed)


def model_dir(root: str | Path, dataset_id: int, configuration: str) -> Path:
    """The trained model folder of a dataset (`{nnUNet_results}/Dataset###_*/{trainer}__{plans}__{configuration}`)."""
    results = nnunet_paths(root)["results"]
    return results / find_dataset(results, dataset_id) / model_folder_name(configuration)


def train(
    root: str | Path,
    dataset_id: int,
    configuration: str,
    epochs: int,
    iterations_per_epoch: int,
    val_iterations_per_epoch: int,
    device,
    threads: int = 1,
    seed: int = 2024,
    run_key: str = "",
    checkpoint_every: int | None = None,
    validate: bool = True,
) -> dict:
    """Train fold 0 of the dataset (resuming where a killed run stopped) and validate it; returns the record.

    `checkpoint_every`: epochs between checkpoint_latest.pth saves (None: nnU-Net's 50); not part of the run key,
    so changing it never restarts a training. The record (also the rule's output) has the epochs run, seconds per
    epoch, losses, pseudo Dice, the final validation Dice of nnU-Net (on the validation patients) and where the
    model is.
    """
    import torch

    device = torch.device(device)
    paths = nnunet_paths(root)
    nnunet_environment(root, threads, device.type)
    torch.set_num_threads(max(1, int(threads)))
    from hnseg.nnunet.trainer import nnUNetTrainerHnseg

    name = find_dataset(paths["preprocessed"], dataset_id)
    pre = paths["preprocessed"] / name
    splits_file = pre / "splits_final.json"
    if not splits_file.is_file() or not json.loads(splits_file.read_text()):
        raise InputError(f"{splits_file} is missing or empty: rerun the nnU-Net plan step for {name}")
    plans = json.loads((pre / f"{PLANS_NAME}.json").read_text())
    dataset_json = json.loads((pre / "dataset.json").read_text())
    key = hashlib.sha256(
        json.dumps(
            {
                "run_key": run_key,
                "configuration": configuration,
                "epochs": epochs,
                "iterations": iterations_per_epoch,
                "val_iterations": val_iterations_per_epoch,
                "seed": seed,
                "plans": _sha256_file(pre / f"{PLANS_NAME}.json"),
                "fingerprint": _sha256_file(pre / "dataset_fingerprint.json"),
                "splits": _sha256_file(splits_file),
                "data": _folder_digest(pre),
            },
            sort_keys=True,
        ).encode()
    ).hexdigest()
    out = paths["results"] / name / model_folder_name(configuration)
    fold_dir = out / f"fold_{FOLD}"
    state_file = fold_dir / "hnseg_run.json"
    if fold_dir.exists():
        previous = json.loads(state_file.read_text()).get("key") if state_file.is_file() else None
        if previous != key:
            log.info("%s: settings, data or code changed since the last run: training afresh", name)
            shutil.rmtree(fold_dir)
    final, latest = fold_dir / "checkpoint_final.pth", fold_dir / "checkpoint_latest.pth"
    resume = final.is_file() or latest.is_file()
    plans["continue_training"] = resume
    seed_everything(seed)
    trainer = nnUNetTrainerHnseg(
        plans=plans, configuration=configuration, fold=FOLD, dataset_json=dataset_json, device=device
    )
    trainer.device = device  # nnU-Net would take cuda:0, not the job's GPU slot
    trainer.configure(epochs, iterations_per_epoch, val_iterations_per_epoch, checkpoint_every)
    state_file.write_text(json.dumps({"key": key, "dataset": name, "trainer": TRAINER_NAME}, indent=1) + "\n")
    start = time.perf_counter()
    if final.is_file():
        log.info("%s: training had finished (%s)", name, final.name)
        trainer.load_checkpoint(str(final))
    else:
        if latest.is_file():
            trainer.load_checkpoint(str(latest))
            log.info("%s: resuming at epoch %d from %s", name, trainer.current_epoch, latest.name)
        seed_everything(seed + trainer.current_epoch)
        trainer.run_training()
    train_s = time.perf_counter() - start
    summary_file = fold_dir / "validation" / "summary.json"
    validation_s = None
    if validate and not summary_file.is_file():
        start = time.perf_counter()
        trainer.perform_actual_validation(False)
        validation_s = time.perf_counter() - start
    logged = {k: trainer.logger.get_value(k, None) for k in ("train_losses", "val_losses", "mean_fg_dice", "lrs")}
    starts, ends = (trainer.logger.get_value(k, None) for k in ("epoch_start_timestamps", "epoch_end_timestamps"))
    record = {
        "dataset": name,
        "configuration": configuration,
        "trainer": TRAINER_NAME,
        "model_dir": str(out),
        "fold": FOLD,
        "device": str(device),
        "epochs": int(trainer.current_epoch),
        "iterations_per_epoch": iterations_per_epoch,
        "val_iterations_per_epoch": val_iterations_per_epoch,
        "seed": seed,
        "checkpoint_every": trainer.save_every,
        "key": key,
        "this_run_train_s": round(train_s, 3),
        "this_run_validation_s": None if validation_s is None else round(validation_s, 3),
        "history": [
            {
                "epoch": i,
                "seconds": float(e - s),
                "train_loss": float(logged["train_losses"][i]),
                "val_loss": float(logged["val_losses"][i]),
                "pseudo_dice": float(logged["mean_fg_dice"][i]),
                "lr": float(logged["lrs"][i]),
            }
            for i, (s, e) in enumerate(zip(starts, ends, strict=False))
        ],
    }
    if summary_file.is_file():
        summary = json.loads(summary_file.read_text())
        record["validation"] = {
            "foreground_mean_dice": summary["foreground_mean"]["Dice"],
            "mean_dice": {label: v["Dice"] for label, v in summary["mean"].items()},
        }
    return record


def load_predictor(model: str | Path, device, tta: bool = True, checkpoint: str = "checkpoint_final.pth"):
    """An nnUNetPredictor of fold 0 of a trained model folder, the network rebuilt with hnseg's trainer class."""
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from hnseg.nnunet.trainer import nnUNetTrainerHnseg

    model, device = Path(model), torch.device(device)
    path = model / f"fold_{FOLD}" / checkpoint
    if not path.is_file():
        raise InputError(f"no trained nnU-Net model at {path}: run the nnU-Net training first")
    state = torch.load(path, map_location="cpu", weights_only=False)
    dataset_json = json.loads((model / "dataset.json").read_text())
    plans_manager = PlansManager(json.loads((model / "plans.json").read_text()))
    configuration_manager = plans_manager.get_configuration(state["init_args"]["configuration"])
    network = nnUNetTrainerHnseg.build_network_architecture(
        plans_manager,
        configuration_manager,
        determine_num_input_channels(plans_manager, configuration_manager, dataset_json),
        plans_manager.get_label_manager(dataset_json).num_segmentation_heads,
        enable_deep_supervision=False,
    )
    network.load_state_dict(state["network_weights"])
    predictor = nnUNetPredictor(
        tile_step_size=0.5,
        use_gaussian=True,
        use_mirroring=tta,
        perform_everything_on_device=device.type == "cuda",
        device=device,
        verbose=False,
        verbose_preprocessing=False,
        allow_tqdm=False,
    )
    predictor.manual_initialization(
        network,
        plans_manager,
        configuration_manager,
        [state["network_weights"]],
        dataset_json,
        state["trainer_name"],
        state.get("inference_allowed_mirroring_axes"),
    )
    return predictor


def predict(
    root: str | Path,
    dataset_id: int,
    configuration: str,
    cases: list[dict],
    device,
    threads: int = 1,
    tta: bool = True,
) -> dict:
    """Predict each case {"patient", "images" (channel files in order), "out", optional "reference"}.

    The label volume (uint8: 0, 1 GTV-T, 2 GTV-N) is written on the grid of "reference" (the patient's CT-grid
    labels), or else of the first channel. Returns the seconds per case (reading, preprocessing, sliding window
    with mirroring if `tta`, resampling back) and overall.
    """
    import torch
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    device = torch.device(device)
    nnunet_environment(root, threads, device.type)
    torch.set_num_threads(max(1, int(threads)))
    predictor = load_predictor(model_dir(root, dataset_id, configuration), device, tta)
    n_channels = len(predictor.dataset_json["channel_names"])
    per_patient = {}
    for case in cases:
        patient, images = case["patient"], [str(p) for p in case["images"]]
        if len(images) != n_channels:
            raise InputError(f"patient {patient}: {len(images)} channels given, the model takes {n_channels}")
        start = time.perf_counter()
        data, properties = SimpleITKIO().read_images(images)
        labels = predictor.predict_single_npy_array(data, properties, None, None, False)
        seconds = time.perf_counter() - start
        reference = sitk.ReadImage(str(case.get("reference") or images[0]))
        if case.get("reference"):
            check_same_grid(reference, sitk.ReadImage(images[0]), patient, images[0])
        image = sitk.GetImageFromArray(np.asarray(labels, dtype=np.uint8))
        if image.GetSize() != reference.GetSize():
            raise RuntimeError(f"patient {patient}: nnU-Net returned a {labels.shape} volume for {images[0]}")
        image.CopyInformation(reference)
        Path(case["out"]).parent.mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(image, str(case["out"]), useCompression=True)
        per_patient[patient] = {"seconds": round(seconds, 4), "shape_zyx": list(labels.shape)}
        log.info("%s: %.2f s", patient, seconds)
    total = sum(v["seconds"] for v in per_patient.values())
    return {
        "device": str(device),
        "tta": bool(tta),
        "overall": {
            "cases": len(per_patient),
            "total_s": round(total, 4),
            "s_per_case": total / max(len(per_patient), 1),
        },
        "patients": per_patient,
    }


def boxmask(labels: np.ndarray, prompts) -> np.ndarray:
    """`labels` (z, y, x) kept only inside the perturbed boxes of their slice (the union of that slice's boxes)."""
    inside = render_box_channel(list(prompts), labels.shape, "box").astype(bool)
    return np.where(inside, labels, 0).astype(np.uint8)


def boxmask_predictions(cases: list[dict]) -> dict:
    """For each case {"patient", "prediction", "prompts", "out"}: the prediction masked by the prompts' boxes."""
    summary = {}
    for case in cases:
        patient = case["patient"]
        image = sitk.ReadImage(str(case["prediction"]))
        labels = sitk.GetArrayFromImage(image)
        record = json.loads(Path(case["prompts"]).read_text())
        if tuple(record.get("ct_shape_zyx", labels.shape)) != labels.shape:
            raise InputError(
                f"patient {patient}: prompts {case['prompts']} are on a {tuple(record['ct_shape_zyx'])} grid, the "
                f"prediction {case['prediction']} is {labels.shape}; rerun make_prompts and the prediction"
            )
        masked = boxmask(labels, read_prompts(case["prompts"]))
        out = sitk.GetImageFromArray(masked)
        out.CopyInformation(image)
        Path(case["out"]).parent.mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(out, str(case["out"]), useCompression=True)
        summary[patient] = {
            "voxels_kept": int((masked > 0).sum()),
            "voxels_removed": int(((labels > 0) & (masked == 0)).sum()),
        }
    return summary
