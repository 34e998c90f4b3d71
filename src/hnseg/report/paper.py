"""The published values of Ren et al. 2024, read from the package data file ``paper_ren2024.json``.

That file names its sources: the test DSC (mean, SD, n = 97) from the authors' ``stats_plot.ipynb`` (the means are
the paper's Results section), and the timings from the paper's text. The report shows these values under their own
label, in columns of their own, never mixed with this run's results.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import pandas as pd

from hnseg.report import published_values_file


@dataclass(frozen=True)
class Published:
    citation: str
    label: str
    dsc_source: str
    dsc_subset: str
    dsc: pd.DataFrame  # method, target, mean, sd, n, note (a key of notes, or "")
    notes: dict[str, str]
    timings_source: str
    timings: pd.DataFrame  # what, value, unit, text, device


def published(path: str | PathLike[str] | None = None) -> Published:
    """The published values, from `path` or else the package's data file."""
    record = json.loads(Path(path or published_values_file()).read_text(encoding="utf-8"))
    dsc = pd.DataFrame(record["dsc"]["rows"])
    dsc["note"] = dsc.get("note", pd.Series(index=dsc.index, dtype=object)).fillna("")
    return Published(
        citation=record["citation"],
        label=record["label"],
        dsc_source=record["dsc"]["source"],
        dsc_subset=record["dsc"]["subset"],
        dsc=dsc,
        notes=dict(record["dsc"]["notes"]),
        timings_source=record["timings"]["source"],
        timings=pd.DataFrame(record["timings"]["rows"]),
    )


def published_timing(what: str) -> dict | None:
    """The published timing row named `what` (see the data file), or None."""
    rows = published().timings
    match = rows[rows["what"] == what]
    return None if match.empty else match.iloc[0].to_dict()
