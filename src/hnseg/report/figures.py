"""Figure 1 in the paper's style: violins of DSC and HD95 per method, one panel per metric and target, every
patient a point on top (a cross where one mask is empty: DSC 0, worst-case HD95). A method with no rows, or with one, leaves a labelled gap where its violin would be.

The points are drawn by matplotlib (``gid`` "points:<method>" and, for worst-case HD95 values of empty
predictions, "worst:<method>") with a deterministic spread, so that every point can be traced to its row.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.transforms import blended_transform_factory

from hnseg.report.methods import TARGETS, short_label
from hnseg.report.scores import USED

METRICS = {"dsc": "DSC", "hd95_mm": "HD95 (mm)"}
POINT_SPREAD = 0.12
"""Half-width of the horizontal spread of the points of one method, in units of the distance between methods."""
PALETTE = {
    "litemedsam_zeroshot_ct": "#c6dbef",
    "litemedsam_zeroshot_multimodal": "#fdd0a2",
    "litemedsam_finetuned_ct": "#6baed6",
    "litemedsam_finetuned_multimodal": "#fd8d3c",
    "nnunet_nobox": "#c7e9c0",
    "nnunet_box": "#74c476",
    "nnunet_nobox_boxmasked": "#a1d99b",
}


def violin_data(scores: pd.DataFrame, subset: str, methods: Sequence[str]) -> pd.DataFrame:
    """The points of Figure 1, one row per method, target, metric and patient (cases that enter the statistics)."""
    used = scores[(scores["subset"] == subset) & scores[USED] & scores["method"].isin(methods)]
    long = used.melt(
        id_vars=["method", "subset", "target", "patient", "hd95_worst_case"],
        value_vars=list(METRICS),
        var_name="metric",
        value_name="value",
    )
    long["worst_case"] = long["hd95_worst_case"]  # one mask empty: DSC 0 and HD95 the image diagonal
    order = {m: i for i, m in enumerate(methods)}
    long = long.assign(_m=long["method"].map(order), _t=long["target"].map({t: i for i, t in enumerate(TARGETS)}))
    long = long.sort_values(["metric", "_t", "_m", "patient"]).drop(columns=["_m", "_t", "hd95_worst_case"])
    return long[["method", "subset", "target", "metric", "patient", "value", "worst_case"]].reset_index(drop=True)


def colour(method: str) -> str:
    """The method's colour: the paper's methods their own, LiteMedSAM on another fusion purple (light zero-shot,
    dark fine-tuned), anything else grey."""
    if method in PALETTE:
        return PALETTE[method]
    if method.startswith("litemedsam_"):
        return "#dadaeb" if method.startswith("litemedsam_zeroshot_") else "#9e9ac8"
    return "#bdbdbd"


def point_offsets(n: int) -> np.ndarray:
    """Horizontal offsets of n points of one method: evenly spread over +-POINT_SPREAD (0 for one point)."""
    return np.linspace(-POINT_SPREAD, POINT_SPREAD, n) if n > 1 else np.zeros(n)


def _panel(ax, data: pd.DataFrame, methods: Sequence[str], metric: str) -> None:
    with_violin = [m for m in methods if (data["method"] == m).sum() >= 2]
    if with_violin:
        sns.violinplot(
            data=data[data["method"].isin(with_violin)],
            x="method",
            y="value",
            order=list(methods),
            hue="method",
            hue_order=list(methods),
            palette={m: colour(m) for m in methods},
            cut=0,
            inner="quart",
            density_norm="width",
            linewidth=0.8,
            legend=False,
            ax=ax,
        )
    label_at = blended_transform_factory(ax.transData, ax.transAxes)
    for x, method in enumerate(methods):
        rows = data[data["method"] == method].sort_values("patient")
        n = len(rows)
        if n:
            xs = x + point_offsets(n)
            worst = rows["worst_case"].to_numpy(bool)
            ax.scatter(
                xs[~worst], rows["value"].to_numpy()[~worst], s=10, color="black", zorder=3, gid=f"points:{method}"
            )
            if worst.any():
                ax.scatter(
                    xs[worst], rows["value"].to_numpy()[worst], s=28, marker="x", color="#cb181d", zorder=3,
                    gid=f"worst:{method}",
                )  # fmt: skip
        if n == 0:
            ax.text(
                x, 0.5, "no rows", transform=label_at, ha="center", va="center", rotation=90, fontsize=8, color="0.35"
            )
        # above the panel, where no point can be (a label inside it covered the one point it explained)
        header = f"n={n}\nno violin" if n == 1 else f"n={n}"
        ax.text(x, 1.01, header, transform=label_at, ha="center", va="bottom", fontsize=7, color="0.25")
    ax.set_xticks(range(len(methods)), [short_label(m) for m in methods], fontsize=8)
    ax.set_xlim(-0.6, len(methods) - 0.4)
    ax.set_xlabel("")
    ax.set_ylabel(METRICS[metric])
    if metric == "dsc":
        ax.set_ylim(-0.03, 1.03)
    else:
        top = float(data["value"].max()) if len(data) else 1.0
        ax.set_ylim(0, max(top, 1.0) * 1.08)
    ax.grid(axis="y", color="0.9", linewidth=0.6)
    ax.set_axisbelow(True)


def violin_figure(data: pd.DataFrame, methods: Sequence[str], title: str) -> Figure:
    """The figure of :func:`violin_data`'s rows: rows DSC and HD95, columns the targets."""
    fig, axes = plt.subplots(
        len(METRICS), len(TARGETS), figsize=(6.2 * len(TARGETS), 3.6 * len(METRICS)), squeeze=False
    )
    for i, metric in enumerate(METRICS):
        for j, target in enumerate(TARGETS):
            ax = axes[i][j]
            _panel(ax, data[(data["metric"] == metric) & (data["target"] == target)], methods, metric)
            ax.set_title(f"{target}: {METRICS[metric].split(' ')[0]}", fontsize=10, pad=24)
    if data["worst_case"].any():
        fig.text(
            0.01,
            0.005,
            "x: one mask empty (an empty prediction): DSC 0, HD95 set to the image diagonal (worst case)",
            fontsize=8,
            color="#cb181d",
        )
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def save_figure(fig: Figure, stem: str | Path, dpi: int = 150) -> list[Path]:
    """Write `stem`.png and `stem`.svg; returns their paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    fig.savefig(paths[0], dpi=dpi)
    fig.savefig(paths[1], metadata={"Date": None})
    plt.close(fig)
    return paths
