"""glibc's allocator in the jobs that run LiteMedSAM inference: keep freed memory.

By default glibc serves every buffer above 32 MB (PyTorch's im2col buffers of the TinyViT convolutions among them)
with a fresh mmap and unmaps it when freed, so every encoder call page-faults about 1.5 GB back in: on two CPU
cores that was 0.75-0.9 s of system time per slice beside 1.0-1.5 s of computation (benchmarks/RESULTS.md).
Served from the heap and kept there (:data:`MALLOC_TUNING`), the same calls page-fault almost never. The mask
decoder gains less: 12,000-19,000 page faults per call of two boxes fall to 1,000-1,600, and its CPU time by 12-17 %
(one thread, 2026-12-05).

That was measured for the forward passes of LiteMedSAM, so only the jobs that run them get the settings: rule
embed_slices, predict_litemedsam, and the fine-tuning of a frozen encoder (which encodes its flipped training slices
and trains the decoder alone). glibc reads the settings when a process starts, so such a job's script calls
:func:`keep_freed_memory` first: it re-executes the same process (same pid, same arguments) with the settings added
to its environment. nnU-Net's training asks for them only when it will compute on the CPU
(:func:`keep_freed_memory_on_the_cpu`): there its 3D convolutions page-faulted 8.2 million times an epoch of the demo
(26 s of system time in a 66 s epoch); with the settings 1.3-1.5 million (5 s), the epoch 15 % shorter, at a peak of
6.2 GB instead of 4.0 GB (2026-12-05). On a GPU its tensors live in device memory and its data augmentation workers
would only grow. Other jobs (import, registration, ...) keep glibc's defaults.

Keeping freed memory has a price where the encoder is trained: the heap fragments and the peak resident memory of a
batch-8 step with gradient checkpointing grew from 7.1 GB to 15.9 GB. Training with the encoder therefore never asks
for the settings, and switches back to returning memory (:func:`return_freed_memory`) in case its process has them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import platform
import sys

log = logging.getLogger(__name__)

MALLOC_TUNING = {"MALLOC_MMAP_THRESHOLD_": str(4 << 30), "MALLOC_TRIM_THRESHOLD_": str(16 << 30)}
"""No mmap below 4 GB, no trimming of the heap below 16 GB of free memory."""

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
_GLIBC_MMAP_THRESHOLD_MAX = 32 << 20  # the largest threshold mallopt accepts on 64-bit glibc
_GLIBC_TRIM_THRESHOLD_DEFAULT = 128 << 10


def is_glibc() -> bool:
    return platform.libc_ver()[0] == "glibc"


def tuned_environment(environ) -> dict[str, str]:
    """`environ` with :data:`MALLOC_TUNING` added; a value the user set already is kept."""
    return {**MALLOC_TUNING, **environ}


def keep_freed_memory() -> None:
    """Make this process keep freed memory in glibc's heap: unless its environment already has every variable of
    :data:`MALLOC_TUNING`, re-execute it (os.execve: same pid, same interpreter options and arguments) with them.

    Call it first thing in a script, before anything large is allocated: the process starts again from the top,
    and the second time this returns at once. A no-op where the C library is not glibc."""
    if all(name in os.environ for name in MALLOC_TUNING) or not is_glibc():
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, sys.orig_argv, tuned_environment(os.environ))


def keep_freed_memory_on_the_cpu(device: str) -> None:
    """:func:`keep_freed_memory`, for a job whose device setting is `device` (auto | cpu | cuda), when it will
    compute on the CPU: `cpu`, or `auto` where torch sees no CUDA device."""
    if device != "cpu":
        import torch  # only here: the re-executed process imports it again anyway

        if torch.cuda.is_available():
            return
    keep_freed_memory()


def keeps_freed_memory() -> bool:
    """Whether this process started with every variable of :data:`MALLOC_TUNING` (what a job's log reports)."""
    return all(name in os.environ for name in MALLOC_TUNING)


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
