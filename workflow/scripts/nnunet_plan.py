"""Adapter for rule nnunet_plan: nnU-Net's integrity check, fingerprint, plans and preprocessing of one dataset."""

import contextlib
import sys
from pathlib import Path

from hnseg.nnunet.run import plan_and_preprocess
from hnseg.runlog import run_stage


def main(sm):
    root = Path(sm.output[0]).parents[1]  # results/nnunet
    with contextlib.redirect_stdout(sys.stderr):  # nnU-Net prints its progress: into the log
        plan_and_preprocess(
            root,
            sm.params.dataset_id,
            sm.params.configuration,
            processes=sm.threads,
            foreground_samples=sm.params.foreground_samples,
        )


# nnU-Net's pools start fresh interpreters ("spawn") that import this file again: run only in the job's process.
if __name__ == "__main__":
    run_stage(snakemake.log[0], main, snakemake)
