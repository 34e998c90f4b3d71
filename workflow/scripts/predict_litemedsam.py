"""Adapter for rule predict_litemedsam: label volumes of the evaluated patients and the timings."""

import json

import torch

from hnseg.gpu import job_device
from hnseg.runlog import log_to_file
from hnseg.sam.infer import predict_patients
from hnseg.sam.model import load_litemedsam

sm = snakemake
log = log_to_file(sm.log[0])
torch.set_num_threads(sm.threads)
cases = [
    {"patient": p, "shard": shard, "prompts": prompts, "reference": reference, "out": out}
    for p, shard, prompts, reference, out in zip(
        sm.params.patients, sm.input.shards, sm.input.prompts, sm.input.references, sm.output.predictions, strict=True
    )
]
with job_device(sm.params.device) as device:
    model = load_litemedsam(sm.input.get("checkpoint"), device=device)
    timings = predict_patients(model, cases, device, sm.params.threshold)
timings["variant"], timings["fusion"] = sm.wildcards.variant, sm.wildcards.fusion
with open(sm.output.timings, "w") as fh:
    json.dump(timings, fh, indent=1)
log.info("%s", json.dumps(timings["overall"]))
