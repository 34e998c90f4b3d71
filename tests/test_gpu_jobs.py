"""GPU jobs side by side: each running GPU job holds its own device slot, and the workflow runs two GPU jobs at once
under `--cores 4 --resources gpu=2` (hnseg.gpu, with its simulated device list on this GPU-less machine)."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

import pytest
import torch

from hnseg.gpu import SIMULATED_GPUS_ENV, allocation_summary, job_device


@pytest.fixture
def simulated(monkeypatch, tmp_path):
    monkeypatch.setenv(SIMULATED_GPUS_ENV, "3,5")
    monkeypatch.setenv("HNSEG_GPU_LOCK_DIR", str(tmp_path / "locks"))
    return tmp_path / "locks"


def test_simulated_jobs_each_hold_their_own_device_and_compute_on_the_cpu(simulated, caplog):
    caplog.set_level(logging.INFO, logger="hnseg.gpu")
    with job_device("auto") as first, job_device("auto") as second:
        assert first.type == second.type == "cpu"
        assert sorted(p.name for p in simulated.iterdir()) == ["gpu-sim3.lock", "gpu-sim5.lock"]
    took = [r.getMessage() for r in caplog.records if r.getMessage().startswith("running on simulated GPU")]
    assert [m.split()[4] for m in took] == ["3", "5"]
    released = [r.getMessage() for r in caplog.records if r.getMessage().startswith("released")]
    assert released == ["released simulated GPU 5", "released simulated GPU 3"]
    # both slots free again: the next job gets the first device
    caplog.clear()
    with job_device("auto"):
        pass
    assert any(r.getMessage().startswith("running on simulated GPU 3 ") for r in caplog.records)


def test_a_simulated_device_is_not_a_cuda_device(simulated):
    with job_device("cpu") as device:
        assert device.type == "cpu"
    assert not list(simulated.glob("*.lock"))  # the CPU needs no slot
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="none is visible"), job_device("cuda"):
            pass


def test_the_job_log_says_what_slurm_allocated(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "4")
    summary = allocation_summary()
    assert summary.startswith("CUDA_VISIBLE_DEVICES=1, SLURM job 77, SLURM_CPUS_PER_TASK=4, ")
    monkeypatch.delenv("SLURM_JOB_ID")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert allocation_summary().startswith("CUDA_VISIBLE_DEVICES=(unset), ")


# --- the workflow: two GPU jobs at once ---------------------------------------------------------------------------

# The image embeddings of one test patient's slices in both fusions: two real GPU jobs of the workflow (rule
# embed_slices), removed from a copy of the shared complete run so that both are ready at the same moment.
PATIENT = "HN04"
GPU_TARGETS = [f"results/embeddings/{fusion}/{PATIENT}.npz" for fusion in ("ct", "multimodal")]


def device_intervals(log_dir: Path) -> dict[str, tuple[str, datetime, datetime]]:
    """Job log -> (simulated device, time the slot was taken, time it was released)."""

    def stamp(line: str) -> datetime:
        return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")

    intervals = {}
    for log in log_dir.rglob("*.log"):
        lines = log.read_text().splitlines()
        took = [ln for ln in lines if "running on simulated GPU" in ln]
        released = [ln for ln in lines if "released simulated GPU" in ln]
        if took:
            assert len(took) == len(released) == 1, log
            device = took[0].split("running on simulated GPU ")[1].split()[0]
            assert released[0].endswith(f"released simulated GPU {device}")
            intervals[str(log.relative_to(log_dir))] = (device, stamp(took[0]), stamp(released[0]))
    return intervals


def test_two_gpu_jobs_run_side_by_side_each_on_its_own_device(complete_run, tmp_path):
    workdir = complete_run.copy(tmp_path / "run")
    assert not device_intervals(workdir / "logs")  # the complete run computed on the CPU, no simulated device
    for target in GPU_TARGETS:
        (workdir / target).unlink()
    # room for both and two GPUs
    env = {SIMULATED_GPUS_ENV: "0,1", "HNSEG_GPU_LOCK_DIR": str(tmp_path / "locks")}
    complete_run.run(*GPU_TARGETS, "--cores", "4", "--resources", "gpu=2", workdir=workdir, env=env)
    jobs = device_intervals(workdir / "logs")
    assert set(jobs) == {f"embed_slices/{fusion}/{PATIENT}.log" for fusion in ("ct", "multimodal")}
    (device_a, start_a, end_a), (device_b, start_b, end_b) = jobs.values()
    assert start_a < end_b and start_b < end_a, f"the two GPU jobs did not overlap: {jobs}"
    assert {device_a, device_b} == {"0", "1"}
