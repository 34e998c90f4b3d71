"""Configuration and patients sheet: loading and validation against workflow/schemas/.

Errors name the key (as a dotted path), the value and what is allowed, and raise `hnseg.errors.ConfigError`.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from hnseg.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_DIR = REPO_ROOT / "workflow" / "schemas"


def _schema(name: str) -> dict:
    return yaml.safe_load((SCHEMA_DIR / name).read_text())


def _key_path(error: jsonschema.ValidationError) -> str:
    parts = []
    for p in error.absolute_path:
        parts.append(f"[{p}]" if isinstance(p, int) else (f".{p}" if parts else str(p)))
    return "".join(parts) or "(top level)"


def _innermost(error: jsonschema.ValidationError) -> jsonschema.ValidationError:
    """For a value that fits none of several forms (oneOf/anyOf, e.g. fusion.kinds as a list or a mapping), the
    error inside the form it has: not "is not of type" the other form, the deepest."""
    if error.validator in ("oneOf", "anyOf") and error.context:
        inside = [
            c for c in error.context if c.validator != "type" or list(c.absolute_path) != list(error.absolute_path)
        ]
        if inside:
            return _innermost(max(inside, key=lambda c: len(c.absolute_path)))
    return error


def _describe(error: jsonschema.ValidationError) -> str:
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "not":
        return f"{error.instance!r} is reserved (the name of a branch of the study); choose another name"
    if error.validator == "enum":
        allowed = ", ".join(repr(v) for v in schema.get("enum", []))
        return f"{error.instance!r} is not allowed; allowed values: {allowed}"
    if error.validator == "required":
        return error.message.replace("is a required property", "is missing (config/config.yaml defines every key)")
    if error.validator == "additionalProperties":
        known = ", ".join(sorted(schema.get("properties", {})))
        return f"{error.message.split('(')[-1].rstrip(')')}; known keys here: {known}"
    return error.message


def validate_config(config: dict[str, Any], schema_name: str = "config.schema.yaml") -> dict[str, Any]:
    """Validate a (merged) workflow config; returns it unchanged or raises ConfigError naming the key."""
    validator = jsonschema.Draft202012Validator(_schema(schema_name))
    errors = sorted(map(_innermost, validator.iter_errors(config)), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"  - config key '{_key_path(e)}': {_describe(e)}" for e in errors]
        raise ConfigError(
            "invalid configuration (config/config.yaml, plus any --configfile):\n"
            + "\n".join(lines)
            + "\nSee config/config.yaml for the documented keys and workflow/schemas/config.schema.yaml for the rules."
        )
    ratio = config["split"]["ratio"]
    if sum(ratio) <= 0:
        raise ConfigError(f"config key 'split.ratio': {ratio} sums to 0; give three numbers such as [470, 94, 97]")
    return config


def load_config(*paths: str | Path) -> dict[str, Any]:
    """Load YAML files, each deep-merged over the previous one (like snakemake --configfile), and validate."""
    merged: dict[str, Any] = {}
    for path in paths:
        merged = deep_merge(merged, yaml.safe_load(Path(path).read_text()) or {})
    return validate_config(merged)


def deep_merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _coerce(value: str) -> Any:
    if value == "":
        return None
    try:
        return float(value)
    except ValueError:
        return value


NIFTI_COLUMNS = ("ct", "pet", "t1", "t2", "labels")
"""Columns that name a patient's NIfTI files instead of a DICOM folder (ct and labels required, the others optional);
relative paths are relative to the sheet's folder."""


def _sources(row: dict[str, Any], sheet: Path) -> str | None:
    """Check a row's input columns (a DICOM folder or NIfTI files) and make its NIfTI paths absolute; the problem
    with the row, or None. Empty cells are dropped (a sheet may mix DICOM and NIfTI patients)."""
    for column in ("dicom_dir", *NIFTI_COLUMNS):
        if row.get(column) in ("", None):
            row.pop(column, None)
    nifti = [c for c in NIFTI_COLUMNS if c in row]
    if "dicom_dir" in row and nifti:
        return f"gives both dicom_dir and NIfTI files ({', '.join(nifti)}); keep one of them"
    if "dicom_dir" not in row:
        missing = [c for c in ("ct", "labels") if c not in row]
        if not nifti:
            return (
                "gives neither dicom_dir (a DICOM folder) nor NIfTI files (columns ct and labels, optional pet, t1, t2)"
            )
        if missing:
            return f"names NIfTI files but no {' and no '.join(missing)}: a NIfTI patient needs ct and labels"
        for column in nifti:
            row[column] = os.path.normpath(sheet.parent / row[column])  # as is when absolute
    return None


def read_patients_sheet(path: str | Path, stratify_by: str | None = None) -> list[dict[str, Any]]:
    """Read and validate the patients sheet (TSV with a header); returns one dict per row, in file order.

    Each row gives a DICOM folder (`dicom_dir`) or NIfTI files (`ct`, `labels`, optional `pet`, `t1`, `t2`,
    relative to the sheet's folder, made absolute here). A row that gives neither, both, or NIfTI files without ct
    or labels is refused; the error lists every such row."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"no patients sheet at {path}. Create it as a tab-separated file with the columns "
            "'patient' (pseudonymous id) and 'dicom_dir' (optional 'weight_kg'), see config/README.md; "
            "or run the synthetic demo instead: snakemake --configfile config/demo.yaml"
        )
    with path.open(newline="") as fh:
        rows = [r for r in csv.DictReader((ln for ln in fh if not ln.startswith("#")), delimiter="\t")]
    if not rows:
        raise ConfigError(f"patients sheet {path} has no rows; it needs a header and one row per patient")
    validator = jsonschema.Draft202012Validator(_schema("patients.schema.yaml"))
    patients: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    bad_rows = []
    for line_no, raw in enumerate(rows, start=2):
        row = {k.strip(): (v.strip() if isinstance(v, str) else v) for k, v in raw.items() if k is not None}
        if "weight_kg" in row:
            row["weight_kg"] = _coerce(row["weight_kg"])
        problem = _sources(row, path)
        if problem:
            bad_rows.append(f"  line {line_no} (patient {row.get('patient')!r}) {problem}")
            continue
        for error in validator.iter_errors(row):
            raise ConfigError(f"patients sheet {path}, line {line_no}, column '{_key_path(error)}': {_describe(error)}")
        if row["patient"] in seen:
            raise ConfigError(
                f"patients sheet {path}, line {line_no}: patient id {row['patient']!r} repeats line "
                f"{seen[row['patient']]}; ids must be unique"
            )
        if stratify_by is not None and stratify_by not in row:
            raise ConfigError(
                f"config key 'split.stratify_by' names the column {stratify_by!r}, which the patients sheet "
                f"{path} does not have (columns: {', '.join(row)})"
            )
        seen[row["patient"]] = line_no
        patients.append(row)
    if bad_rows:
        raise ConfigError(
            f"patients sheet {path}: {len(bad_rows)} row(s) name no usable input:\n"
            + "\n".join(bad_rows)
            + "\nEach row needs dicom_dir, or ct and labels (NIfTI); see config/README.md"
        )
    return patients


def write_patients_sheet(path: str | Path, rows: list[dict[str, Any]]) -> None:
    present = {k for r in rows for k in r}
    inputs = [c for c in ("dicom_dir", *NIFTI_COLUMNS) if c in present]
    columns = ["patient", *inputs, *sorted(present - {"patient", *inputs})]
    lines = ["\t".join(columns)]
    lines += ["\t".join("" if r.get(c) is None else str(r[c]) for c in columns) for r in rows]
    Path(path).write_text("\n".join(lines) + "\n")
