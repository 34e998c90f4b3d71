"""Configuration and patients sheet: loading and validation against workflow/schemas/.

Errors name the key (as a dotted path), the value and what is allowed, and raise `hnseg.errors.ConfigError`.
"""

from __future__ import annotations

import csv
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


def _describe(error: jsonschema.ValidationError) -> str:
    schema = error.schema if isinstance(error.schema, dict) else {}
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
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
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


def read_patients_sheet(path: str | Path, stratify_by: str | None = None) -> list[dict[str, Any]]:
    """Read and validate the patients sheet (TSV with a header); returns one dict per row, in file order."""
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
    for line_no, raw in enumerate(rows, start=2):
        row = {k.strip(): (v.strip() if isinstance(v, str) else v) for k, v in raw.items() if k is not None}
        if "weight_kg" in row:
            row["weight_kg"] = _coerce(row["weight_kg"])
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
    return patients


def write_patients_sheet(path: str | Path, rows: list[dict[str, Any]]) -> None:
    columns = ["patient", "dicom_dir", *sorted({k for r in rows for k in r} - {"patient", "dicom_dir"})]
    lines = ["\t".join(columns)]
    lines += ["\t".join("" if r.get(c) is None else str(r[c]) for c in columns) for r in rows]
    Path(path).write_text("\n".join(lines) + "\n")
