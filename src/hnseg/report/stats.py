"""The paper's claims, tested on paired per-patient DSC (the test subset by default).

Per comparison (method A against method B) and target, the pairs are the patients with a DSC for both methods
(both-empty cases are left out of every statistic, DESIGN.md section 6; an empty prediction counts with DSC 0).
The difference is DSC(A) - DSC(B), so a positive value favours A.

- Median paired difference, with a percentile bootstrap interval over patients: ``resamples`` resamples of the n
  pairs with replacement, drawn as ``numpy.random.default_rng(seed).integers(0, n, size=(resamples, n))`` (row r
  holds the indices of resample r), the median of each resample, and the (1 - level) / 2 and (1 + level) / 2
  percentiles of those medians (linear interpolation, ``numpy.percentile``). Every row starts from the same seed.
- Two-sided Wilcoxon signed-rank test, ``scipy.stats.wilcoxon`` with its defaults (zero differences dropped; exact
  distribution for small samples). All differences zero gives p = 1.
- Holm's step-down correction over every row that has a p-value (every comparison and target of the table).
- Rows with fewer than ``min_pairs`` pairs get no interval and no p-value: "too few pairs" (a bootstrap of two or
  three patients has only a handful of distinct medians to draw from).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hnseg.report.methods import TARGETS
from hnseg.report.scores import rows_of


@dataclass(frozen=True)
class Comparison:
    key: str
    claim: str
    a: str
    b: str


COMPARISONS: tuple[Comparison, ...] = (
    Comparison("finetuned_vs_zeroshot_ct", "fine-tuned vs zero-shot, CT", "litemedsam_finetuned_ct", "litemedsam_zeroshot_ct"),
    Comparison("finetuned_vs_zeroshot_multimodal", "fine-tuned vs zero-shot, multimodal", "litemedsam_finetuned_multimodal", "litemedsam_zeroshot_multimodal"),
    Comparison("multimodal_vs_ct_zeroshot", "multimodal vs CT-only, zero-shot", "litemedsam_zeroshot_multimodal", "litemedsam_zeroshot_ct"),
    Comparison("multimodal_vs_ct_finetuned", "multimodal vs CT-only, fine-tuned", "litemedsam_finetuned_multimodal", "litemedsam_finetuned_ct"),
    Comparison("nnunet_box_vs_nobox", "nnU-Net with vs without box", "nnunet_box", "nnunet_nobox"),
    Comparison("nnunet_box_vs_finetuned_ct", "nnU-Net with box vs fine-tuned LiteMedSAM, CT", "nnunet_box", "litemedsam_finetuned_ct"),
    Comparison("nnunet_box_vs_finetuned_multimodal", "nnU-Net with box vs fine-tuned LiteMedSAM, multimodal", "nnunet_box", "litemedsam_finetuned_multimodal"),
)  # fmt: skip
"""The paper's claims: fine-tuned beats zero-shot, multimodal beats CT-only, the box helps nnU-Net, and nnU-Net with
box beats fine-tuned LiteMedSAM (each fusion)."""

CLAIM_COLUMNS = (
    "comparison", "claim", "method_a", "method_b", "target", "n_pairs", "median_difference", "ci_low", "ci_high",
    "wilcoxon_p", "holm_p", "note",
)  # fmt: skip


def paired_dsc(scores: pd.DataFrame, a: str, b: str, target: str, subset: str) -> pd.DataFrame:
    """Patients with a DSC for both methods: patient, dsc_a, dsc_b, difference (a - b), sorted by patient."""
    left = rows_of(scores, a, subset, target)[["patient", "dsc"]].rename(columns={"dsc": "dsc_a"})
    right = rows_of(scores, b, subset, target)[["patient", "dsc"]].rename(columns={"dsc": "dsc_b"})
    pairs = left.merge(right, on="patient", how="inner").dropna(subset=["dsc_a", "dsc_b"])
    pairs["difference"] = pairs["dsc_a"] - pairs["dsc_b"]
    return pairs.sort_values("patient", ignore_index=True)


def bootstrap_median_ci(
    differences: Sequence[float], resamples: int, seed: int, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the median (see the module docstring for the exact draw)."""
    values = np.asarray(differences, dtype=float)
    if values.size == 0:
        return math.nan, math.nan
    indices = np.random.default_rng(seed).integers(0, values.size, size=(resamples, values.size))
    medians = np.median(values[indices], axis=1)
    low, high = np.percentile(medians, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return float(low), float(high)


def wilcoxon_p(differences: Sequence[float]) -> float:
    """Two-sided Wilcoxon signed-rank p-value (scipy's defaults); 1.0 when every difference is zero."""
    from scipy.stats import wilcoxon

    values = np.asarray(differences, dtype=float)
    if not np.any(values != 0):
        return 1.0
    return float(wilcoxon(values, alternative="two-sided").pvalue)


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm-adjusted p-values in the input order; None entries (no test) stay None and do not count in m."""
    tested = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
    m = len(tested)
    adjusted: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def claims_table(
    scores: pd.DataFrame,
    subset: str = "test",
    resamples: int = 10_000,
    seed: int = 2024,
    min_pairs: int = 6,
    level: float = 0.95,
    comparisons: Sequence[Comparison] = COMPARISONS,
) -> pd.DataFrame:
    """One row per comparison and target (CLAIM_COLUMNS), Holm-corrected over every row with a p-value."""
    rows = []
    for comparison in comparisons:
        for target in TARGETS:
            pairs = paired_dsc(scores, comparison.a, comparison.b, target, subset)
            n = len(pairs)
            differences = pairs["difference"].to_numpy()
            row = {
                "comparison": comparison.key,
                "claim": comparison.claim,
                "method_a": comparison.a,
                "method_b": comparison.b,
                "target": target,
                "n_pairs": n,
                "median_difference": float(np.median(differences)) if n else math.nan,
                "ci_low": math.nan,
                "ci_high": math.nan,
                "wilcoxon_p": None,
                "note": "",
            }
            if n >= min_pairs:
                row["ci_low"], row["ci_high"] = bootstrap_median_ci(differences, resamples, seed, level)
                row["wilcoxon_p"] = wilcoxon_p(differences)
            else:
                row["note"] = f"too few pairs (n = {n} < {min_pairs})" if n else "no pairs"
            rows.append(row)
    for row, adjusted in zip(rows, holm([r["wilcoxon_p"] for r in rows]), strict=True):
        row["holm_p"] = adjusted
    table = pd.DataFrame(rows, columns=list(CLAIM_COLUMNS))
    for column in ("wilcoxon_p", "holm_p"):
        table[column] = table[column].astype(float)  # None -> NaN
    return table
