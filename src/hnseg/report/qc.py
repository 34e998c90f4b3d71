"""Registration QC per patient and MR, from each ``results/registered/{p}/qc.json`` (hnseg.registration).

Target registration error over the truth landmarks (before, after rigid, after SyN) where the patient has them
(the synthetic cohort), the mutual information with the CT otherwise (and always), the body overlap and the flags.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from os import PathLike
from pathlib import Path

import pandas as pd

STAGES = ("before", "rigid", "syn")
QC_COLUMNS = (
    "patient", "mr", "status", "initialisation", "tre_before_mm", "tre_rigid_mm", "tre_syn_mm", "tre_syn_max_mm",
    "mi_before", "mi_rigid", "mi_syn", "overlap_registered", "flags",
)  # fmt: skip
MR_NAMES = {"t1": "T1w", "t2": "T2w"}


def qc_table(qc_files: Mapping[str, str | PathLike[str]]) -> pd.DataFrame:
    """One row per patient and registered MR (QC_COLUMNS), patients in the given order; TRE NaN without truth."""
    rows = []
    for patient, path in qc_files.items():
        record = json.loads(Path(path).read_text())
        for name, mr in record.get("mr", {}).items():
            tre = (mr.get("truth") or {}).get("tre", {})
            similarity = mr.get("similarity", {})
            rows.append(
                {
                    "patient": patient,
                    "mr": MR_NAMES.get(name, name),
                    "status": "flagged" if mr.get("flags") else "ok",
                    "initialisation": mr.get("initialisation", ""),
                    **{f"tre_{s}_mm": tre.get(s, {}).get("mean_mm", math.nan) for s in STAGES},
                    "tre_syn_max_mm": tre.get("syn", {}).get("max_mm", math.nan),
                    **{f"mi_{s}": similarity.get(s, {}).get("mi", math.nan) for s in STAGES},
                    "overlap_registered": mr.get("overlap", {}).get("registered", math.nan),
                    "flags": "; ".join(_flag_text(f) for f in mr.get("flags", [])),
                }
            )
    return pd.DataFrame(rows, columns=list(QC_COLUMNS))


def _flag_text(flag) -> str:
    """A flag of qc.json: a [name, explanation] pair or a string."""
    if isinstance(flag, list | tuple) and len(flag) == 2:
        return f"{flag[0]}: {flag[1]}"
    return str(flag)


def flagged_patients(table: pd.DataFrame) -> list[str]:
    return sorted(set(table.loc[table["status"] == "flagged", "patient"]))
