"""The SLURM profile on a real SLURM: a reduced study run with `--workflow-profile profiles/slurm`.

`../shared/slurm/slurm-up.sh` (relative to the repository root) brings up a single-node SLURM: root, 2 CPUs,
2 fake GPUs (character devices, so SLURM sets CUDA_VISIBLE_DEVICES), no accounting database. Its one partition
is named `cpu` and a second partition `gpu` is added on the same node, so the profile's partitions are used as
they are. The override for this node is given on the command line: 2 cores per job, squeue for the job status
(no sacct without accounting), 2 s before the first status check. `slurm-down.sh` stops every daemon at the end.

Three synthetic patients go through import and registration, the cohort checkpoint lets the train and val
patients through to prompts and fusion, and the multimodal LiteMedSAM fine-tuning (the GPU rule) runs on them. While it trains, the test cancels it with `scancel` after its first epoch; the
profile's retry resubmits it with more memory and it resumes from last.pth. The same study is run locally at the
same time: every output must equal the local run's, the fine-tuned weights bit for bit.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from workflow_run import COHORT_SIZE

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "config" / "config.yaml"
DEMO = ROOT / "config" / "demo.yaml"
SLURM_SCRIPTS = ROOT.parent / "shared" / "slurm"
CPU_PARTITION, GPU_PARTITION = "cpu", "gpu"  # the names profiles/slurm/config.yaml uses

SEED = 2024
SPLIT = {"HN01": "train", "HN02": "val", "HN03": "test"}
STAGES = ("import_ct", "import_pet", "import_mri", "resample_pet", "register_mri")  # every patient
FINETUNED_ON = ("HN01", "HN02")
FUSION_STAGES = ("make_prompts", "fuse_slices")  # after the checkpoint, the patients fine-tuning needs
EMBEDDED = ("HN02",)  # the val patient: fine-tuning reads its embeddings
FUSION = "multimodal"
MODEL_DIR = Path("results/models/litemedsam") / FUSION

# Small but real: registration with fewer iterations, and the demo's fine-tuning (frozen encoder, the decoder trained
# on cached embeddings; the val embeddings come from rule embed_slices) for 2 epochs of one step, so that an epoch
# takes seconds and the job can be cancelled after the first. Training the encoder too (the paper's setting) is not
# bit-reproducible on the CPU: two uninterrupted runs differ after the first step.
SETTINGS = """
registration:
  rigid:
    iterations: [40, 20]
    shrink_factors: [8, 4]
    smoothing_sigmas_mm: [4, 2]
  syn:
    iterations: [10]
    shrink_factors: [6]
    smoothing_sigmas_mm: [3]
litemedsam:
  finetune:
    max_epochs: 2
    batch_size: 1
    max_steps_per_epoch: 1
    max_val_samples: 1
    train_encoder: false
gpu:
  threads_per_job: 2  # what the SLURM job gets on this 2-CPU node: bit-identical weights need the same thread count
"""
# What this 2-CPU node needs beyond the study's profile (command-line flags override the profile's keys).
NODE_OVERRIDE = [
    "--cores", "2",
    "--slurm-status-command", "squeue",
    "--slurm-init-seconds-before-status-checks", "2",
]  # fmt: skip


def run_script(name: str, *args: str, env: dict[str, str] | None = None) -> None:
    script = SLURM_SCRIPTS / name
    result = subprocess.run(
        ["bash", str(script), *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )
    if result.returncode != 0:
        raise AssertionError(f"{script} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")


def scontrol(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["scontrol", *args], capture_output=True, text=True, timeout=30, check=check)


@pytest.fixture(scope="module")
def slurm_cluster(request):
    """A running single-node SLURM with a `cpu` and a `gpu` partition; at the end, stopped and uninstalled again.

    Uninstalled, not only stopped: Snakemake's SLURM plugin runs `scontrol show config` whenever Snakemake starts, and
    with SLURM's configuration left behind and no controller, that waits 9 s before it fails: 9 s more for every later
    `snakemake` of the test session (a dry run of the demo: 13.0 s instead of 3.6 s, 2026-12-05)."""
    if os.geteuid() != 0:
        pytest.fail("the SLURM test brings up a local SLURM and must run as root (CI containers do)")
    if not (SLURM_SCRIPTS / "slurm-up.sh").is_file():
        pytest.fail(f"{SLURM_SCRIPTS / 'slurm-up.sh'} is missing: the SLURM test bed lives beside the repository")

    def tear_down():
        scontrol("delete", f"PartitionName={GPU_PARTITION}", check=False)
        run_script("slurm-down.sh", "--uninstall")

    request.addfinalizer(tear_down)
    run_script("slurm-up.sh", env={"SLURM_PARTITION": CPU_PARTITION, "SLURM_FAKE_GPUS": "2"})
    scontrol("delete", f"PartitionName={GPU_PARTITION}", check=False)  # left over by an interrupted run
    scontrol("create", f"PartitionName={GPU_PARTITION}", "Nodes=localhost", "MaxTime=INFINITE", "State=UP")


def write_cohort(root: Path) -> Path:
    """Three synthetic patients, their sheet and frozen split, and the test's settings; returns the config file."""
    from hnseg.synthetic import generate_patient

    rows, split = ["patient\tdicom_dir"], ["patient\tsubset"]
    for patient, subset in SPLIT.items():
        dicom = root / "dicom" / patient
        generate_patient(patient, SEED, dicom, root / "truth" / patient, size=COHORT_SIZE)
        rows.append(f"{patient}\t{dicom}")
        split.append(f"{patient}\t{subset}")
    (root / "patients.tsv").write_text("\n".join(rows) + "\n")
    (root / "split.tsv").write_text("\n".join(split) + "\n")
    config = root / "study.yaml"
    config.write_text(
        f"patients: {root / 'patients.tsv'}\nsynthetic:\n  enabled: false\nsplit:\n  frozen: {root / 'split.tsv'}\n"
        + SETTINGS
    )
    return config


def study_targets() -> list[str]:
    return [str(MODEL_DIR / "best.pth")]


def snakemake_command(workdir: Path, profile: str, config: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(workdir),
        "--workflow-profile", str(ROOT / "profiles" / profile), *extra,
        *study_targets(), "--configfile", str(PAPER), str(DEMO), str(config),
    ]  # fmt: skip


@dataclass
class SlurmJob:
    """What scontrol said about a job, last seen."""

    job_id: str
    fields: dict[str, str]
    gpu_indices: list[str] = field(default_factory=list)


def parse_scontrol_jobs(text: str) -> dict[str, SlurmJob]:
    jobs = {}
    for line in text.splitlines():
        fields = dict(re.findall(r"(\S+?)=(\S*)", line))
        if "JobId" in fields:
            indices = re.search(r"GRES=gpu[^ ]*\(IDX:([0-9,-]+)\)", line)
            jobs[fields["JobId"]] = SlurmJob(fields["JobId"], fields, indices.group(1).split(",") if indices else [])
    return jobs


class JobRecorder(threading.Thread):
    """Polls `scontrol show job -d -o` every second and keeps each job's last record (SLURM forgets finished jobs
    after MinJobAge); cancels the fine-tuning job once it has saved its first epoch."""

    def __init__(self, workdir: Path):
        super().__init__(daemon=True)
        self.workdir = workdir
        self.jobs: dict[str, SlurmJob] = {}
        self.cancelled: list[str] = []  # job ids
        self.stop = threading.Event()

    def poll(self) -> None:
        result = scontrol("show", "job", "-d", "-o", check=False)
        if result.returncode == 0:
            for job_id, job in parse_scontrol_jobs(result.stdout).items():
                if job.gpu_indices or job_id not in self.jobs:
                    self.jobs[job_id] = job
                else:  # the GRES detail is only shown while the job runs: keep it
                    job.gpu_indices = self.jobs[job_id].gpu_indices
                    self.jobs[job_id] = job

    def cancel_finetuning_after_first_epoch(self) -> None:
        if self.cancelled or not (self.workdir / MODEL_DIR / "last.pth").is_file():
            return
        for job in self.jobs.values():
            running = job.fields.get("JobState") == "RUNNING"
            if running and job.fields.get("Comment", "").startswith("rule_finetune_litemedsam"):
                subprocess.run(["scancel", job.job_id], check=True, timeout=30)
                self.cancelled.append(job.job_id)

    def run(self) -> None:
        while not self.stop.is_set():
            self.poll()
            self.cancel_finetuning_after_first_epoch()
            self.stop.wait(0.5)
        self.poll()


@dataclass
class Study:
    slurm_dir: Path
    local_dir: Path
    output: str  # Snakemake's output of the SLURM run
    jobs: dict[str, SlurmJob]
    cancelled: list[str]
    seconds: dict[str, float]

    def submissions(self) -> list[tuple[str, str]]:
        """(SLURM job id, rule or group name) of every submission, in order."""
        pattern = r"submitted with SLURM jobid (\d+) \(log: \S*/logs/slurm/(\S+?)/"
        return re.findall(pattern, self.output)


@pytest.fixture(scope="module")
def study(tmp_path_factory, request):
    """The reduced study on SLURM, with the fine-tuning cancelled once and resumed, and the same study run locally
    at the same time."""
    root = tmp_path_factory.mktemp("slurm_study")
    config = write_cohort(root / "cohort")
    local_dir, slurm_dir = root / "local", root / "slurm"
    seconds = {}
    start = time.monotonic()
    local = subprocess.Popen(
        snakemake_command(local_dir, "default", config, "--cores", "2"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        request.getfixturevalue("slurm_cluster")
        seconds["slurm up"] = time.monotonic() - start
        recorder = JobRecorder(slurm_dir)
        recorder.start()
        slurm_start = time.monotonic()
        slurm = subprocess.run(
            snakemake_command(slurm_dir, "slurm", config, *NODE_OVERRIDE),
            check=False,
            capture_output=True,
            text=True,
            timeout=1200,
        )
        seconds["slurm run"] = time.monotonic() - slurm_start
        recorder.stop.set()
        recorder.join(30)
        local_output, _ = local.communicate(timeout=1200)
    finally:
        if local.poll() is None:
            local.kill()
            local.wait()
    seconds["local run"] = time.monotonic() - start  # ended before or with the SLURM run; waited for here
    assert local.returncode == 0, f"local run failed:\n{local_output}"
    output = slurm.stdout + slurm.stderr
    assert slurm.returncode == 0, f"SLURM run failed:\n{output}"
    print(f"timings (s): {seconds}")
    return Study(slurm_dir, local_dir, output, recorder.jobs, recorder.cancelled, seconds)


def log_allocation(log_text: str) -> str:
    return re.search(r"job allocation: (.*)", log_text).group(1)


@pytest.mark.slow
def test_the_gpu_job_got_its_gpu_and_the_cpus_it_asked_for(study):
    finetune = [j for j, name in study.submissions() if name.startswith("rule_finetune_litemedsam")]
    last = study.jobs[finetune[-1]]
    assert last.fields["Partition"] == GPU_PARTITION and last.fields["JobState"] == "COMPLETED"
    # the profile asks for 8 threads, capped by this node's 2 cores: 2 CPUs requested and allocated
    assert last.fields["NumCPUs"] == "2" and last.fields["CPUs/Task"] == "2"
    assert last.fields["TresPerJob"].endswith("gpu:1") and len(last.gpu_indices) == 1
    allocation = log_allocation((study.slurm_dir / "logs" / "finetune_litemedsam" / f"{FUSION}.log").read_text())
    # the job saw the device SLURM allocated it, and ran in the allocation of the job that completed
    assert f"CUDA_VISIBLE_DEVICES={last.gpu_indices[0]}" in allocation
    assert f"SLURM job {last.job_id}" in allocation and "SLURM_CPUS_PER_TASK=2" in allocation


@pytest.mark.slow
def test_per_patient_stages_run_as_fewer_cluster_jobs_than_patients(study):
    names = [name for _, name in study.submissions()]
    per_patient = (*STAGES, *FUSION_STAGES, "embed_slices")
    assert not [n for n in names if n.startswith("rule_") and n[len("rule_") :].startswith(per_patient)], names
    groups = [(j, n) for j, n in study.submissions() if n.startswith("group_patient")]
    # import and registration of the 3 patients in one cluster job, their prompts and fusion in another
    assert 0 < len(groups) < len(SPLIT), names
    assert all(study.jobs[j].fields["Partition"] == CPU_PARTITION for j, _ in groups)
    # the val patient's embeddings (a GPU stage) in a group job of their own, on the GPU partition (resubmitted if
    # this CPU-only node, slower than a GPU, ran past the profile's time limit)
    embedding = [j for j, n in study.submissions() if n.startswith("group_embedding")]
    assert embedding and all(study.jobs[j].fields["Partition"] == GPU_PARTITION for j in embedding)
    assert study.jobs[embedding[-1]].fields["JobState"] == "COMPLETED"
    assert {log.stem for log in (study.slurm_dir / "logs" / "embed_slices").rglob("*.log")} == set(EMBEDDED)
    # every stage ran for its patients, all inside those group jobs
    for rule in (*STAGES, *FUSION_STAGES):
        patients = set(SPLIT) if rule in STAGES else set(FINETUNED_ON)
        assert {log.stem for log in (study.slurm_dir / "logs" / rule).rglob("*.log")} == patients, rule


def read_volume(path: Path) -> tuple[np.ndarray, tuple]:
    image = sitk.ReadImage(str(path))
    return sitk.GetArrayFromImage(image), (image.GetOrigin(), image.GetSpacing(), image.GetDirection())


@pytest.mark.slow
def test_the_outputs_equal_the_local_runs(study):
    compared = []
    for patient in SPLIT:
        for stage in ("imported", "registered"):
            for kind in ("ct", "labels", "pet", "t1", "t2"):
                volume = Path("results") / stage / patient / f"{kind}.nii.gz"
                (a, ga), (b, gb) = read_volume(study.local_dir / volume), read_volume(study.slurm_dir / volume)
                assert ga == gb and a.dtype == b.dtype and np.array_equal(a, b), volume
                compared.append(volume)
    for patient in FINETUNED_ON:
        shard = Path("results") / "slices" / FUSION / f"{patient}.npz"
        with np.load(study.local_dir / shard) as a, np.load(study.slurm_dir / shard) as b:
            assert sorted(a.files) == sorted(b.files)
            for name in a.files:
                assert np.array_equal(a[name], b[name]), f"{shard}: {name}"
        prompts = Path("results") / "prompts" / f"{patient}.json"
        assert (study.local_dir / prompts).read_text() == (study.slurm_dir / prompts).read_text()
        compared += [shard, prompts]
    assert len(compared) == 3 * 10 + 2 * 2


@pytest.mark.slow
def test_a_cancelled_finetuning_resumes_to_the_uninterrupted_weights(study):
    finetune = [j for j, name in study.submissions() if name.startswith("rule_finetune_litemedsam")]
    # cancelled after its first epoch, resubmitted by the profile's retry, completed
    assert len(finetune) == 2 and study.cancelled == [finetune[0]]
    first, second = (study.jobs[j] for j in finetune)
    assert first.fields["JobState"] == "CANCELLED" and second.fields["JobState"] == "COMPLETED"
    # the retry asked for twice the memory
    memory = [int(j.fields["MinMemoryNode"].rstrip("M")) for j in (first, second)]
    assert memory[1] == 2 * memory[0], memory
    log = (study.slurm_dir / "logs" / "finetune_litemedsam" / f"{FUSION}.log").read_text()
    assert re.search(r"resuming after epoch 1 ", log)  # of 2: the second attempt trained the second epoch only
    # bit-identical to the uninterrupted local fine-tuning: weights and losses
    a = torch.load(study.local_dir / MODEL_DIR / "best.pth", weights_only=True)
    b = torch.load(study.slurm_dir / MODEL_DIR / "best.pth", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    columns = ["epoch", "train_loss", "val_dice_loss", "lr"]
    histories = []
    for run_dir in (study.local_dir, study.slurm_dir):
        rows = [r.split(",") for r in (run_dir / MODEL_DIR / "history.csv").read_text().splitlines()]
        histories.append([[row[rows[0].index(c)] for c in columns] for row in rows])
    assert histories[0] == histories[1] and len(histories[0]) == 3


def test_the_profile_packs_the_stages_of_24_patients_into_one_cluster_job(tmp_path):
    """A dry run of import and registration for 50 patients with the SLURM profile (no cluster needed)."""
    rows = ["patient\tdicom_dir"]
    for i in range(50):
        (tmp_path / "dicom" / f"P{i:03d}").mkdir(parents=True)  # a dry run reads no DICOM
        rows.append(f"P{i:03d}\t{tmp_path / 'dicom' / f'P{i:03d}'}")
    (tmp_path / "patients.tsv").write_text("\n".join(rows) + "\n")
    (tmp_path / "sheet.yaml").write_text(f"patients: {tmp_path / 'patients.tsv'}\n")
    cmd = [
        sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path / "run"), "-n",
        "--workflow-profile", str(ROOT / "profiles" / "slurm"), "results/cohort.tsv",
        "--configfile", str(PAPER), str(tmp_path / "sheet.yaml"),
    ]  # fmt: skip
    result = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    for rule in STAGES:
        assert re.search(rf"^{rule}\s+50$", result.stdout, re.MULTILINE), rule
    # 250 per-patient jobs in ceil(50 / 24) = 3 cluster jobs
    assert result.stdout.count("Group job patient") == 3
