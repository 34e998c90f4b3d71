"""Which device a GPU job runs on.

Snakemake limits how many `gpu=1` jobs run at once (`--resources gpu=2`) but does not say which GPU each gets.
Locally, each job therefore takes a slot: an exclusive lock on one file per visible device, held for the job's
lifetime and released by the kernel even if the job dies. Under SLURM the allocation already restricts
CUDA_VISIBLE_DEVICES to the job's GPU(s), so the first visible device is used. Without CUDA, the CPU.
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


def visible_devices() -> list[int]:
    """Indices of the CUDA devices this process can use (after CUDA_VISIBLE_DEVICES), [] without CUDA."""
    if not torch.cuda.is_available():
        return []
    return list(range(torch.cuda.device_count()))


def slot_key(index: int) -> str:
    """A name for a device that is the same for every process on the machine: its physical id if known."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:
        ids = [v.strip() for v in visible.split(",") if v.strip()]
        if index < len(ids):
            return ids[index]
    return str(index)


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
def job_device(prefer: str = "auto", lock_dir: Path = DEFAULT_LOCK_DIR) -> Iterator[torch.device]:
    """The device for one GPU job: `prefer` is "auto" (a free GPU slot, else the CPU), "cpu", or "cuda"."""
    devices = visible_devices()
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
        yield torch.device("cuda", index)
