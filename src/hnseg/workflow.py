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


# The sheet's NIfTI columns each import rule reads (hnseg.config.NIFTI_COLUMNS).
IMPORT_COLUMNS = {"ct": ("ct", "labels"), "pet": ("pet",), "mri": ("t1", "t2")}


def nifti_files(row: dict[str, Any], stage: str) -> dict[str, str | None]:
    """The NIfTI files of a patient that import stage `stage` (ct, pet, mri) reads, by column (None where the sheet
    names none); {} for a DICOM patient."""
    if row.get("dicom_dir"):
        return {}
    return {column: row.get(column) for column in IMPORT_COLUMNS[stage]}


def import_sources(row: dict[str, Any], stage: str) -> dict[str, str]:
    """The rule inputs of import stage `stage`: the DICOM folder ({"dicom": ...}), or the NIfTI files that exist.
    A named file that does not exist is left out, so that its import refuses the patient (naming the file) instead
    of the whole workflow stopping on a missing input."""
    if row.get("dicom_dir"):
        return {"dicom": row["dicom_dir"]}
    return {column: path for column, path in nifti_files(row, stage).items() if path and Path(path).is_file()}


def split_from_config(config: dict[str, Any], patients: list[str], strata: dict[str, str] | None = None) -> Split:
    """The split the workflow uses: the frozen file when the config names one, else made fresh."""
    cfg = config["split"]
    frozen = read_split_tsv(cfg["frozen"]) if cfg.get("frozen") else None
    return make_split(patients, seed=cfg["seed"], ratio=cfg["ratio"], strata=strata, frozen=frozen)
