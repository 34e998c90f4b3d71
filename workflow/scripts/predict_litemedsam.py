"""Adapter for rule predict_litemedsam: label volumes of the evaluated patients and the timings.

The slices' embeddings come from rule embed_slices, unless the model has its own (fine-tuned) encoder: the job then
gets shards instead and encodes them itself. Either way it runs with the allocator settings of inference
(hnseg.memory)."""

from hnseg.memory import keep_freed_memory

keep_freed_memory()  # re-executes this process with the settings

sm = snakemake
encodes = "shards" in sm.input.keys()

import json  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from hnseg.gpu import job_device  # noqa: E402
from hnseg.runlog import log_to_file  # noqa: E402
from hnseg.sam.infer import predict_patients  # noqa: E402
from hnseg.sam.model import load_litemedsam  # noqa: E402

log = log_to_file(sm.log[0])
out_dir = Path(sm.output[0])
out_dir.mkdir(parents=True, exist_ok=True)
torch.set_num_threads(sm.threads)
# each case: a shard to encode, or the file of its slices' embeddings
source, files = ("shard", sm.input.shards) if encodes else ("embeddings", sm.input.embeddings)
cases = [
    {"patient": p, source: slices, "prompts": prompts, "reference": reference, "out": out_dir / f"{p}.nii.gz"}
    for p, slices, prompts, reference in zip(
        sm.params.patients, files, sm.input.prompts, sm.input.references, strict=True
    )
]
with job_device(sm.params.device) as device:
    model = load_litemedsam(sm.input.get("checkpoint"), device=device)
    timings = predict_patients(model, cases, device, sm.params.threshold, sm.params.embedding_dtype)
timings["variant"], timings["fusion"] = sm.wildcards.variant, sm.wildcards.fusion
with open(out_dir / "timings.json", "w") as fh:
    json.dump(timings, fh, indent=1)
log.info("%s", json.dumps(timings["overall"]))
