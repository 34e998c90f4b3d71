"""How job processes use glibc's allocator: fast inference by keeping freed memory, lean training by returning it.

By default glibc serves every buffer above 32 MB (PyTorch's im2col buffers of the TinyViT convolutions among them)
with a fresh mmap and unmaps it when freed, so every encoder call page-faults about 1.5 GB back in: on two CPU
cores that was 0.75-0.9 s of system time per slice beside 1.0-1.5 s of computation (benchmarks/RESULTS.md).
Served from the heap and kept there, the same calls page-fault almost never. glibc reads these settings when a
process starts, so the workflow puts them in its own environment, which every job inherits.

Keeping freed memory has a price where the encoder is trained: the heap fragments and the peak resident memory of a
batch-8 step with gradient checkpointing grew from 7.1 GB to 15.9 GB. Training with the encoder therefore switches
back to returning memory (:func:`return_freed_memory`) before it allocates anything large.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from collections.abc import MutableMapping

log = logging.getLogger(__name__)

MALLOC_TUNING = {"MALLOC_MMAP_THRESHOLD_": str(4 << 30), "MALLOC_TRIM_THRESHOLD_": str(16 << 30)}
"""Environment of the job processes: no mmap below 4 GB, no trimming of the heap below 16 GB of free memory."""

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
_GLIBC_MMAP_THRESHOLD_MAX = 32 << 20  # the largest threshold mallopt accepts on 64-bit glibc
_GLIBC_TRIM_THRESHOLD_DEFAULT = 128 << 10


def tune_job_environment(environ: MutableMapping[str, str]) -> None:
    """Put :data:`MALLOC_TUNING` into ``environ`` (the Snakemake process's os.environ), keeping a user's values."""
    for name, value in MALLOC_TUNING.items():
        environ.setdefault(name, value)


def return_freed_memory() -> bool:
    """From now on, serve large buffers with mmap and return freed memory to the OS (glibc's own behaviour).

    Returns False where the C library is not glibc (nothing to undo there)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    ok = mallopt(_M_MMAP_THRESHOLD, _GLIBC_MMAP_THRESHOLD_MAX) and mallopt(
        _M_TRIM_THRESHOLD, _GLIBC_TRIM_THRESHOLD_DEFAULT
    )
    if not ok:
        log.warning("could not restore glibc's mmap and trim thresholds: the peak memory of training may be higher")
    return bool(ok)
