"""glibc's allocator settings: only in the processes that ask for them, and what they buy the encoder."""

import os
import subprocess
import sys

from hnseg.memory import MALLOC_TUNING, tuned_environment

REEXEC = """
import os, sys
print(os.getpid(), sys.argv[1:], flush=True)
from hnseg.memory import keep_freed_memory, keeps_freed_memory
keep_freed_memory()
print(os.getpid(), sys.argv[1:], keeps_freed_memory(), os.environ["MALLOC_MMAP_THRESHOLD_"], os.environ["MALLOC_TRIM_THRESHOLD_"])
"""


def plain_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}


def run(code: str, env: dict, *args: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-X", "utf8", "-c", code, *args], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_a_process_that_asks_reexecutes_itself_once_with_the_settings():
    lines = run(REEXEC, plain_environment(), "--an", "argument")
    assert len(lines) == 3  # the first print, then the re-executed script from the top
    pid, args = lines[0].split(" ", 1)
    assert lines[1] == lines[0]  # the same process (pid), the same arguments
    assert (
        lines[2]
        == f"{pid} {args} True {MALLOC_TUNING['MALLOC_MMAP_THRESHOLD_']} {MALLOC_TUNING['MALLOC_TRIM_THRESHOLD_']}"
    )


def test_a_users_own_setting_is_kept_and_a_tuned_process_is_not_reexecuted():
    user = {**plain_environment(), "MALLOC_TRIM_THRESHOLD_": "123"}
    lines = run(REEXEC, user)
    assert len(lines) == 3 and lines[2].endswith(f"True {MALLOC_TUNING['MALLOC_MMAP_THRESHOLD_']} 123")
    assert len(run(REEXEC, tuned_environment(plain_environment()))) == 2  # nothing to add: no second start


ON_THE_CPU = """
import os, sys, torch
if sys.argv[2] == "with-cuda":
    torch.cuda.is_available = lambda: True  # as on a GPU node
print(os.getpid(), flush=True)
from hnseg.memory import keep_freed_memory_on_the_cpu
keep_freed_memory_on_the_cpu(sys.argv[1])
"""


def test_nnunet_training_keeps_freed_memory_only_where_it_computes_on_the_cpu():
    # this machine's torch has no CUDA: `auto` and `cpu` re-execute with the settings (two starts, one pid)
    for device in ("auto", "cpu"):
        starts = run(ON_THE_CPU, plain_environment(), device, "no-cuda")
        assert len(starts) == 2 and starts[0] == starts[1], device
    # where torch sees a CUDA device, `auto` computes there: glibc's defaults, one start; `cpu` still asks
    assert len(run(ON_THE_CPU, plain_environment(), "auto", "with-cuda")) == 1
    assert len(run(ON_THE_CPU, plain_environment(), "cpu", "with-cuda")) == 2


ENCODER_PAGE_FAULTS = """
import resource, torch
from hnseg.sam.model import load_litemedsam
torch.set_num_threads(1)
model, image = load_litemedsam(), torch.rand(1, 3, 256, 256)
with torch.inference_mode():
    model.image_encoder(image)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    model.image_encoder(image)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def test_the_settings_stop_the_encoder_page_faulting():
    """Without them each encoder call faults its large buffers back in (hnseg.memory)."""
    untuned = int(run(ENCODER_PAGE_FAULTS, plain_environment())[-1])
    tuned = int(run(ENCODER_PAGE_FAULTS, tuned_environment(plain_environment()))[-1])
    assert untuned > 100_000  # about 1.5 GB of 4 KB pages per call
    # about 80x fewer on an idle machine (4,700 against 400,000); 8x when other jobs pressed on memory (49,152
    # against 409,949 in a loaded CI rehearsal): a fivefold drop is what the settings must always give
    assert tuned < untuned / 5
