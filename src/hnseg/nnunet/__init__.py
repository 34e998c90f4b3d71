"""nnU-Net v2 baselines (DESIGN.md sections 3.9 and 4): `nobox` (CT, PET, T1w, T2w) and `box` (plus a box channel).

- `hnseg.nnunet.dataset`: the raw datasets (`Dataset{ID}_HNSegNoBox`, `Dataset{ID}_HNSegBox`) from the registered
  volumes and the shared prompts, with `splits_final.json` pinning the single train/val fold.
- `hnseg.nnunet.trainer`: `nnUNetTrainerHnseg`, nnU-Net's default trainer with a configurable training length.
- `hnseg.nnunet.run`: nnU-Net's folders and environment, plan and preprocess, train (resumable), predict, and
  the box-masked no-box prediction.

This module stays light (no torch, no nnunetv2): the workflow imports it when it parses.
"""

from __future__ import annotations

import re

VARIANTS = ("nobox", "box")
DATASET_NAMES = {"nobox": "HNSegNoBox", "box": "HNSegBox"}
TRAINER_NAME = "nnUNetTrainerHnseg"
PLANS_NAME = "nnUNetPlans"
FOLD = 0
_DATASET_RE = re.compile(r"^Dataset(\d{3})_(\w+)$")


def dataset_name(variant: str, dataset_id: int) -> str:
    """nnU-Net's folder name of a variant's dataset, e.g. `Dataset501_HNSegNoBox`."""
    if variant not in DATASET_NAMES:
        raise ValueError(f"unknown nnU-Net variant {variant!r}: expected one of {', '.join(VARIANTS)}")
    if not 1 <= int(dataset_id) <= 999:
        raise ValueError(f"nnU-Net dataset ids have three digits (1-999), got {dataset_id}")
    return f"Dataset{int(dataset_id):03d}_{DATASET_NAMES[variant]}"


def parse_dataset_name(name: str) -> tuple[str, int]:
    """(variant, dataset id) of a folder name made by :func:`dataset_name`."""
    match = _DATASET_RE.match(name)
    variants = {v: k for k, v in DATASET_NAMES.items()}
    if not match or match.group(2) not in variants:
        raise ValueError(f"{name!r} is not an hnseg nnU-Net dataset (Dataset###_{'|'.join(variants)})")
    return variants[match.group(2)], int(match.group(1))


def model_folder_name(configuration: str) -> str:
    """nnU-Net's results sub-folder of a trained model: `{trainer}__{plans}__{configuration}`."""
    return f"{TRAINER_NAME}__{PLANS_NAME}__{configuration}"


def dataset_for(nnunet_config: dict, variant: str) -> str:
    """The dataset folder name of `variant` under the config's `nnunet` section (dataset_id_nobox / dataset_id_box)."""
    return dataset_name(variant, nnunet_config[f"dataset_id_{variant}"])


def dataset_names(nnunet_config: dict) -> dict[str, str]:
    """variant -> dataset folder name, for both variants."""
    names = {variant: dataset_for(nnunet_config, variant) for variant in VARIANTS}
    if nnunet_config["dataset_id_nobox"] == nnunet_config["dataset_id_box"]:
        raise ValueError("nnunet.dataset_id_nobox and nnunet.dataset_id_box must differ (nnU-Net finds datasets by id)")
    return names
