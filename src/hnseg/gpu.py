"""Which device a GPU job runs on.

Snakemake limits how many `gpu=1` jobs run at once (`--resources gpu=2`) but does not say which GPU each gets.
Locally, each job therefore takes a slot: an exclusive lock on one file per visible device, held for the job's
lifetime and released by the kernel even if the job dies. Under SLURM the allocation already restricts
CUDA_VISIBLE_DEVICES to the job's GPU(s), so the first visible device is used. Without CUDA, the CPU.

Every job logs what it was given (CUDA_VISIBLE_DEVICES, the SLURM job, the CPUs it may use) and the device it took,
so a job's log shows where it ran.

Two environment variables, both optional:

- ``HNSEG_GPU_LOCK_DIR``: the folder of the slot locks (default: a per-user folder in the system's temporary
  folder). Every Snakemake run on the machine that should share the GPUs must use the same folder.
- ``HNSEG_SIMULATED_GPUS``: for tests only, a comma-separated list of device ids (e.g. ``0,1``) that stand in for
  the machine's GPUs. A job then takes a real slot lock over these ids, logs the id it got and computes on the
  CPU. It lets a machine without a GPU show that jobs run side by side, each on its own device. Never set it for
  a real run: the jobs would not use the GPUs.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch

log = logging.getLogger(__name__)

DEFAULT_LOCK_DIR = Path(tempfile.gettempdir()) / f"hnseg-gpu-slots-{os.getuid()}"
LOCK_DIR_ENV = "HNSEG_GPU_LOCK_DIR"
SIMULATED_GPUS_ENV = "HNSEG_SIMULATED_GPUS"


def simulated_gpu_ids() -> list[str]:
    """The device ids named by HNSEG_SIMULATED_GPUS, [] when it is unset or empty."""
    value = os.environ.get(SIMULATED_GPUS_ENV, "")
    return [v.strip() for v in value.split(",") if v.strip()]


def lock_dir_from_env() -> Path:
    """HNSEG_GPU_LOCK_DIR if set, else the per-user default."""
    value = os.environ.get(LOCK_DIR_ENV)
    return Path(value) if value else DEFAULT_LOCK_DIR


def visible_devices() -> list[int]:
    """Indices of the CUDA devices this process can use (after CUDA_VISIBLE_DEVICES), [] without CUDA.

    With HNSEG_SIMULATED_GPUS set, the indices of the simulated devices."""
    simulated = simulated_gpu_ids()
    if simulated:
        return list(range(len(simulated)))
    if not torch.cuda.is_available():
        return []
    return list(range(torch.cuda.device_count()))


def slot_key(index: int) -> str:
    """A name for a device that is the same for every process on the machine: its physical id if known.

    Simulated devices are named "sim<id>", so that their locks never block a real GPU's."""
    simulated = simulated_gpu_ids()
    if simulated:
        return f"sim{simulated[index]}"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:
        ids = [v.strip() for v in visible.split(",") if v.strip()]
        if index < len(ids):
            return ids[index]
    return str(index)


def allocation_summary() -> str:
    """What the job was given: CUDA_VISIBLE_DEVICES, the SLURM job and its CPUs, the CPUs this process may use."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    parts = [f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '(unset)')}"]
    if os.environ.get("SLURM_JOB_ID"):
        parts.append(f"SLURM job {os.environ['SLURM_JOB_ID']}")
        for name in ("SLURM_CPUS_PER_TASK", "SLURM_JOB_GPUS", "SLURM_STEP_GPUS"):
            if os.environ.get(name):
                parts.append(f"{name}={os.environ[name]}")
    parts.append(f"{usable} CPUs usable, {torch.get_num_threads()} torch threads")
    return ", ".join(parts)


@contextlib.contextmanager
def gpu_slot(
    devices: list[int], lock_dir: Path = DEFAULT_LOCK_DIR, poll_s: float = 2.0, timeout_s: float | None = None
) -> Iterator[int]:
    """Hold an exclusive lock on one of `devices` (the first free one) and yield its index.

    Waits (polling) while all are taken; raises TimeoutError after timeout_s.
    """
    lock_dir.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    while True:
        for index in devices:
            handle = (lock_dir / f"gpu-{slot_key(index)}.lock").open("a+")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            try:
                handle.seek(0)
                handle.truncate()
                handle.write(f"{os.getpid()}\n")
                handle.flush()
                yield index
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
                handle.close()
            return
        if timeout_s is not None and time.monotonic() - start > timeout_s:
            raise TimeoutError(f"no free GPU slot among {devices} after {timeout_s} s")
        time.sleep(poll_s)


@contextlib.contextmanager
def job_device(prefer: str = "auto", lock_dir: Path | None = None) -> Iterator[torch.device]:
    """The device for one GPU job: `prefer` is "auto" (a free GPU slot, else the CPU), "cpu", or "cuda".

    lock_dir defaults to HNSEG_GPU_LOCK_DIR, else DEFAULT_LOCK_DIR."""
    lock_dir = lock_dir_from_env() if lock_dir is None else lock_dir
    log.info("job allocation: %s", allocation_summary())
    simulated = simulated_gpu_ids()
    if simulated and prefer == "auto":
        with gpu_slot(visible_devices(), lock_dir) as index:
            log.info(
                "running on simulated GPU %s (%s=%s, slot lock in %s); computing on the CPU",
                simulated[index],
                SIMULATED_GPUS_ENV,
                ",".join(simulated),
                lock_dir,
            )
            try:
                yield torch.device("cpu")
            finally:
                log.info("released simulated GPU %s", simulated[index])
        return
    devices = [] if simulated else visible_devices()
    if prefer == "cpu" or not devices:
        if prefer == "cuda":
            raise RuntimeError("a CUDA device was requested but none is visible")
        log.info("running on the CPU (%d threads)", torch.get_num_threads())
        yield torch.device("cpu")
        return
    if os.environ.get("SLURM_JOB_ID") and os.environ.get("CUDA_VISIBLE_DEVICES"):
        log.info("running on SLURM's GPU %s", slot_key(0))
        yield torch.device("cuda", 0)
        return
    with gpu_slot(devices, lock_dir) as index:
        log.info("running on GPU %s (slot lock in %s)", slot_key(index), lock_dir)
        torch.cuda.set_device(index)
        try:
            yield torch.device("cuda", index)
        finally:
            log.info("released GPU %s", slot_key(index))
