"""Adapter for rule propagate_litemedsam: one 3D box per lesion propagated through the slices under a protocol
(hnseg.sam.propagate), for the evaluated patients; the decoder reads cached embeddings only."""

from hnseg.memory import keep_freed_memory

keep_freed_memory()  # re-executes this process with the settings of inference

import json  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from hnseg.gpu import job_device  # noqa: E402
from hnseg.runlog import log_to_file  # noqa: E402
from hnseg.sam.model import load_litemedsam  # noqa: E402
from hnseg.sam.propagate import propagate_patients  # noqa: E402

sm = snakemake
log = log_to_file(sm.log[0])
out_dir = Path(sm.output[0])
out_dir.mkdir(parents=True, exist_ok=True)
torch.set_num_threads(sm.threads)
cases = [
    {"patient": p, "boxes": boxes, "embeddings": [main, extra], "reference": ref, "out": out_dir / f"{p}.nii.gz"}
    for p, boxes, main, extra, ref in zip(
        sm.params.patients,
        sm.input.boxes,
        sm.input.embeddings,
        sm.input.box_embeddings,
        sm.input.references,
        strict=True,
    )
]
with job_device(sm.params.device) as device:
    model = load_litemedsam(sm.input.get("checkpoint"), device=device)
    timings = propagate_patients(model, cases, sm.wildcards.protocol, device, sm.params.floor_mm2)
timings["variant"], timings["fusion"] = sm.wildcards.variant, sm.wildcards.fusion
(out_dir / "timings.json").write_text(json.dumps(timings, indent=1) + "\n")
log.info("%s", json.dumps(timings["patients"]))
