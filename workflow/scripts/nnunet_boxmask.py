"""Adapter for rule nnunet_boxmask: the no-box nnU-Net prediction kept only inside the prompts' boxes."""

import json
import logging
from pathlib import Path

from hnseg.nnunet.run import boxmask_predictions
from hnseg.runlog import run_stage


def main(sm):
    predictions, out_dir = Path(sm.input.predictions), Path(sm.output[0])
    cases = [
        {"patient": p, "prediction": predictions / f"{p}.nii.gz", "prompts": prompts, "out": out_dir / f"{p}.nii.gz"}
        for p, prompts in zip(sm.params.patients, sm.input.prompts, strict=True)
    ]
    summary = boxmask_predictions(cases)
    (out_dir / "boxmask.json").write_text(json.dumps(summary, indent=1) + "\n")
    for patient, counts in summary.items():
        logging.getLogger("hnseg").info("%s: %s", patient, counts)


if __name__ == "__main__":
    run_stage(snakemake.log[0], main, snakemake)
