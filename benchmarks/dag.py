"""Time a dry run of the whole study for a cohort of the paper's size (661 patients), without any DICOM.

    .venv/bin/python benchmarks/dag.py [--patients 661] [--repeat 2]

Two situations a user meets, each in a fresh temporary folder with a patients sheet whose DICOM folders are empty:
- "from nothing": nothing has run; the DAG ends at the cohort checkpoint (import and registration of everyone);
- "after the checkpoint": every stage record says ok and the cohort and method tables exist (the volumes they name
  are empty files), so Snakemake plans everything after the checkpoint too: fusion, prompts, embeddings, QC,
  training, prediction, scoring, the report.
Prints jobs and seconds (wall clock of `snakemake -n`, best of --repeat) per situation. Target (DESIGN.md
section 9): under 10 s for 661 patients.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VOLUMES = {"imported": ("ct", "labels", "pet", "t1", "t2"), "registered": ("ct", "labels", "pet", "t1", "t2")}
RECORDS = {
    "import_ct": "imported/{p}/import.json",
    "import_pet": "imported/{p}/pet.json",
    "import_mri": "imported/{p}/mri.json",
    "resample_pet": "registered/{p}/pet.json",
    "register_mri": "registered/{p}/mri.json",
}


def write_sheet(workdir: Path, n: int) -> list[str]:
    patients = [f"HN{i:04d}" for i in range(1, n + 1)]
    rows = ["patient\tdicom_dir"]
    for p in patients:
        (workdir / "dicom" / p).mkdir(parents=True)
        rows.append(f"{p}\t{workdir / 'dicom' / p}")
    (workdir / "patients.tsv").write_text("\n".join(rows) + "\n")
    (workdir / "bench.yaml").write_text(f"patients: {workdir / 'patients.tsv'}\n")
    return patients


def fake_checkpoint(workdir: Path, patients: list[str]) -> None:
    """Stage records (ok), their volumes (empty files) and the cohort tables, as after a run up to the checkpoint."""
    from hnseg.cohort import build_cohort
    from hnseg.config import load_config
    from hnseg.workflow import split_from_config

    results = workdir / "results"
    for p in patients:
        for folder, kinds in VOLUMES.items():
            (results / folder / p).mkdir(parents=True, exist_ok=True)
            for kind in kinds:
                (results / folder / p / f"{kind}.nii.gz").touch()
        for stage, pattern in RECORDS.items():
            (results / pattern.format(p=p)).write_text(json.dumps({"patient": p, "stage": stage, "status": "ok"}))
    config = load_config(ROOT / "config" / "config.yaml", workdir / "bench.yaml")
    split = split_from_config(config, patients)
    fusions = config["fusion"]["kinds"]
    methods = [f"litemedsam_{v}_{f}" for f in fusions for v in ("zeroshot", "finetuned")]
    methods += ["nnunet_nobox", "nnunet_box", "nnunet_nobox_boxmasked"]
    records = {p: [results / pattern.format(p=p) for pattern in RECORDS.values()] for p in patients}
    time.sleep(0.01)  # the tables are newer than the records: the checkpoint is up to date
    build_cohort(
        split.subset, records, [*fusions, "nnunet"], methods, config["evaluate"]["subsets"],
        results / "cohort.tsv", results / "methods.tsv",
    )  # fmt: skip


def dry_run(workdir: Path) -> tuple[float, int]:
    cmd = [
        sys.executable, "-m", "snakemake", "-n", "-s", str(ROOT / "Snakefile"), "-d", str(workdir), "--cores", "32",
        "--workflow-profile", "none", "--configfile", str(ROOT / "config" / "config.yaml"), str(workdir / "bench.yaml"),
    ]  # fmt: skip
    start = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"dry run failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    total = next(int(line.split()[1]) for line in result.stdout.splitlines() if line.startswith("total"))
    return seconds, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=661)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    print(
        f"# {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, {args.patients} patients"
    )
    print(f"{'situation':<22} {'jobs':>6} {'s (best)':>9}")
    for situation in ("from nothing", "after the checkpoint"):
        timings = []
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as tmp:
                workdir = Path(tmp)
                patients = write_sheet(workdir, args.patients)
                if situation == "after the checkpoint":
                    fake_checkpoint(workdir, patients)
                timings.append(dry_run(workdir))
        best = min(t for t, _ in timings)
        print(f"{situation:<22} {timings[0][1]:>6} {best:>9.1f}")


if __name__ == "__main__":
    main()
