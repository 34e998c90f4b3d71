"""The per-patient metric tables of the evaluate stage (``results/metrics/{method}.csv``) as one frame."""

from __future__ import annotations

from collections.abc import Mapping
from os import PathLike

import pandas as pd

from hnseg.metrics import SCORE_COLUMNS, read_scores

USED = "used"
"""Column added to the frame: False for rows left out of every statistic (ground truth and prediction both empty:
status "both_empty", DESIGN.md section 6), True otherwise."""


def read_metric_tables(paths: Mapping[str, str | PathLike[str]]) -> pd.DataFrame:
    """One frame of every method's rows ({method: csv path}); a table with a header only gives no rows.

    Each file must hold only its own method's rows. Columns: those of ``hnseg.metrics.SCORE_COLUMNS``, plus
    :data:`USED`.
    """
    frames = []
    for method, path in paths.items():
        rows = read_scores(path)
        wrong = sorted({r["method"] for r in rows} - {method})
        if wrong:
            raise ValueError(f"{path} should hold the rows of {method} only, it also holds {', '.join(wrong)}")
        frames.append(pd.DataFrame(rows, columns=list(SCORE_COLUMNS)))
    scores = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(SCORE_COLUMNS))
    for column in ("dsc", "hd95_mm", "nsd", "volume_gt_ml", "volume_pred_ml"):
        scores[column] = scores[column].astype(float)
    scores["hd95_worst_case"] = scores["hd95_worst_case"].astype(bool)
    scores[USED] = scores["status"] != "both_empty"
    return scores


def rows_of(scores: pd.DataFrame, method: str, subset: str, target: str) -> pd.DataFrame:
    """The rows of one method, subset and target that enter the statistics (both-empty cases left out)."""
    mask = (scores["method"] == method) & (scores["subset"] == subset) & (scores["target"] == target) & scores[USED]
    return scores[mask]
