"""Parse-time helpers for the Snakemake workflow (called from workflow/rules/common.smk).

Pure functions of the config and the patients sheet, so the DAG is known when the workflow is parsed and the
same answers come out of the CLI and the tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hnseg.config import read_patients_sheet
from hnseg.split import Split, make_split, read_split_tsv

SYNTHETIC_ROOT = Path("resources/synthetic")

MALLOC_TUNING = {"MALLOC_MMAP_THRESHOLD_": str(4 << 30), "MALLOC_TRIM_THRESHOLD_": str(16 << 30)}
"""glibc malloc settings for the job processes. By default glibc serves every buffer above 32 MB (PyTorch's im2col
buffers of the TinyViT convolutions among them) with a fresh mmap and unmaps it when freed, so every encoder call
page-faults about 1.5 GB back in: on two CPU cores that was 0.75-0.9 s of system time per slice, beside 1.3-1.5 s
of computation (benchmarks/RESULTS.md). Served from the heap and kept there, the same calls page-fault almost never.
Read by glibc when a process starts, so they are set in the workflow's environment, which every job inherits."""


def tune_job_environment(environ: dict[str, str]) -> None:
    """Put :data:`MALLOC_TUNING` into ``environ`` (os.environ of the Snakemake process), keeping a user's values."""
    for name, value in MALLOC_TUNING.items():
        environ.setdefault(name, value)


def synthetic_dicom_dir(patient: str) -> str:
    return str(SYNTHETIC_ROOT / "dicom" / patient)


def synthetic_truth_dir(patient: str) -> str:
    return str(SYNTHETIC_ROOT / "truth" / patient)


def cohort_patients(config: dict[str, Any]) -> list[dict[str, Any]]:
    """One dict per patient (patient, dicom_dir, ...): the synthetic cohort's, or the sheet's rows."""
    if config["synthetic"]["enabled"]:
        from hnseg.synthetic import patient_ids

        return [
            {"patient": p, "dicom_dir": synthetic_dicom_dir(p)} for p in patient_ids(config["synthetic"]["n_patients"])
        ]
    return read_patients_sheet(config["patients"], config["split"].get("stratify_by"))


def split_from_config(config: dict[str, Any], patients: list[str], strata: dict[str, str] | None = None) -> Split:
    """The split the workflow uses: the frozen file when the config names one, else made fresh."""
    cfg = config["split"]
    frozen = read_split_tsv(cfg["frozen"]) if cfg.get("frozen") else None
    return make_split(patients, seed=cfg["seed"], ratio=cfg["ratio"], strata=strata, frozen=frozen)
