"""Time and memory of the DICOM import of one patient (CT + labels, PET in SUV, T1w and T2w).

    python benchmarks/import.py [--size realistic] [--threads 2] [--repeat 2]

Generates one synthetic patient of the given size (cached in --cache), then runs each import step in a fresh
process and prints wall seconds and peak resident memory (max RSS) per step. Target (DESIGN.md section 9): a
512x512x150 CT plus PET, two MR series and an RTSTRUCT in under 20 s and 4 GB on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

STEP = """
import sys
from hnseg.dicom.importer import ImportOptions, import_ct_and_labels, import_mri, import_pet
step, dicom, out = sys.argv[1:4]
fn = {"ct+labels": import_ct_and_labels, "pet": import_pet, "mri": import_mri}[step]
fn("BENCH", dicom, out, ImportOptions())
"""


def run_step(step: str, dicom: Path, out: Path, threads: int) -> tuple[float, float]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS": str(threads)}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", STEP, step, str(dicom), str(out)], env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"import step {step} failed")
    return seconds, usage.ru_maxrss / 1024  # KiB -> MiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="realistic", choices=["demo", "realistic"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2, help="runs per step; the best is reported")
    parser.add_argument("--cache", type=Path, default=Path("results/benchmarks/import_cache"))
    args = parser.parse_args()

    from hnseg.synthetic import generate_patient

    dicom, truth = args.cache / args.size / "dicom", args.cache / args.size / "truth"
    if not dicom.is_dir():
        generate_patient("SYN001", 1, dicom, truth, size=args.size)
    n_files = sum(1 for p in dicom.rglob("*") if p.is_file())
    mb = sum(p.stat().st_size for p in dicom.rglob("*") if p.is_file()) / 1e6
    print(
        f"# {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; {args.size} patient: {n_files} files, {mb:.0f} MB"
    )
    print(f"{'step':<10} {'best s':>7} {'peak MB':>8}")
    total_s, peak = 0.0, 0.0
    out = args.cache / args.size / "imported"
    for step in ("ct+labels", "pet", "mri"):
        runs = [run_step(step, dicom, out, args.threads) for _ in range(args.repeat)]
        best = min(r[0] for r in runs)
        rss = max(r[1] for r in runs)
        total_s += best
        peak = max(peak, rss)
        print(f"{step:<10} {best:>7.2f} {rss:>8.0f}")
    print(f"{'total':<10} {total_s:>7.2f} {peak:>8.0f}   (target: < 20 s, < 4096 MB)")


if __name__ == "__main__":
    main()
