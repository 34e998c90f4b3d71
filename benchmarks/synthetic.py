"""Time the synthetic cohort generator and measure what it writes.

    PYTHONPATH=src python benchmarks/synthetic.py [--sizes demo realistic] [--patients 3] [--seed 1]

Prints one row per size: seconds per patient (mean and max over the patients, wall clock, one process),
MB on disk per patient (DICOM and truth separately) and files per patient.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from hnseg.synthetic import SIZES, generate_patient, patient_ids


def _disk(folder: Path) -> tuple[float, int]:
    files = [p for p in folder.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 1e6, len(files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--patients", type=int, default=3, help="patients per size (default 3)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="keep the output here (default: a temporary folder)")
    args = parser.parse_args()

    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    header = f"{'size':<10} {'patients':>8} {'s/patient':>10} {'max s':>7} {'MB DICOM':>9} {'MB truth':>9} {'files':>6}"
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        base = args.out or Path(tmp)
        for size in args.sizes:
            seconds, dicom_mb, truth_mb, files = [], [], [], []
            for pid in patient_ids(args.patients):
                dicom_dir = base / size / "dicom" / pid
                truth_dir = base / size / "truth" / pid
                start = time.perf_counter()
                generate_patient(pid, args.seed, dicom_dir, truth_dir, size=size)
                seconds.append(time.perf_counter() - start)
                mb, n = _disk(dicom_dir)
                dicom_mb.append(mb)
                files.append(n)
                truth_mb.append(_disk(truth_dir)[0])
            print(
                f"{size:<10} {args.patients:>8} {statistics.mean(seconds):>10.2f} {max(seconds):>7.2f} "
                f"{statistics.mean(dicom_mb):>9.1f} {statistics.mean(truth_mb):>9.1f} {round(statistics.mean(files)):>6}"
            )


if __name__ == "__main__":
    main()
