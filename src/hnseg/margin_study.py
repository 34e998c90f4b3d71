"""Margin study (issue 16): how much a sloppier box costs each box-prompted method.

For every margin m of `studies.margins.margins_mm` and each box rule, every target on every slice gets a box from
its tight box (hnseg.prompts.make_prompts, same seed and targets as the main prompts):

- `exact`: each side pushed out by exactly m mm (m / spacing pixels, rounded down, clipped to the image);
- `random`: the paper's rule, each side pushed out by its own uniform draw in 0..m mm. Draws are seeded by
  (seed, patient, slice, instance) as the main prompts are, so a larger m scales the same draws (common random
  numbers: the curves differ by the margin, not by the luck of the draw).

At m = 0 both rules give the tight box: the study predicts it once (as `exact`) and counts it for both rules.

The zero-shot and fine-tuned LiteMedSAM of every fusion and nnU-Net with its box channel predict from these boxes
(the trained models, reused; LiteMedSAM reads the cached embeddings, so a condition costs decoder time only), and
hnseg.metrics scores them. This module holds what is not a reused stage: the conditions, the table of every score,
the summary with percentile-bootstrap intervals of the mean over patients, and the figure.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd

BOX_RULES = ("exact", "random")
STUDY_METRICS = {"dsc": "DSC", "hd95_mm": "HD95 (mm)"}
LINE_COLOURS = {
    "litemedsam_zeroshot_ct": "#6baed6",
    "litemedsam_zeroshot_multimodal": "#fd8d3c",
    "litemedsam_finetuned_ct": "#08519c",
    "litemedsam_finetuned_multimodal": "#a63603",
    "nnunet_box": "#238b45",
}
"""Lines of the figure: light zero-shot and dark fine-tuned (blue CT, orange multimodal), green nnU-Net."""
SUMMARY_COLUMNS = (
    "subset", "method", "target", "rule", "margin_mm", "n", "n_excluded",
    "dsc_mean", "dsc_ci_low", "dsc_ci_high", "hd95_mm_mean", "hd95_mm_ci_low", "hd95_mm_ci_high",
)  # fmt: skip


def margin_name(margin_mm: float) -> str:
    """The margin as it appears in paths and tables: 0, 5, 2.5 (no trailing zeros)."""
    value = float(margin_mm)
    if value < 0 or not math.isfinite(value):
        raise ValueError(f"a box margin must be a finite number of mm >= 0, got {margin_mm!r}")
    return f"{value:g}"


def margin_range(rule: str, margin_mm: float) -> tuple[float, float]:
    """The (low, high) range each side's margin is drawn from under `rule` (hnseg.prompts.perturb_box)."""
    m = float(margin_mm)
    if rule == "exact":
        return (m, m)
    if rule == "random":
        return (0.0, m)
    raise ValueError(f"unknown box rule {rule!r}: expected one of {', '.join(BOX_RULES)}")


def conditions(margins_mm: Iterable[float], rules: Sequence[str] = BOX_RULES) -> list[tuple[str, str]]:
    """The (rule, margin name) pairs to predict, in order; the random rule at 0 mm is the exact one, predicted once."""
    names = sorted({margin_name(m) for m in margins_mm}, key=float)
    unknown = sorted(set(rules) - set(BOX_RULES))
    if unknown:
        raise ValueError(f"unknown box rules {unknown}: expected some of {', '.join(BOX_RULES)}")
    return [(rule, m) for rule in rules for m in names if not (rule == "random" and float(m) == 0.0)]


def read_study_scores(
    tables: Sequence[Mapping[str, str]], margins_mm: Iterable[float], rules: Sequence[str] = BOX_RULES
) -> pd.DataFrame:
    """Every per-patient score of the study, one row per rule, margin, method, patient and target.

    `tables` lists {"rule", "margin", "method", "path"} with path a results/metrics-style CSV (hnseg.metrics).
    Rows of the exact rule at 0 mm are counted for the random rule at 0 mm too (the same boxes)."""
    frames = []
    for table in tables:
        frame = pd.read_csv(table["path"])
        frame.insert(0, "margin_mm", float(table["margin"]))
        frame.insert(0, "rule", table["rule"])
        frame["method"] = table["method"]
        frames.append(frame)
    if not frames:
        raise ValueError("the margin study has no score table: no box-prompted method ran")
    scores = pd.concat(frames, ignore_index=True)
    if "random" in rules and any(float(m) == 0.0 for m in margins_mm):
        tight = scores[(scores["rule"] == "exact") & (scores["margin_mm"] == 0.0)].assign(rule="random")
        scores = pd.concat([scores, tight], ignore_index=True)
    order = ["subset", "method", "target", "rule", "margin_mm", "patient"]
    return scores.sort_values(order, ignore_index=True)


def bootstrap_mean_ci(values: Sequence[float], resamples: int, seed: int, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean: `resamples` draws of the values with replacement, from `seed`."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return math.nan, math.nan
    indices = np.random.default_rng(seed).integers(0, x.size, size=(resamples, x.size))
    means = x[indices].mean(axis=1)
    low, high = np.percentile(means, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return float(low), float(high)


def summarize_study(scores: pd.DataFrame, resamples: int, seed: int, level: float = 0.95) -> pd.DataFrame:
    """Mean DSC and HD95 with their percentile-bootstrap intervals over patients, per subset, method, target, rule
    and margin. Cases where both masks are empty (DSC undefined) are excluded and counted, as in the main summary;
    every interval starts from the same seed."""
    rows = []
    keys = ["subset", "method", "target", "rule", "margin_mm"]
    for key, group in scores.groupby(keys, sort=True):
        used = group.dropna(subset=["dsc"])
        row = dict(zip(keys, key, strict=True))
        row |= {"n": len(used), "n_excluded": len(group) - len(used)}
        for metric in STUDY_METRICS:
            values = used[metric].to_numpy(dtype=float)
            row[f"{metric}_mean"] = float(values.mean()) if values.size else math.nan
            row[f"{metric}_ci_low"], row[f"{metric}_ci_high"] = bootstrap_mean_ci(values, resamples, seed, level)
        rows.append(row)
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))


def margin_figure(summary: pd.DataFrame, subset: str, title: str):
    """DSC (top) and HD95 (bottom) against the margin, GTV-T left and GTV-N right; a line per method and rule
    (solid exact, dashed random), bars the bootstrap intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hnseg.report.methods import TARGETS, label, ordered

    data = summary[summary["subset"] == subset]
    methods = ordered(data["method"].unique())
    fig, axes = plt.subplots(2, len(TARGETS), figsize=(5.2 * len(TARGETS), 7.4), squeeze=False, sharex=True)
    styles = {"exact": "-", "random": "--"}
    for col, target in enumerate(TARGETS):
        for row, (metric, name) in enumerate(STUDY_METRICS.items()):
            ax = axes[row, col]
            for method in methods:
                for rule, style in styles.items():
                    line = data[(data["method"] == method) & (data["target"] == target) & (data["rule"] == rule)]
                    line = line.sort_values("margin_mm")
                    if line.empty:
                        continue
                    y = line[f"{metric}_mean"].to_numpy(float)
                    err = np.vstack([y - line[f"{metric}_ci_low"], line[f"{metric}_ci_high"] - y])
                    ax.errorbar(
                        line["margin_mm"] + (0.4 if rule == "random" else 0.0),
                        y,
                        yerr=np.nan_to_num(np.clip(err, 0, None)),
                        linestyle=style,
                        marker="o" if rule == "exact" else "s",
                        markersize=3.5,
                        capsize=2,
                        color=LINE_COLOURS.get(method),
                        label=f"{label(method)}, {rule}",
                        gid=f"line:{method}:{target}:{metric}:{rule}",
                    )
            ax.set_title(f"{target}: {name}", fontsize=10)
            ax.set_ylabel(name)
            if metric == "dsc":
                ax.set_ylim(0, 1)
            if row == len(STUDY_METRICS) - 1:
                ax.set_xlabel("box margin (mm)")
            ax.grid(alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    for ax in axes.flat[1:]:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.05 + 0.018 * math.ceil(len(labels) / 2), 1, 0.97))
    return fig


def write_study(
    tables: Sequence[Mapping[str, str]],
    margins_mm: Iterable[float],
    rules: Sequence[str],
    out: Mapping[str, str | PathLike[str]],
    *,
    resamples: int,
    seed: int,
    level: float,
    subset: str = "test",
    dpi: int = 150,
) -> pd.DataFrame:
    """Write out["scores"] (every score), out["summary"] and the figure out["png"], out["svg"]; returns the summary."""
    margins = list(margins_mm)
    scores = read_study_scores(tables, margins, rules)
    summary = summarize_study(scores, resamples, seed, level)
    for key, frame in (("scores", scores), ("summary", summary)):
        Path(out[key]).parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(out[key], index=False)
    shown = subset if (summary["subset"] == subset).any() else (summary["subset"].iloc[0] if len(summary) else subset)
    fig = margin_figure(summary, shown, f"Box margin study, {shown} subset (mean, {level:.0%} bootstrap interval)")
    for key in ("png", "svg"):
        fig.savefig(out[key], dpi=dpi)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return summary
