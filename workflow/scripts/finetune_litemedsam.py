"""Adapter for rule finetune_litemedsam: fine-tune on the train shards, keep the best epoch on the val shards.

A frozen encoder encodes the flipped training slices itself: that job runs with the allocator settings of the
encoder (hnseg.memory); a trained encoder never does (they would fragment its heap)."""

from hnseg.memory import keep_freed_memory

sm = snakemake
if not sm.params.finetune["train_encoder"]:
    keep_freed_memory()  # re-executes this process with the settings

from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from hnseg.gpu import job_device  # noqa: E402
from hnseg.runlog import log_to_file  # noqa: E402
from hnseg.sam.train import FinetuneConfig, finetune  # noqa: E402

log = log_to_file(sm.log[0])
torch.set_num_threads(sm.threads)
cfg = FinetuneConfig.from_params(dict(sm.params.finetune), sm.params.margin_mm, sm.params.embedding_dtype)
# last.pth is deliberately not a declared output: Snakemake would delete it before a rerun, and it is what a
# killed or timed-out job resumes from. Its key ties it to these settings, this code and the inputs' contents.
with job_device(sm.params.device) as device:
    best = finetune(
        sm.input.train,
        sm.input.val,
        Path(sm.output.best).parent,
        cfg,
        device,
        train_prompts=sm.input.train_prompts,
        val_prompts=sm.input.val_prompts,
        val_embeddings=sm.input.get("val_embeddings"),
        settings={"code": sm.params.code},
    )
log.info("best epoch %s, validation Dice loss %.4f", best["epoch"], best["val_dice_loss"])
