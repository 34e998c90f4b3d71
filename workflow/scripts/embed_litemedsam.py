"""Adapter for rule embed_slices: the official encoder's embedding of every slice of one patient's shard."""

from hnseg.memory import keep_freed_memory

keep_freed_memory()  # re-executes this process with the allocator settings of the encoder (hnseg.memory)

import json  # noqa: E402

import torch  # noqa: E402

from hnseg.gpu import job_device  # noqa: E402
from hnseg.runlog import log_to_file  # noqa: E402
from hnseg.sam.embeddings import bytes_per_slice, embed_shard, write_embeddings  # noqa: E402
from hnseg.sam.model import load_litemedsam  # noqa: E402

sm = snakemake
log = log_to_file(sm.log[0])
torch.set_num_threads(sm.threads)
with job_device(sm.params.device) as device:
    embeddings = embed_shard(load_litemedsam(device=device), sm.input.shard, device, sm.params.dtype)
write_embeddings(sm.output[0], embeddings)
n = len(embeddings.slice_index)
log.info(
    "%s",
    json.dumps(
        {
            "slices": n,
            "dtype": sm.params.dtype,
            "mib": round(n * bytes_per_slice(sm.params.dtype) / 2**20, 1),
            "encoder_s_per_slice": float(embeddings.encoder_s.mean()) if n else None,
            "device": str(device),
        }
    ),
)
