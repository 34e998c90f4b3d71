"""The main table per subset: DSC and HD95 per method and target, and the published values beside it.

Our numbers come from the per-patient rows through ``hnseg.metrics.summarize``, the same function that writes
``results/metrics/summary.csv`` (checked against it by :func:`check_against_summary`). The published values sit in
``paper_*`` columns of their own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from os import PathLike

import pandas as pd

from hnseg.metrics import summarize
from hnseg.report.methods import TARGETS
from hnseg.report.paper import Published

OURS = ("n", "n_excluded", "dsc_mean", "dsc_sd", "hd95_mm_mean", "hd95_mm_sd", "hd95_mm_median", "n_hd95_worst_case")
"""Our columns of the main table (definitions: ``hnseg.metrics.summarize``)."""
PAPER = ("paper_dsc_mean", "paper_dsc_sd", "paper_n", "paper_note")
_COUNTS = ("n", "n_excluded", "n_hd95_worst_case")


def summary_table(
    scores: pd.DataFrame, subset: str, methods: Sequence[str], not_run: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """One row per method (in the given order) and target: our OURS columns (n = 0 and NaN for no rows), and a note
    saying why a method did not run (`not_run`: {method: reason}, from results/methods.tsv)."""
    rows = []
    for method in methods:
        for target in TARGETS:
            members = scores[(scores["method"] == method) & (scores["subset"] == subset) & (scores["target"] == target)]
            row = {"method": method, "subset": subset, "target": target, "note": ""}
            if members.empty:
                row |= {c: (0 if c in _COUNTS else math.nan) for c in OURS}
            else:
                (summary,) = summarize(members.drop(columns=["method", "subset"]).to_dict("records"))
                row |= {c: summary[c] for c in OURS}
            if members.empty:
                row["note"] = f"did not run: {not_run[method]}" if method in (not_run or {}) else "no rows"
            rows.append(row)
    table = pd.DataFrame(rows, columns=["method", "subset", "target", *OURS, "note"])
    return table.astype({c: int for c in _COUNTS})


def main_table(
    scores: pd.DataFrame,
    subset: str,
    methods: Sequence[str],
    paper: Published,
    not_run: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """:func:`summary_table`, plus the published DSC in PAPER columns when `subset` is the paper's (test)."""
    table = summary_table(scores, subset, methods, not_run)
    if subset != paper.dsc_subset:
        return table
    published = paper.dsc.rename(
        columns={"mean": "paper_dsc_mean", "sd": "paper_dsc_sd", "n": "paper_n", "note": "paper_note"}
    )
    table = table.merge(published[["method", "target", *PAPER]], on=["method", "target"], how="left")
    table["paper_n"] = table["paper_n"].astype("Int64")
    table["paper_note"] = table["paper_note"].fillna("")
    return table


def _same(a: float, b: float) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return math.isclose(float(a), float(b), rel_tol=1e-5, abs_tol=1e-9)


def check_against_summary(tables: Sequence[pd.DataFrame], summary_csv: str | PathLike[str]) -> None:
    """Raise ValueError unless every group of the tables with rows equals its row of the metrics summary.

    The summary is written by the summarize_metrics stage from the same per-patient tables, with 6 significant
    digits; a difference means one of the two is stale (rerun the workflow) or the inputs were mixed by hand.
    """
    summary = pd.read_csv(summary_csv)
    summary = summary.set_index(["method", "subset", "target"])
    problems = []
    for table in tables:
        for row in table.to_dict("records"):
            key = (row["method"], row["subset"], row["target"])
            if key not in summary.index:
                if row["n"] + row["n_excluded"] > 0:
                    problems.append(f"{'/'.join(key)}: in the per-patient tables, missing from the summary")
                continue
            theirs = summary.loc[key]
            for column in OURS:
                ours, other = row[column], theirs[column]
                equal = int(ours) == int(other) if column in _COUNTS else _same(float(ours), float(other))
                if not equal:
                    problems.append(
                        f"{'/'.join(key)} {column}: {ours} from the per-patient tables, {other} in the summary"
                    )
    if problems:
        raise ValueError(
            f"the per-patient metric tables and {summary_csv} disagree (one is stale: rerun the evaluate and "
            "summarize_metrics stages):\n  " + "\n  ".join(problems)
        )
