"""Adapter for rule nnunet_boxmask: the no-box nnU-Net prediction kept only inside the prompts' boxes."""

import json
import logging
from pathlib import Path

from hnseg.nnunet.run import boxmask_predictions
from hnseg.runlog import run_stage


def main(sm):
    cases = [
        {"patient": p, "prediction": pred, "prompts": prompts, "out": out}
        for p, pred, prompts, out in zip(
            sm.params.patients, sm.input.predictions, sm.input.prompts, sm.output.predictions, strict=True
        )
    ]
    summary = boxmask_predictions(cases)
    Path(sm.output.summary).write_text(json.dumps(summary, indent=1) + "\n")
    for patient, counts in summary.items():
        logging.getLogger("hnseg").info("%s: %s", patient, counts)


if __name__ == "__main__":
    run_stage(snakemake.log[0], main, snakemake)
