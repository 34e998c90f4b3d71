"""Timings: fine-tuning per epoch and the best epoch, LiteMedSAM encoder per slice and decoder per box, nnU-Net per
epoch and per case, import and registration per patient; the paper's figures beside them in columns of their own.

Sources: ``history.csv`` of each fine-tuning (epoch, train_loss, val_dice_loss, lr, seconds), ``timings.json`` of
each prediction (hnseg.sam.infer and hnseg.nnunet.run), ``training.json`` of each nnU-Net training, and the
benchmark TSVs Snakemake writes per job (``results/benchmarks/<rule>/...``: wall seconds ``s``, ``max_rss`` MB, ...).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd

from hnseg.report.methods import label
from hnseg.report.paper import published_timing

TIMING_COLUMNS = (
    "section", "quantity", "subject", "value", "unit", "n", "detail", "device",
    "paper_value", "paper_unit", "paper_text", "paper_device",
)  # fmt: skip

PER_PATIENT_RULES = {
    "import_ct": "CT and RTSTRUCT import",
    "import_pet": "PET import",
    "import_mri": "MRI import",
    "resample_pet": "PET onto the CT grid",
    "register_mri": "T1w and T2w registration",
}
"""Benchmark folders summarised per patient, in this order."""

FilePath = str | PathLike[str]


def best_epoch(history: pd.DataFrame) -> tuple[int, float]:
    """The epoch fine-tuning kept: the lowest validation Dice loss, the first on ties (hnseg.sam.train)."""
    i = int(history["val_dice_loss"].to_numpy().argmin())
    return int(history["epoch"].iloc[i]), float(history["val_dice_loss"].iloc[i])


def benchmark_seconds(path: FilePath) -> float:
    """Wall seconds of one Snakemake benchmark file (the mean over its repeats)."""
    table = pd.read_csv(path, sep="\t")
    if table.empty or "s" not in table:
        raise ValueError(f"{path} is not a Snakemake benchmark file (no 's' column or no row)")
    return float(table["s"].mean())


def _paper(what: str) -> dict:
    row = published_timing(what)
    if row is None:
        return {}
    return {
        "paper_value": row["value"],
        "paper_unit": row["unit"],
        "paper_text": row["text"],
        "paper_device": row["device"],
    }


def _row(
    section: str,
    quantity: str,
    subject: str,
    value: float,
    unit: str,
    n: int,
    detail: str = "",
    device: str = "",
    **paper,
) -> dict:
    return {
        "section": section, "quantity": quantity, "subject": subject, "value": value, "unit": unit, "n": n,
        "detail": detail, "device": device, **paper,
    }  # fmt: skip


def timings_table(
    histories: Mapping[str, FilePath],
    litemedsam_predictions: Mapping[str, FilePath],
    nnunet_trainings: Mapping[str, FilePath],
    nnunet_predictions: Mapping[str, FilePath],
    benchmarks: Mapping[str, Mapping[str, FilePath]],
) -> pd.DataFrame:
    """The timings table (TIMING_COLUMNS).

    histories: {fusion: history.csv}; litemedsam_predictions / nnunet_predictions: {method: timings.json};
    nnunet_trainings: {variant: training.json}; benchmarks: {rule: {patient or job key: tsv}}.
    """
    rows = []
    for fusion, path in histories.items():
        history = pd.read_csv(path)
        if history.empty:
            rows.append(_row("Fine-tuning", "seconds per epoch", fusion, math.nan, "s", 0, "no epoch recorded"))
            continue
        epoch, loss = best_epoch(history)
        seconds = history["seconds"].astype(float)
        rows.append(
            _row("Fine-tuning", "seconds per epoch", fusion, float(seconds.mean()), "s", len(history),
                 f"min {seconds.min():.1f}, max {seconds.max():.1f} s; {len(history)} epochs", "",
                 **_paper("finetune_seconds_per_epoch"))
        )  # fmt: skip
        rows.append(
            _row("Fine-tuning", "best epoch", fusion, epoch, "epoch", len(history),
                 f"lowest validation Dice loss {loss:.4f} of {len(history)} epochs", "",
                 **_paper(f"best_epoch_{fusion}"))
        )  # fmt: skip
    for method, path in litemedsam_predictions.items():
        record = json.loads(Path(path).read_text())
        overall, device = record["overall"], record.get("device", "")
        n_slices, n_boxes = int(overall["slices"]), int(overall["boxes"])
        sources = record.get("embeddings_from") or []
        encoded_by = f"; encoded by {' and '.join(sources)}" if sources else ""
        subject = label(method)
        rows.append(
            _row(
                "LiteMedSAM inference",
                "encoder seconds per slice",
                subject,
                overall["encoder_s_per_slice"],
                "s",
                n_slices,
                f"{n_slices} slices{encoded_by}",
                device,
            )
        )
        rows.append(
            _row(
                "LiteMedSAM inference",
                "decoder milliseconds per box",
                subject,
                1000 * overall["decoder_s_per_box"],
                "ms",
                n_boxes,
                f"{n_boxes} boxes",
                device,
            )
        )
        rows.append(
            _row("LiteMedSAM inference", "seconds per box per slice (encoder + decoder)", subject,
                 overall["s_per_box_per_slice"], "s", n_boxes, "all encoder and decoder time / boxes", device,
                 **_paper("seconds_per_box_per_slice"))
        )  # fmt: skip
    for variant, path in nnunet_trainings.items():
        record = json.loads(Path(path).read_text())
        seconds = np.asarray([float(e["seconds"]) for e in record.get("history", [])])
        rows.append(
            _row("nnU-Net", "seconds per epoch", variant, float(seconds.mean()) if seconds.size else math.nan, "s",
                 int(seconds.size), f"{record.get('iterations_per_epoch')} iterations per epoch", record.get("device", ""))
        )  # fmt: skip
    for method, path in nnunet_predictions.items():
        record = json.loads(Path(path).read_text())
        overall = record["overall"]
        tta = "with" if record.get("tta") else "without"
        rows.append(
            _row("nnU-Net", "seconds per case", label(method), overall["s_per_case"], "s", int(overall["cases"]),
                 f"{tta} mirroring", record.get("device", ""))
        )  # fmt: skip
    for rule, title in PER_PATIENT_RULES.items():
        files = benchmarks.get(rule, {})
        if not files:
            continue
        seconds = np.asarray([benchmark_seconds(p) for p in files.values()])
        rows.append(
            _row("Per patient", "seconds per patient", title, float(seconds.mean()), "s", int(seconds.size),
                 f"median {np.median(seconds):.1f}, max {seconds.max():.1f} s (Snakemake benchmark, rule {rule})")
        )  # fmt: skip
    for rule, files in benchmarks.items():
        if rule in PER_PATIENT_RULES:
            continue
        for key, path in files.items():
            rows.append(
                _row(
                    "Whole jobs",
                    "wall seconds",
                    f"{rule} {key}",
                    benchmark_seconds(path),
                    "s",
                    1,
                    "Snakemake benchmark",
                )
            )
    return pd.DataFrame(rows, columns=list(TIMING_COLUMNS))


def devices(*timing_files: FilePath) -> list[str]:
    """The distinct devices named in timings.json / training.json files, sorted."""
    found = set()
    for path in timing_files:
        found.add(str(json.loads(Path(path).read_text()).get("device", "")))
    return sorted(d for d in found if d)
