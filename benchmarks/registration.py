"""Seconds per patient of the registration stage (T1w and T2w to the CT, rigid then SyN, QC), at demo and
realistic size, with one ITK thread (deterministic, the default) and with two (deterministic: false).

    python benchmarks/registration.py [--sizes demo realistic] [--threads 1 2] [--tre 4]

Generates and imports one synthetic patient per size (cached in --cache), then runs register_mri in a fresh
process per setting and prints wall seconds, peak resident memory, the stage's own split (rigid, SyN, the rest)
and the landmark TRE. With --tre N it also prints the TRE table (before, rigid, SyN; mean and worst, mm) and the
GTV-T Dice of N demo patients at the default settings. Target (the demo): under 60 s per patient on one core.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

RUN = """
import json, sys
from hnseg.registration import load_options, register_mri
imported, truth, out, threads = sys.argv[1:5]
changes = {} if threads == "1" else {"deterministic": False, "threads": int(threads)}
opts = load_options(demo=True, **changes)
mrs = {"t1": f"{imported}/t1.nii.gz", "t2": f"{imported}/t2.nii.gz"}
register_mri("BENCH", f"{imported}/ct.nii.gz", f"{imported}/labels.nii.gz", mrs, out, opts, truth_dir=truth)
"""


def prepare(cache: Path, size: str, patient: str) -> tuple[Path, Path]:
    """Generate and import one synthetic patient (once); returns (imported folder, truth folder)."""
    root = cache / size / patient
    imported, truth = root / "imported", root / "truth"
    if not (imported / "t2.nii.gz").is_file():
        from hnseg.dicom.importer import ImportOptions, import_ct_and_labels, import_mri
        from hnseg.synthetic import generate_patient

        generate_patient(patient, 2024, root / "dicom", truth, size=size)
        import_ct_and_labels(patient, root / "dicom", imported, ImportOptions())
        import_mri(patient, root / "dicom", imported, ImportOptions())
    return imported, truth


def run(imported: Path, truth: Path, out: Path, threads: int) -> tuple[float, float, dict]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", RUN, str(imported), str(truth), str(out), str(threads)], env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"registration failed ({imported}, {threads} threads)")
    return seconds, usage.ru_maxrss / 1024, json.loads((out / "qc.json").read_text())


def tre_cell(tre: dict, stage: str) -> str:
    return f"{tre[stage]['mean_mm']:.2f} / {tre[stage]['max_mm']:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["demo", "realistic"], choices=["demo", "realistic"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--tre", type=int, default=0, help="also the TRE table of this many demo patients")
    parser.add_argument("--cache", type=Path, default=Path("results/benchmarks/registration_cache"))
    args = parser.parse_args()

    print(f"# {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.1f} at start")  # fmt: skip
    print(f"{'size':<10} {'threads':>7} {'wall s':>7} {'rigid s':>8} {'SyN s':>6} {'other s':>8} {'peak MB':>8} "
          f"{'TRE SyN mean/max mm':>20}")  # fmt: skip
    for size in args.sizes:
        imported, truth = prepare(args.cache, size, "SYN001")
        for threads in args.threads:
            out = args.cache / size / "SYN001" / f"registered_{threads}"
            seconds, rss, record = run(imported, truth, out, threads)
            rigid = sum(m["seconds"]["rigid"] for m in record["mr"].values())
            syn = sum(m["seconds"]["syn"] for m in record["mr"].values())
            tre = "; ".join(tre_cell(m["truth"]["tre"], "syn") for m in record["mr"].values())
            print(f"{size:<10} {threads:>7} {seconds:>7.1f} {rigid:>8.1f} {syn:>6.1f} {seconds - rigid - syn:>8.1f} "
                  f"{rss:>8.0f} {tre:>20}")  # fmt: skip

    if args.tre:
        from hnseg.synthetic import patient_ids

        print(f"\n{'patient':<8} {'MR':<3} {'TRE before':>14} {'TRE rigid':>12} {'TRE SyN':>12} {'Dice rigid':>10} "
              f"{'Dice SyN':>9} {'s':>5}  (TRE mean / max, mm)")  # fmt: skip
        for patient in patient_ids(args.tre):
            imported, truth = prepare(args.cache, "demo", patient)
            out = args.cache / "demo" / patient / "registered_1"
            seconds, _, record = run(imported, truth, out, 1)
            for name, m in record["mr"].items():
                tre, dice = m["truth"]["tre"], m["truth"]["gtvt_dice"]
                print(f"{patient:<8} {name:<3} {tre_cell(tre, 'before'):>14} {tre_cell(tre, 'rigid'):>12} "
                      f"{tre_cell(tre, 'syn'):>12} {dice['rigid']:>10.3f} {dice['syn']:>9.3f} {seconds:>5.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
