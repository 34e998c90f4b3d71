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
