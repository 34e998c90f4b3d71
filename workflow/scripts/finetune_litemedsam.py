"""Adapter for rule finetune_litemedsam: fine-tune on the train shards, keep the best epoch on the val shards."""

import hashlib
import json
from pathlib import Path

import torch

from hnseg.gpu import job_device
from hnseg.runlog import log_to_file
from hnseg.sam.train import FinetuneConfig, finetune

sm = snakemake
log = log_to_file(sm.log[0])
torch.set_num_threads(sm.threads)
cfg = FinetuneConfig.from_params(dict(sm.params.finetune), sm.params.margin_mm)
out_dir = Path(sm.output.best).parent
# last.pth is deliberately not a declared output: Snakemake would delete it before a rerun, and it is what a
# killed or timed-out job resumes from. Its run key ties it to these settings and data.
run_key = hashlib.sha256(
    json.dumps(
        [dict(sm.params.finetune), list(sm.params.margin_mm), list(sm.input.train), list(sm.input.val), sm.params.code]
    ).encode()
).hexdigest()
with job_device(sm.params.device) as device:
    best = finetune(sm.input.train, sm.input.val, out_dir, cfg, device, run_key=run_key)
log.info("best epoch %s, validation Dice loss %.4f", best["epoch"], best["val_dice_loss"])
