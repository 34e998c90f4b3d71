"""Adapter for rule nnunet_train: fold 0 of one dataset (resumable), then nnU-Net's validation; the training record.

On the CPU it runs with the allocator settings that keep freed memory (hnseg.memory)."""

from hnseg.memory import keep_freed_memory_on_the_cpu

if __name__ == "__main__":
    keep_freed_memory_on_the_cpu(snakemake.params.device)  # re-executes this process with the settings

import contextlib
import json
import logging
import sys
from pathlib import Path

from hnseg.gpu import job_device
from hnseg.nnunet.run import train
from hnseg.runlog import run_stage


def main(sm):
    root = Path(sm.output[0]).parents[2]  # results/nnunet
    p = sm.params
    with contextlib.redirect_stdout(sys.stderr), job_device(p.device) as device:
        record = train(
            root,
            p.dataset_id,
            p.configuration,
            p.epochs,
            p.iterations_per_epoch,
            p.val_iterations_per_epoch,
            device,
            threads=sm.threads,
            seed=p.seed,
            checkpoint_every=p.checkpoint_every,
            validate=p.final_validation,
            run_key=json.dumps([p.code, list(sm.input)]),
        )
    Path(sm.output[0]).write_text(json.dumps(record, indent=1) + "\n")
    logging.getLogger("hnseg").info("trained %s: %d epochs", record["dataset"], record["epochs"])


# nnU-Net's validation export pool starts fresh interpreters ("spawn") that import this file again.
if __name__ == "__main__":
    run_stage(snakemake.log[0], main, snakemake)
