"""Running the Snakemake workflow for real from tests: the command, the job table of a dry run, a small cohort.

The complete run (fixture `complete_run` in conftest.py) is built once per test session and shared by every test
that needs a finished study: the report, `snakemake --report`, the rerun table, the cohort's exclusions.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from filelock import FileLock

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "config" / "config.yaml"
DEMO = ROOT / "config" / "demo.yaml"


# `make test` runs two pytest workers side by side (tests/conftest.py), so two workflow runs may share CI's 24 GiB. Each
# run is held to this much declared memory: a job that declares more (nnU-Net's training) then runs alone in its run.
# A test that passes its own `--resources` replaces this. (Written with "=": the option takes every word that follows,
# and the targets after it would be read as resources.)
MEMORY_MB_PER_RUN = 11000


def snakemake_command(workdir: Path, *args: str) -> list[str]:
    """The `snakemake` command line on the repository's workflow in `workdir`: default profile, 2 cores, and
    MEMORY_MB_PER_RUN."""
    return [
        sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(workdir),
        "--workflow-profile", str(ROOT / "profiles" / "default"), "--cores", "2",
        f"--resources=mem_mb={MEMORY_MB_PER_RUN}", *args,
    ]  # fmt: skip


def snakemake(
    workdir: Path, *args: str, check: bool = True, env: dict[str, str] | None = None, timeout: int = 1800
) -> subprocess.CompletedProcess:
    """:func:`snakemake_command` run to its end."""
    cmd = snakemake_command(workdir, *args)
    result = subprocess.run(
        cmd, check=False, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def planned_jobs(dry_run_output: str) -> dict[str, int]:
    """Rule -> count from the job table a dry run prints ({} when there is nothing to do)."""
    lines = dry_run_output.splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.startswith("job") and "count" in ln), None)
    if start is None:
        return {}
    jobs: dict[str, int] = {}
    for line in lines[start + 2 :]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        if parts[0] != "total":
            jobs[parts[0]] = int(parts[1])
    return jobs


# The complete run's cohort: four clean synthetic patients, one without MR, one whose CT series misses a slice
# through the tumour (the importer refuses it). The split is frozen so that every branch has train, val and test
# patients: HN05 (no MR) is a test patient of the CT-only branch, HN06 (broken CT) is left out of everything.
COHORT = {
    "HN01": ("train", []),
    "HN02": ("train", []),
    "HN03": ("val", []),
    "HN04": ("test", []),
    "HN05": ("test", ["mr_missing"]),
    "HN06": ("train", ["missing_ct_slice"]),
}
SEED = 2024
# The test runs' cohorts are generated at the "tiny" size (hnseg.synthetic.sizes): every stage runs, on a third of the
# demo's CT voxels and about 60 % of its tumour slices (the complete run: 579 s instead of 723 s, 2026-12-05).
COHORT_SIZE = "tiny"

# Tiny training settings: every stage runs for real, none learns much.
NNUNET_SETTINGS = """
nnunet:
  epochs: 1
  iterations_per_epoch: 1
  val_iterations_per_epoch: 1
  tta: false
  fingerprint_samples: 100000
  final_validation: false
"""
SETTINGS = (
    """
litemedsam:
  finetune:
    max_epochs: 2
    batch_size: 2
    max_steps_per_epoch: 1
    max_val_samples: 4
    train_encoder: false
"""
    + NNUNET_SETTINGS
)


@dataclass
class CompleteRun:
    workdir: Path
    configs: list[str]
    stdout: str = ""
    stderr: str = ""
    patients: dict[str, str] = field(default_factory=dict)  # patient -> subset

    def run(self, *args: str, extra_configs=(), workdir: Path | None = None, **kwargs) -> subprocess.CompletedProcess:
        """snakemake in this run's folder (or a copy of it) with its configs, plus extra config files layered on top."""
        configs = [*self.configs, *map(str, extra_configs)]
        return snakemake(workdir or self.workdir, *args, "--configfile", *configs, **kwargs)

    def copy(self, destination: Path) -> Path:
        """A copy of the finished run (results, logs, Snakemake's metadata) to change without touching this one. It
        leaves out Snakemake's locks: a test on the other worker may be running Snakemake in this run's folder."""
        shutil.copytree(self.workdir, destination, symlinks=True, ignore=shutil.ignore_patterns("cohort", "locks"))
        return destination

    def command(self, workdir: Path, *args: str) -> list[str]:
        """The command line of :meth:`run`, for a test that starts (and kills) Snakemake itself."""
        return snakemake_command(workdir, *args, "--configfile", *self.configs)


def shared_run(session_temp: Path, name: str, build: Callable[[Path], CompleteRun]) -> CompleteRun:
    """A workflow run built once per test session however many pytest-xdist workers share it: the first worker that
    needs it builds it in `session_temp / name` under a file lock and records it; the others wait for the lock and
    read the record. A build that failed is recorded too, so that the other workers fail at once with its error."""
    record = session_temp / f"{name}.json"
    with FileLock(session_temp / f"{name}.lock"):
        if not record.is_file():
            workdir = session_temp / name
            workdir.mkdir(parents=True)
            try:
                run = build(workdir)
            except BaseException as error:
                record.write_text(json.dumps({"error": f"{type(error).__name__}: {error}"}))
                raise
            record.write_text(json.dumps({**asdict(run), "workdir": str(run.workdir)}))
    data = json.loads(record.read_text())
    if "error" in data:
        raise RuntimeError(f"the {name} failed on another worker: {data['error']}")
    return CompleteRun(**{**data, "workdir": Path(data["workdir"])})


def write_cohort(root: Path) -> tuple[Path, Path]:
    """The DICOM folders, patients sheet and frozen split of COHORT under root; returns (sheet, split)."""
    from hnseg.synthetic import generate_patient
    from hnseg.synthetic.messy import make_messy_patient

    rows, split = ["patient\tdicom_dir"], ["patient\tsubset"]
    for patient, (subset, variants) in COHORT.items():
        dicom, truth = root / "dicom" / patient, root / "truth" / patient
        if variants:
            make_messy_patient(patient, SEED, dicom, truth, variants, size=COHORT_SIZE)
        else:
            generate_patient(patient, SEED, dicom, truth, size=COHORT_SIZE)
        rows.append(f"{patient}\t{dicom}")
        split.append(f"{patient}\t{subset}")
    sheet, frozen = root / "patients.tsv", root / "split.tsv"
    sheet.write_text("\n".join(rows) + "\n")
    frozen.write_text("\n".join(split) + "\n")
    return sheet, frozen


def build_complete_run(workdir: Path) -> CompleteRun:
    sheet, frozen = write_cohort(workdir / "cohort")
    small = workdir / "complete.yaml"
    small.write_text(f"patients: {sheet}\nsynthetic:\n  enabled: false\nsplit:\n  frozen: {frozen}\n{SETTINGS}")
    run = CompleteRun(workdir, [str(PAPER), str(DEMO), str(small)], patients={p: s for p, (s, _) in COHORT.items()})
    result = run.run()
    run.stdout, run.stderr = result.stdout, result.stderr
    return run


# A cohort of CT and RTSTRUCT only, as a new user may bring: one patient per subset; nnU-Net trains on the CT alone,
# for one iteration. Its fine-tuning is set up for tests/test_litemedsam_workflow.py: three epochs of one step of a
# large learning rate, so that the validation Dice loss is lowest before the last epoch (a run killed after the best
# epoch resumes into epochs that find nothing better).
CT_ONLY_COHORT = {"CT01": "train", "CT02": "val", "CT03": "test"}
CT_ONLY_SETTINGS = """
litemedsam:
  finetune:
    max_epochs: 3
    batch_size: 2
    max_steps_per_epoch: 1
    max_val_samples: 4
    lr: 0.001
    train_encoder: false
"""

# Every Python process of a run writes its pid, arguments and the MALLOC_ variables it started with (read from
# /proc/self/environ: what glibc read) to HNSEG_TEST_PROCESS_LOG (tests/test_litemedsam_workflow.py).
PROCESS_LOG_SITECUSTOMIZE = """
import json, os, sys
if os.environ.get("HNSEG_TEST_PROCESS_LOG"):
    with open("/proc/self/environ", "rb") as fh:
        names = [item.split(b"=", 1)[0].decode() for item in fh.read().split(b"\\0") if b"=" in item]
    record = {"pid": os.getpid(), "argv": sys.orig_argv, "malloc": sorted(n for n in names if n.startswith("MALLOC_"))}
    with open(os.environ["HNSEG_TEST_PROCESS_LOG"], "a") as out:
        out.write(json.dumps(record) + "\\n")
"""


def keep_ct_and_rtstruct(dicom_dir: Path) -> None:
    import pydicom

    for series in sorted({path.parent for path in dicom_dir.rglob("*") if path.is_file()}):
        modality = pydicom.dcmread(next(p for p in series.iterdir() if p.is_file()), stop_before_pixels=True).Modality
        if modality not in ("CT", "RTSTRUCT"):
            shutil.rmtree(series)


def build_ct_only_run(workdir: Path) -> CompleteRun:
    """The whole study on CT_ONLY_COHORT, every process of it logged to `workdir / "processes.jsonl"`."""
    from hnseg.synthetic import generate_patient

    rows = ["patient\tdicom_dir"]
    for patient in CT_ONLY_COHORT:
        dicom = workdir / "cohort" / "dicom" / patient
        generate_patient(patient, SEED, dicom, workdir / "cohort" / "truth" / patient, size=COHORT_SIZE)
        keep_ct_and_rtstruct(dicom)
        rows.append(f"{patient}\t{dicom}")
    (workdir / "patients.tsv").write_text("\n".join(rows) + "\n")
    split = "".join(f"{p}\t{s}\n" for p, s in CT_ONLY_COHORT.items())
    (workdir / "split.tsv").write_text("patient\tsubset\n" + split)
    config = workdir / "ct_only.yaml"
    config.write_text(
        f"patients: {workdir / 'patients.tsv'}\nsynthetic:\n  enabled: false\n"
        f"split:\n  frozen: {workdir / 'split.tsv'}\n{CT_ONLY_SETTINGS}{NNUNET_SETTINGS}"
    )
    (workdir / "site").mkdir()
    (workdir / "site" / "sitecustomize.py").write_text(PROCESS_LOG_SITECUSTOMIZE)
    env = {
        "PYTHONPATH": os.pathsep.join([str(workdir / "site"), *filter(None, [os.environ.get("PYTHONPATH")])]),
        "HNSEG_TEST_PROCESS_LOG": str(workdir / "processes.jsonl"),
    }
    run = CompleteRun(workdir, [str(PAPER), str(DEMO), str(config)], patients=dict(CT_ONLY_COHORT))
    result = run.run(env=env)
    run.stdout, run.stderr = result.stdout, result.stderr
    return run
