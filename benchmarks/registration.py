"""Seconds and peak memory per patient of the three registration rules: resample_pet (PET onto the CT grid),
register_mri (T1w and T2w to the CT, rigid then SyN) and registration_qc, at demo and realistic size, with one ITK
thread (deterministic, the default) and with two (deterministic: false).

    python benchmarks/registration.py [--sizes demo realistic] [--threads 1 2] [--tre 4]

Generates and imports one synthetic patient per size (cached in --cache), then runs each stage in a fresh process
per setting and prints wall seconds, peak resident memory, the registration's own split (rigid, SyN, the rest) and
the landmark TRE. With --tre N it also prints the TRE table (before, rigid, SyN; mean and worst, mm) and the GTV-T
Dice of N demo patients at the default settings. Target (the demo): under 60 s per patient on one core.
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
from pathlib import Path
from hnseg.registration.options import load_options, load_qc_options
stage, imported, truth, out, threads = sys.argv[1:6]
changes = {} if threads == "1" else {"deterministic": False, "threads": int(threads)}
opts = load_options(demo=True, **changes)
if stage == "resample_pet":
    from hnseg.registration.pet import resample_pet
    resample_pet("BENCH", f"{imported}/ct.nii.gz", f"{imported}/labels.nii.gz", f"{imported}/pet.nii.gz", out,
                 opts.body_threshold_hu)
elif stage == "register_mri":
    from hnseg.registration.mri import register_mri
    mrs = {"t1": f"{imported}/t1.nii.gz", "t2": f"{imported}/t2.nii.gz"}
    record = register_mri("BENCH", f"{imported}/ct.nii.gz", mrs, out, opts)
    Path(out, "mri.json").write_text(json.dumps(record))
else:
    from hnseg.registration.qc_stage import registration_qc
    record = json.loads(Path(out, "mri.json").read_text())
    registration_qc("BENCH", record, out, load_qc_options(demo=True), truth_dir=truth)
"""
STAGES = ("resample_pet", "register_mri", "registration_qc")


def prepare(cache: Path, size: str, patient: str) -> tuple[Path, Path]:
    """Generate and import one synthetic patient (once); returns (imported folder, truth folder)."""
    root = cache / size / patient
    imported, truth = root / "imported", root / "truth"
    if not all((imported / f).is_file() for f in ("pet.nii.gz", "t2.nii.gz")):
        from hnseg.dicom.importer import ImportOptions, import_ct_and_labels, import_mri, import_pet
        from hnseg.synthetic import generate_patient

        generate_patient(patient, 2024, root / "dicom", truth, size=size)
        import_ct_and_labels(patient, root / "dicom", imported, ImportOptions())
        import_pet(patient, root / "dicom", imported, ImportOptions())
        import_mri(patient, root / "dicom", imported, ImportOptions())
    return imported, truth


def run(imported: Path, truth: Path, out: Path, threads: int) -> tuple[dict, dict, dict]:
    """The three stages in order, each in a fresh process: (wall seconds, peak MB) per stage, and qc.json."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    seconds, peak = {}, {}
    for stage in STAGES:
        start = time.perf_counter()
        args = [stage, str(imported), str(truth), str(out), str(threads)]
        proc = subprocess.Popen([sys.executable, "-c", RUN, *args], env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds[stage], peak[stage] = time.perf_counter() - start, usage.ru_maxrss / 1024
        if status != 0:
            raise SystemExit(f"{stage} failed ({imported}, {threads} threads)")
    return seconds, peak, json.loads((out / "qc.json").read_text())


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
    print(f"{'size':<10} {'threads':>7} {'PET s':>6} {'PET MB':>7} {'reg s':>6} {'rigid s':>8} {'SyN s':>6} "
          f"{'reg MB':>7} {'QC s':>5} {'QC MB':>6} {'TRE SyN mean/max mm':>20}")  # fmt: skip
    for size in args.sizes:
        imported, truth = prepare(args.cache, size, "SYN001")
        for threads in args.threads:
            out = args.cache / size / "SYN001" / f"registered_{threads}"
            seconds, rss, record = run(imported, truth, out, threads)
            rigid = sum(m["seconds"]["rigid"] for m in record["mr"].values())
            syn = sum(m["seconds"]["syn"] for m in record["mr"].values())
            tre = "; ".join(tre_cell(m["truth"]["tre"], "syn") for m in record["mr"].values())
            pet, reg, check = STAGES
            print(f"{size:<10} {threads:>7} {seconds[pet]:>6.1f} {rss[pet]:>7.0f} {seconds[reg]:>6.1f} {rigid:>8.1f} "
                  f"{syn:>6.1f} {rss[reg]:>7.0f} {seconds[check]:>5.1f} {rss[check]:>6.0f} {tre:>20}")  # fmt: skip

    if args.tre:
        from hnseg.synthetic import patient_ids

        print(f"\n{'patient':<8} {'MR':<3} {'TRE before':>14} {'TRE rigid':>12} {'TRE SyN':>12} {'Dice rigid':>10} "
              f"{'Dice SyN':>9} {'s':>5}  (TRE mean / max, mm)")  # fmt: skip
        for patient in patient_ids(args.tre):
            imported, truth = prepare(args.cache, "demo", patient)
            out = args.cache / "demo" / patient / "registered_1"
            seconds, _, record = run(imported, truth, out, 1)
            registration_s = seconds["register_mri"]
            for name, m in record["mr"].items():
                tre, dice = m["truth"]["tre"], m["truth"]["gtvt_dice"]
                print(f"{patient:<8} {name:<3} {tre_cell(tre, 'before'):>14} {tre_cell(tre, 'rigid'):>12} "
                      f"{tre_cell(tre, 'syn'):>12} {dice['rigid']:>10.3f} {dice['syn']:>9.3f} {registration_s:>5.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
