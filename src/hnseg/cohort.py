"""Which patients enter which branch of the study: stage records, the cohort table, the methods that can run.

One patient's bad data must never stop a method for everyone else (DESIGN.md section 8). The per-patient stages that
can refuse a patient (import_ct, import_pet, import_mri, resample_pet, register_mri) therefore always finish: each
writes a *record* (a JSON file, its rule's declared output) whose ``status`` is

- ``ok``: the stage made its volumes (named in the record);
- ``failed``: the stage refused the patient's data; ``reason`` says why, naming the file and the fix;
- ``not_run``: a stage it needs did not succeed; ``reason`` names that stage.

The volumes themselves are not declared outputs (a rule cannot declare files it may legitimately not make). The
workflow's ``cohort`` checkpoint reads every record and writes ``results/cohort.tsv`` (patient, subset, branches,
reason) and ``results/methods.tsv``; every rule after it takes its patients from those tables, so each method runs
on the patients whose data it needs. A bug (any exception other than :class:`~hnseg.errors.InputError`) still fails
its job with a traceback: that is not the patient's fault and must not pass silently.
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hnseg.errors import InputError
from hnseg.runlog import log_to_file

log = logging.getLogger(__name__)

OK, FAILED, NOT_RUN = "ok", "failed", "not_run"

STAGES = ("import_ct", "import_pet", "import_mri", "resample_pet", "register_mri")
# The stages that make each volume on the CT grid, in pipeline order (the first one not ok is the reason given).
VOLUME_STAGES: dict[str, tuple[str, ...]] = {
    "ct": ("import_ct",),
    "pet": ("import_pet", "resample_pet"),
    "t1": ("import_mri", "register_mri"),
    "t2": ("import_mri", "register_mri"),
}
PAPER_VOLUMES = ("ct", "pet", "t1", "t2")
VOLUME_NAMES = {"ct": "CT", "pet": "PET", "t1": "T1w", "t2": "T2w"}
NNUNET = "nnunet"
AUTO = "auto"


def stages_for(volumes: Iterable[str]) -> tuple[str, ...]:
    """The stage records a branch needs whose method reads these volumes (ct is always needed: labels, grid)."""
    stages = [s for v in ("ct", *volumes) for s in VOLUME_STAGES[v]]
    return tuple(dict.fromkeys(stages))


def branch_volumes_of(fusion_volumes: Mapping[str, Sequence[str]], nnunet: Sequence[str] | str = AUTO):
    """branch -> the volumes its methods read: each fusion's (hnseg.fusion.fusion_volumes), and nnunet's (`auto`:
    decided from the cohort, see :func:`nnunet_volumes`)."""
    return {**{f: tuple(v) for f, v in fusion_volumes.items()}, NNUNET: nnunet if nnunet == AUTO else tuple(nnunet)}


# The paper's branches: the ct fusion reads the CT, the multimodal one and nnU-Net CT, PET, T1w and T2w.
PAPER_BRANCH_VOLUMES = branch_volumes_of({"ct": ("ct",), "multimodal": PAPER_VOLUMES}, PAPER_VOLUMES)
BRANCH_STAGES: dict[str, tuple[str, ...]] = {b: stages_for(v) for b, v in PAPER_BRANCH_VOLUMES.items()}


def read_record(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _write_record(path: Path, record: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)


def _remove(paths: Iterable[str | Path]) -> None:
    for path in map(Path, paths):
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def describe(record: Mapping[str, Any]) -> str:
    """One line: which stage, what happened, why."""
    reason = record.get("reason") or ""
    return f"{record.get('stage', '?')} {record.get('status', '?')}" + (f": {reason}" if reason else "")


def run_patient_stage(
    record_path: str | Path,
    log_path: str | Path,
    patient: str,
    stage: str,
    fn: Callable[..., Any],
    *args: Any,
    outputs: Sequence[str | Path] = (),
    requires: Mapping[str, str | Path] | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Run one fallible per-patient stage so that its record always ends written; return the record.

    outputs: the volumes (files or folders) the stage makes. Left-overs of an earlier run are removed first, and
    whatever a refused run wrote is removed again, so a failed stage never leaves stale volumes for a later one.
    requires: records of the stages this one needs ({stage: path}); if one is not ok, the stage is not run.
    On success `fn` may write the record itself (the importers write import.json); otherwise `fn`'s returned dict
    becomes the record. Either way the record gets ``patient``, ``stage``, ``status`` and ``outputs``.
    """
    record_path = Path(record_path)
    terminal = sys.stderr
    logger = log_to_file(log_path)
    _remove([record_path, *outputs])
    for needed, path in (requires or {}).items():
        upstream = read_record(path)
        if upstream.get("status") != OK:
            record = {
                "patient": patient,
                "stage": stage,
                "status": NOT_RUN,
                "reason": f"needs {needed}, which did not succeed ({describe(upstream)})",
            }
            logger.warning("patient %s: %s not run: %s", patient, stage, record["reason"])
            _write_record(record_path, record)
            return record
    try:
        result = fn(*args, **kwargs)
    except InputError as exc:
        _remove(outputs)
        record = {"patient": patient, "stage": stage, "status": FAILED, "reason": str(exc)}
        logger.error("%s", exc)
        logger.error("patient %s is left out of what needs %s (see results/cohort.tsv)", patient, stage)
        print(f"hnseg: patient {patient}, {stage} failed: {exc}", file=terminal)
        _write_record(record_path, record)
        return record
    record = read_record(record_path) if record_path.exists() else dict(result or {})
    missing = [str(p) for p in outputs if not Path(p).exists()]
    if missing:  # a stage that claims success without its volumes is a bug, not bad data
        raise RuntimeError(f"patient {patient}: {stage} returned without writing {', '.join(missing)}")
    record.update(patient=patient, stage=stage, status=OK, outputs=[str(p) for p in outputs])
    _write_record(record_path, record)
    return record


@dataclass(frozen=True)
class CohortRow:
    patient: str
    subset: str
    branches: tuple[str, ...]
    reason: str


def nnunet_volumes(subsets: Mapping[str, str], records: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> tuple:
    """The volumes nnU-Net trains on: those that every patient of its training set has (train and val patients with
    an imported CT): CT always, PET if all of them have it on the CT grid, T1w and T2w if all have both registered.
    The paper's cohort gets its four; a HECKTOR cohort (no MRI) gets CT and PET."""
    training = [p for p, s in subsets.items() if s in ("train", "val") and records[p]["import_ct"].get("status") == OK]
    if not training:
        return PAPER_VOLUMES
    volumes = ["ct"]
    for group in (("pet",), ("t1", "t2")):
        stages = stages_for(group)
        lacking = [p for p in training if any(records[p][s].get("status") != OK for s in stages)]
        if not lacking:
            volumes += group
        elif len(lacking) < len(training):  # a cohort that has the modality, but not for everyone: say who
            log.warning(
                "nnU-Net trains without %s for everyone: %d of %d train and val patients lack it (%s); to keep it and "
                "leave them out of nnU-Net instead, set nnunet.volumes to the list of volumes",
                " and ".join(VOLUME_NAMES.get(v, v) for v in group),
                len(lacking),
                len(training),
                ", ".join(sorted(lacking)[:10]) + (", ..." if len(lacking) > 10 else ""),
            )
    return tuple(volumes)


def cohort_rows(
    subsets: Mapping[str, str],
    records: Mapping[str, Mapping[str, Mapping[str, Any]]],
    branches: Sequence[str],
    branch_stages: Mapping[str, Sequence[str]] | None = None,
) -> list[CohortRow]:
    """The cohort table: per patient (subset from the split), the branches whose stages all succeeded.

    records: patient -> stage -> record. branches: the branches the study runs (its fusion kinds and nnunet).
    branch_stages: the stages each branch needs (default BRANCH_STAGES, the paper's).
    """
    branch_stages = branch_stages or BRANCH_STAGES
    rows = []
    for patient in sorted(subsets):
        entered, reasons = [], {}
        for branch in branches:
            blocking = next(
                (records[patient][s] for s in branch_stages[branch] if records[patient][s].get("status") != OK), None
            )
            if blocking is None:
                entered.append(branch)
            else:
                reasons.setdefault(describe(blocking), []).append(branch)
        reason = "; ".join(f"no {', '.join(missing)}: {why}" for why, missing in reasons.items())
        rows.append(CohortRow(patient, subsets[patient], tuple(entered), reason))
    return rows


def write_cohort(rows: Sequence[CohortRow], path: str | Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        writer.writerow(["patient", "subset", "branches", "reason"])
        for row in rows:
            writer.writerow([row.patient, row.subset, ",".join(row.branches), row.reason])


def read_cohort(path: str | Path) -> list[CohortRow]:
    with open(path, newline="", encoding="utf-8") as fh:
        return [
            CohortRow(r["patient"], r["subset"], tuple(b for b in r["branches"].split(",") if b), r["reason"])
            for r in csv.DictReader(fh, delimiter="\t")
        ]


def members(rows: Iterable[CohortRow], branch: str, subsets: Iterable[str]) -> list[str]:
    """Patients of `branch` in any of `subsets`, sorted."""
    wanted = set(subsets)
    return sorted(r.patient for r in rows if branch in r.branches and r.subset in wanted)


@dataclass(frozen=True)
class MethodPlan:
    method: str
    branch: str
    runs: bool
    n_train: int
    n_val: int
    n_evaluated: int
    reason: str
    inputs: tuple[str, ...] = ()  # the volumes the method reads (ct, pet, t1, t2); nnU-Net's channels in order


def method_branch(method: str) -> tuple[str, bool]:
    """(branch, trained) of an evaluated method name (DESIGN.md section 4)."""
    if method.startswith("litemedsam_"):
        _, variant, fusion = method.split("_", 2)
        return fusion, variant == "finetuned"
    if method.startswith("nnunet_"):
        return "nnunet", True
    raise ValueError(f"unknown method {method!r}")


def method_plans(
    rows: Sequence[CohortRow],
    methods: Sequence[str],
    evaluated_subsets: Sequence[str],
    branch_volumes: Mapping[str, Sequence[str]] | None = None,
) -> list[MethodPlan]:
    """Which methods can run: patients to evaluate on, and for trained methods patients to train and select on.
    branch_volumes: the volumes each branch's methods read (recorded in the plan)."""
    branch_volumes = branch_volumes or {}
    plans = []
    for method in methods:
        branch, trained = method_branch(method)
        n_train = len(members(rows, branch, ["train"]))
        n_val = len(members(rows, branch, ["val"]))
        n_eval = len(members(rows, branch, evaluated_subsets))
        missing = []
        if n_eval == 0:
            missing.append(f"no {'/'.join(evaluated_subsets)} patient")
        if trained and n_train == 0:
            missing.append("no train patient")
        if trained and n_val == 0:
            missing.append("no val patient")
        reason = f"{', '.join(missing)} in the {branch} branch (see results/cohort.tsv)" if missing else ""
        inputs = tuple(branch_volumes.get(branch, ()))
        plans.append(MethodPlan(method, branch, not missing, n_train, n_val, n_eval, reason, inputs))
    return plans


def write_method_plans(plans: Sequence[MethodPlan], path: str | Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        writer.writerow(["method", "branch", "runs", "n_train", "n_val", "n_evaluated", "reason", "inputs"])
        for p in plans:
            writer.writerow(
                [p.method, p.branch, "yes" if p.runs else "no", p.n_train, p.n_val, p.n_evaluated, p.reason,
                 ",".join(p.inputs)]
            )  # fmt: skip


def read_method_plans(path: str | Path) -> list[MethodPlan]:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    counts = ("n_train", "n_val", "n_evaluated")
    return [
        MethodPlan(
            r["method"], r["branch"], r["runs"] == "yes", *(int(r[c]) for c in counts), r["reason"],
            tuple(v for v in (r.get("inputs") or "").split(",") if v),
        )
        for r in rows
    ]  # fmt: skip


def exclusion_summary(rows: Sequence[CohortRow], branches: Sequence[str]) -> list[str]:
    """Lines for the end of a run: per subset, how many patients are left out of at least one branch, and who."""
    lines = []
    for subset in ("train", "val", "test"):
        left_out = [r for r in rows if r.subset == subset and set(branches) - set(r.branches)]
        total = sum(r.subset == subset for r in rows)
        if total:
            lines.append(
                f"{subset}: {len(left_out)} of {total} patients left out of a branch"
                + "".join(f"\n  {r.patient}: {r.reason}" for r in left_out)
            )
    return lines


def build_cohort(
    subsets: Mapping[str, str],
    record_paths: Mapping[str, Sequence[str | Path]],
    branches: Sequence[str],
    methods: Sequence[str],
    evaluated_subsets: Sequence[str],
    cohort_path: str | Path,
    methods_path: str | Path,
    fail_on_exclusion: bool = False,
    branch_volumes: Mapping[str, Sequence[str] | str] | None = None,
) -> list[CohortRow]:
    """The checkpoint's work: read every patient's stage records, write the cohort and method tables.

    record_paths: patient -> record files of the stages in STAGES (any order: each record names its stage).
    branch_volumes: branch -> the volumes its methods read (default the paper's, PAPER_BRANCH_VOLUMES); nnunet's
    may be `auto` (:func:`nnunet_volumes`). methods.tsv records them per method (`inputs`).
    With fail_on_exclusion, a patient left out of any branch is an error that names every such patient.
    """
    records: dict[str, dict[str, dict[str, Any]]] = {}
    for patient, paths in record_paths.items():
        by_stage = {}
        for path in paths:
            record = read_record(path)
            by_stage[record.get("stage", Path(path).stem)] = record
        missing = set(STAGES) - set(by_stage)
        if missing:
            raise ValueError(f"patient {patient}: no record of {', '.join(sorted(missing))} among {list(paths)}")
        records[patient] = by_stage
    volumes = dict(branch_volumes or PAPER_BRANCH_VOLUMES)
    if volumes.get(NNUNET) == AUTO:
        volumes[NNUNET] = nnunet_volumes(subsets, records)
        log.info("nnU-Net trains on %s: what every train and val patient with a CT has", ", ".join(volumes[NNUNET]))
    rows = cohort_rows(subsets, records, branches, {b: stages_for(volumes[b]) for b in branches})
    plans = method_plans(rows, methods, evaluated_subsets, volumes)
    write_cohort(rows, cohort_path)
    write_method_plans(plans, methods_path)
    for row in rows:
        if row.reason:
            log.warning("patient %s (%s) is left out: %s", row.patient, row.subset, row.reason)
    for plan in plans:
        log.info("%s: %s", plan.method, "runs" if plan.runs else f"does not run: {plan.reason}")
    excluded = [r for r in rows if set(branches) - set(r.branches)]
    if fail_on_exclusion and excluded:
        raise InputError(
            f"{len(excluded)} patient(s) left out and cohort.fail_on_exclusion is true: "
            + "; ".join(f"{r.patient}: {r.reason}" for r in excluded)
            + ". Fix their data (the reasons name the file), or set cohort.fail_on_exclusion: false to run without them."
        )
    return rows
