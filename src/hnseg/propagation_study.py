"""Propagation study (issue 16): one 3D box per lesion propagated by LiteMedSAM (hnseg.sam.propagate, protocols A
and B) against the per-slice oracle of the main study (a box on every slice of every target), with the number of
boxes a person draws per patient for each.

The oracle's scores are the main study's (results/metrics/{method}.csv, boxes from results/prompts); the protocols'
are scored by the same code (rule evaluate's) on the same patients. Means with percentile-bootstrap intervals over
patients as in the margin study (hnseg.margin_study.bootstrap_mean_ci).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path

import pandas as pd

from hnseg.margin_study import STUDY_METRICS, bootstrap_mean_ci

ORACLE = "oracle"
SUMMARY_COLUMNS = (
    "subset", "method", "target", "protocol", "n", "n_excluded", "boxes_per_patient",
    "dsc_mean", "dsc_ci_low", "dsc_ci_high", "hd95_mm_mean", "hd95_mm_ci_low", "hd95_mm_ci_high",
)  # fmt: skip


def boxes_drawn(prompts: Mapping[str, str | PathLike[str]], lesion_boxes: Mapping[str, str | PathLike[str]]):
    """Boxes a person draws per patient and target: one per target and slice for the oracle (the prompts), one per
    lesion for propagation. Rows: patient, target, protocol ("oracle" or "lesion"), boxes."""
    rows = []
    for patient, path in prompts.items():
        record = json.loads(Path(path).read_text())
        for target in ("GTV-T", "GTV-N"):
            n = sum(p["target"] == target for s in record["slices"] for p in s["prompts"])
            rows.append({"patient": patient, "target": target, "protocol": ORACLE, "boxes": n})
    for patient, path in lesion_boxes.items():
        lesions = json.loads(Path(path).read_text())["lesions"]
        for target in ("GTV-T", "GTV-N"):
            n = sum(b["target"] == target for b in lesions)
            rows.append({"patient": patient, "target": target, "protocol": "lesion", "boxes": n})
    return pd.DataFrame(rows, columns=["patient", "target", "protocol", "boxes"])


def read_scores(tables: Sequence[Mapping[str, str]]) -> pd.DataFrame:
    """Every score, from {"protocol", "method", "path"} (results/metrics-style CSVs), one row per patient and target."""
    frames = []
    for table in tables:
        frame = pd.read_csv(table["path"])
        frame.insert(0, "protocol", table["protocol"])
        frame["method"] = table["method"]
        frames.append(frame)
    if not frames:
        raise ValueError("the propagation study has no score table: no LiteMedSAM method ran")
    return pd.concat(frames, ignore_index=True).sort_values(["subset", "method", "target", "protocol", "patient"])


def summarize(scores: pd.DataFrame, boxes: pd.DataFrame, resamples: int, seed: int, level: float) -> pd.DataFrame:
    rows = []
    keys = ["subset", "method", "target", "protocol"]
    for key, group in scores.groupby(keys, sort=True):
        row = dict(zip(keys, key, strict=True))
        used = group.dropna(subset=["dsc"])
        row |= {"n": len(used), "n_excluded": len(group) - len(used)}
        kind = ORACLE if row["protocol"] == ORACLE else "lesion"
        drawn = boxes[(boxes["protocol"] == kind) & (boxes["target"] == row["target"])]
        drawn = drawn[drawn["patient"].isin(group["patient"])]
        row["boxes_per_patient"] = float(drawn["boxes"].mean()) if len(drawn) else math.nan
        for metric in STUDY_METRICS:
            values = used[metric].to_numpy(dtype=float)
            row[f"{metric}_mean"] = float(values.mean()) if values.size else math.nan
            row[f"{metric}_ci_low"], row[f"{metric}_ci_high"] = bootstrap_mean_ci(values, resamples, seed, level)
        rows.append(row)
    order = {ORACLE: 0, "A": 1, "B": 2}
    table = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    table = table.assign(_p=table["protocol"].map(order)).sort_values(["subset", "method", "target", "_p"])
    return table.drop(columns="_p").reset_index(drop=True)


def write_study(
    tables: Sequence[Mapping[str, str]],
    prompts: Mapping[str, str],
    lesion_boxes: Mapping[str, str],
    out: Mapping[str, str | PathLike[str]],
    *,
    resamples: int,
    seed: int,
    level: float,
) -> pd.DataFrame:
    """Write out["scores"] (every score) and out["summary"]; returns the summary."""
    scores = read_scores(tables)
    summary = summarize(scores, boxes_drawn(prompts, lesion_boxes), resamples, seed, level)
    for key, frame in (("scores", scores), ("summary", summary)):
        Path(out[key]).parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(out[key], index=False)
    return summary
