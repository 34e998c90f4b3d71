"""The cohort: patients per subset and branch, targets per subset, and the patients left out and why.

Sources: ``results/split.tsv`` (patient, subset, ...), ``results/cohort.tsv`` (patient, subset, branches, reason;
``branches`` a comma-separated subset of ct, multimodal, nnunet; ``reason`` why a branch is missing),
``results/methods.tsv`` (which methods ran, and why the others did not; both read by hnseg.cohort) and the box
prompts of each patient (``results/prompts/{p}.json``: its target instances and the 2D targets per slice).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict
from os import PathLike
from pathlib import Path

import pandas as pd

BRANCHES = ("ct", "multimodal", "nnunet")  # the paper's; a study with other fusions has its own (study_branches)
SUBSET_ORDER = ("train", "val", "test")


def study_branches(plans: pd.DataFrame) -> tuple[str, ...]:
    """The study's branches in the order of its methods (results/methods.tsv): its fusions, then nnunet; the paper's
    without a method table."""
    branches = tuple(dict.fromkeys(plans["branch"])) if len(plans) else ()
    return branches or BRANCHES


def read_cohort(
    split_tsv: str | PathLike[str], cohort_tsv: str | PathLike[str] | None, branches: tuple[str, ...] = BRANCHES
) -> pd.DataFrame:
    """patient, subset, branches (a tuple), reason: the cohort table (hnseg.cohort), or, without one, every patient
    of the split in every branch."""
    from hnseg.cohort import read_cohort as read_cohort_rows

    split = pd.read_csv(split_tsv, sep="\t", dtype=str, keep_default_na=False)
    if cohort_tsv is None:
        cohort = split[["patient", "subset"]].assign(branches=[branches] * len(split), reason="")
    else:
        cohort = pd.DataFrame(
            [asdict(row) for row in read_cohort_rows(cohort_tsv)], columns=["patient", "subset", "branches", "reason"]
        )
        missing = sorted(set(split["patient"]) - set(cohort["patient"]))
        if missing:
            raise ValueError(f"{cohort_tsv} lacks patients of {split_tsv}: {', '.join(missing)}; rerun the cohort step")
    unknown = sorted({b for bs in cohort["branches"] for b in bs} - set(branches))
    if unknown:
        raise ValueError(f"{cohort_tsv}: unknown branches {', '.join(unknown)} (expected {', '.join(branches)})")
    return cohort[["patient", "subset", "branches", "reason"]].sort_values("patient", ignore_index=True)


def _subsets(cohort: pd.DataFrame) -> list[str]:
    present = set(cohort["subset"])
    return [s for s in SUBSET_ORDER if s in present] + sorted(present - set(SUBSET_ORDER))


def patients_per_subset(cohort: pd.DataFrame, branches: tuple[str, ...] = BRANCHES) -> pd.DataFrame:
    """Per subset: patients, patients in each branch (column in_<branch>), patients left out of at least one branch,
    and of all."""
    rows = []
    for subset in [*_subsets(cohort), "all"]:
        members = cohort if subset == "all" else cohort[cohort["subset"] == subset]
        row = {"subset": subset, "patients": len(members)}
        for branch in branches:
            row[f"in_{branch}"] = int(sum(branch in bs for bs in members["branches"]))
        row["left_out_of_some"] = int(sum(0 < len(bs) < len(branches) for bs in members["branches"]))
        row["left_out_of_all"] = int(sum(len(bs) == 0 for bs in members["branches"]))
        rows.append(row)
    return pd.DataFrame(rows)


def targets_per_subset(cohort: pd.DataFrame, prompts: Mapping[str, str | PathLike[str]]) -> pd.DataFrame:
    """Per subset, over the patients with prompts: patients with a GTV-T, with a GTV-N, GTV-N instances (3D) and
    2D targets (one box prompt each)."""
    per_patient = {}
    for patient, path in prompts.items():
        record = json.loads(Path(path).read_text())
        instances = list(record.get("instances", {}).values())
        per_patient[patient] = {
            "gtvt": "GTV-T" in instances,
            "gtvn": instances.count("GTV-N"),
            "boxes": sum(len(s["prompts"]) for s in record.get("slices", [])),
        }
    rows = []
    for subset in [*_subsets(cohort), "all"]:
        members = cohort["patient"] if subset == "all" else cohort.loc[cohort["subset"] == subset, "patient"]
        found = [per_patient[p] for p in members if p in per_patient]
        rows.append(
            {
                "subset": subset,
                "patients_with_prompts": len(found),
                "with_gtvt": sum(f["gtvt"] for f in found),
                "with_gtvn": sum(f["gtvn"] > 0 for f in found),
                "gtvn_instances": sum(f["gtvn"] for f in found),
                "targets_2d": sum(f["boxes"] for f in found),
            }
        )
    return pd.DataFrame(rows)


def left_out(cohort: pd.DataFrame, branches: tuple[str, ...] = BRANCHES) -> pd.DataFrame:
    """patient, subset, missing (branches the patient is not in), reason: every patient not in every branch."""
    rows = [
        {
            "patient": r["patient"],
            "subset": r["subset"],
            "missing": ",".join(b for b in branches if b not in r["branches"]),
            "reason": r["reason"],
        }
        for r in cohort.to_dict("records")
        if len(r["branches"]) < len(branches)
    ]
    return pd.DataFrame(rows, columns=["patient", "subset", "missing", "reason"])


METHOD_COLUMNS = ("method", "branch", "runs", "n_train", "n_val", "n_evaluated", "reason", "inputs")


def method_plans(methods_tsv: str | PathLike[str] | None) -> pd.DataFrame:
    """Which methods ran and why the others did not (results/methods.tsv, hnseg.cohort); empty without one."""
    if methods_tsv is None:
        return pd.DataFrame(columns=list(METHOD_COLUMNS))
    from hnseg.cohort import read_method_plans

    rows = [{**asdict(plan), "inputs": ", ".join(plan.inputs)} for plan in read_method_plans(methods_tsv)]
    return pd.DataFrame(rows, columns=list(METHOD_COLUMNS))
