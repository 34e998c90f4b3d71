"""The report's section on the prompt studies (issue 16), present only when a study has run.

The margin study's table is the study's summary (hnseg.margin_study.summarize_study) of one subset: the mean DSC and
HD95 with their bootstrap intervals per method, target, box rule and margin; its figure is the study's PNG.
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path

import pandas as pd

from hnseg.report.html import EmbeddedFigure, simple_table
from hnseg.report.methods import SUBSET_NAMES, label, ordered

FilePath = str | PathLike[str]
SECTION = ("prompt-studies", "Prompt studies: box margin")


def margin_table(summary_csv: FilePath, subset: str = "test") -> pd.DataFrame:
    """The study's summary rows of `subset` (the first subset it has, if not that one), in the report's order."""
    summary = pd.read_csv(summary_csv)
    if not (summary["subset"] == subset).any() and len(summary):
        subset = str(summary["subset"].iloc[0])
    table = summary[summary["subset"] == subset].copy()
    order = {m: i for i, m in enumerate(ordered(table["method"].unique()))}
    table = table.assign(_m=table["method"].map(order)).sort_values(["_m", "target", "rule", "margin_mm"])
    table = table.drop(columns="_m").reset_index(drop=True)
    table.insert(2, "method_label", table["method"].map(label))
    return table


def _interval(row: dict, metric: str, digits: int) -> str:
    low, high = row[f"{metric}_ci_low"], row[f"{metric}_ci_high"]
    if pd.isna(low):
        return "\u2014"
    return f"{low:.{digits}f} to {high:.{digits}f}"


def margin_section_html(table: pd.DataFrame, figure_png: FilePath, level: float = 0.95) -> str:
    """The figure and the table of the margin study."""
    subset = str(table["subset"].iloc[0]) if len(table) else "test"
    shown = table.assign(
        dsc_ci=[_interval(r, "dsc", 3) for r in table.to_dict("records")],
        hd95_ci=[_interval(r, "hd95_mm", 1) for r in table.to_dict("records")],
    )
    figure = EmbeddedFigure(
        "figure-margin-study",
        Path(figure_png).read_bytes(),
        "DSC and HD95 against the box margin",
        f"DSC (top) and HD95 (bottom) against the box margin, {SUBSET_NAMES.get(subset, subset)} subset: the mean "
        f"over patients with its percentile-bootstrap {level:.0%} interval, per method and target; solid lines "
        "push every side of the tight box out by exactly the margin, dashed lines by the paper's random "
        "0-to-margin draw (drawn per side, target and slice). The trained models are reused, only the boxes change.",
        ["tables/margin_study.csv"],
    )
    headers = {
        "method_label": "Method", "target": "Target", "rule": "Box rule", "margin_mm": "Margin (mm)", "n": "n",
        "dsc_mean": "DSC mean", "dsc_ci": f"DSC {level:.0%} CI", "hd95_mm_mean": "HD95 mean (mm)",
        "hd95_ci": f"HD95 {level:.0%} CI",
    }  # fmt: skip
    note = (
        "Run with <code>snakemake margin_study</code> (README); the main table's boxes are the random 0-20 mm rule "
        "of <code>prompts.margin_mm</code>. At 0 mm both rules give the tight box (predicted once)."
    )
    return (
        figure.html()
        + simple_table("table-margin-study", shown, headers, {"dsc_mean": 3, "hd95_mm_mean": 1})
        + f'<p class="note">{note}</p>'
    )


PROPAGATION_SECTION = ("propagation-study", "Prompt studies: one box per lesion, propagated")
PROTOCOL_NAMES = {
    "oracle": "per-slice oracle (a box on every slice)",
    "A": "A: official 3D inference (middle slice)",
    "B": "B: from the largest cross-section",
}


def propagation_table(summary_csv: FilePath, subset: str = "test") -> pd.DataFrame:
    """The propagation study's summary rows of `subset` (the first subset it has, if not that one)."""
    summary = pd.read_csv(summary_csv)
    if not (summary["subset"] == subset).any() and len(summary):
        subset = str(summary["subset"].iloc[0])
    table = summary[summary["subset"] == subset].copy()
    order = {m: i for i, m in enumerate(ordered(table["method"].unique()))}
    protocols = {p: i for i, p in enumerate(PROTOCOL_NAMES)}
    table = table.assign(_m=table["method"].map(order), _p=table["protocol"].map(protocols))
    table = table.sort_values(["_m", "target", "_p"]).drop(columns=["_m", "_p"]).reset_index(drop=True)
    table.insert(2, "method_label", table["method"].map(label))
    table.insert(4, "protocol_label", table["protocol"].map(lambda p: PROTOCOL_NAMES.get(p, p)))
    return table


def propagation_section_html(table: pd.DataFrame, level: float = 0.95) -> str:
    shown = table.assign(
        dsc_ci=[_interval(r, "dsc", 3) for r in table.to_dict("records")],
        hd95_ci=[_interval(r, "hd95_mm", 1) for r in table.to_dict("records")],
    )
    headers = {
        "method_label": "Method", "target": "Target", "protocol_label": "Prompt", "boxes_per_patient": "Boxes drawn per patient",
        "n": "n", "dsc_mean": "DSC mean", "dsc_ci": f"DSC {level:.0%} CI", "hd95_mm_mean": "HD95 mean (mm)",
        "hd95_ci": f"HD95 {level:.0%} CI",
    }  # fmt: skip
    subset = str(table["subset"].iloc[0]) if len(table) else "test"
    note = (
        f"{SUBSET_NAMES.get(subset, subset).capitalize()} subset. Run with <code>snakemake propagation_study</code> "
        "(README). A person draws one 3D box per lesion (GTV-T, each GTV-N instance) for protocols A and B, and one box "
        "per target and slice for the oracle (the main table's prompts). The propagation reads the boxes only, never "
        "the labels; protocol B starts on the slice the box was drawn on (the lesion's largest cross-section)."
    )
    return (
        simple_table(
            "table-propagation-study", shown, headers, {"dsc_mean": 3, "hd95_mm_mean": 1, "boxes_per_patient": 1}
        )
        + f'<p class="note">{note}</p>'
    )
