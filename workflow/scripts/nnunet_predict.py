"""Adapter for rule nnunet_predict: label volumes of the evaluated patients on the CT grid, and the timings."""

import contextlib
import json
import sys
from pathlib import Path

from hnseg.gpu import job_device
from hnseg.nnunet.dataset import image_name
from hnseg.nnunet.run import predict
from hnseg.runlog import run_stage


def main(sm):
    raw = Path(sm.input.raw)
    root = raw.parents[1]  # results/nnunet
    n_channels = len(json.loads((raw / "dataset.json").read_text())["channel_names"])
    out_dir = Path(sm.output[0])
    out_dir.mkdir(parents=True, exist_ok=True)
    cases = [
        {
            "patient": p,
            "images": [Path(sm.input.images) / image_name(p, i) for i in range(n_channels)],
            "reference": reference,
            "out": out_dir / f"{p}.nii.gz",
        }
        for p, reference in zip(sm.params.patients, sm.input.references, strict=True)
    ]
    with contextlib.redirect_stdout(sys.stderr), job_device(sm.params.device) as device:
        timings = predict(
            root, sm.params.dataset_id, sm.params.configuration, cases, device, sm.threads, tta=sm.params.tta
        )
    timings["variant"] = sm.wildcards.nnunet_variant
    (out_dir / "timings.json").write_text(json.dumps(timings, indent=1) + "\n")


if __name__ == "__main__":
    run_stage(snakemake.log[0], main, snakemake)
