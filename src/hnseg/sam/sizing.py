"""Memory and time that LiteMedSAM jobs ask the scheduler for, from the size of their inputs and measured costs.

Read by the workflow's resource functions at parse and scheduling time, so it imports neither torch nor the model.
Costs are per unit of work as measured on the CPU here (2 threads, x86_64 with AVX2, on a machine shared with
other jobs: results/benchmarks/ of a tiny run, 2026-12-05; idle it is 3-6x faster), or taken from the paper's GPU
run (about 0.7 s per batch-8 training step on one A40: 11 min per epoch of about 28,000 samples on two), with a
margin: a runtime that is too short kills a job. Runtimes are minutes, memory MB of peak resident set of the job's
process (with hnseg.memory's settings that is also what the heap keeps).
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np

# Peak RSS: embed_slices measured 780-906 MB (12 slices; frames are 256x256 whatever the CT, so it hardly grows),
# a prediction that only decodes 590 MB (two patients).
ENCODER_JOB_MB = 1500
DECODER_JOB_MB = 1000
# Fine-tuning: an encoder job, plus per slice in memory (a frame, 192 KiB, and its target map, 128 KiB), plus a
# frozen encoder's cached embeddings (2 or 4 MiB each), plus training activations per batch of 8 on the CPU (7.1 GB
# with gradient checkpointing, 19.2 GB without; the decoder alone under 1 GB). A frozen tiny run measured 1,229 MB.
SLICE_MB = 0.33
TRAIN_ACTIVATIONS_MB = {"checkpointed": 8000, "full": 20000, "decoder": 1000}
EMBEDDING_MB = {"float16": 2.0, "float32": 4.0}

ENCODER_S_PER_SLICE = 8.0  # measured 5.5-7.7 s under load (idle 1.0-1.5 s)
DECODER_S_PER_BOX = 1.2  # measured 1.1-1.2 s under load (idle 0.07-0.1 s)
BOXES_PER_SLICE = 2.0  # realistic cohorts: GTV-T and a node or two on many slices
STEP_S = {"cpu_encoder": 150.0, "cpu_decoder": 6.0, "gpu": 1.0}  # one batch-8 step (CPU idle: 55-60 and 1.1-1.5)
SAMPLES_PER_SLICE = 1.5  # targets per slice with a target
DEFAULT_SLICES = 40  # a shard not yet written: slices of a realistic head-and-neck GTV


def shard_slices(path: str | Path) -> int:
    """Slices in a shard (hnseg.fusion.write_shard), from its index alone; DEFAULT_SLICES before it exists."""
    try:
        with np.load(path) as shard:  # an npz reads only the member asked for
            return int(shard["slice_index"].shape[0])
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return DEFAULT_SLICES


def total_slices(paths) -> int:
    return sum(shard_slices(p) for p in paths)


def embed_minutes(slices: int) -> int:
    return 5 + math.ceil(slices * ENCODER_S_PER_SLICE / 60)


def predict_minutes(slices: int, encodes: bool) -> int:
    per_slice = BOXES_PER_SLICE * DECODER_S_PER_BOX + (ENCODER_S_PER_SLICE if encodes else 0.0)
    return 5 + math.ceil(slices * per_slice / 60)


def predict_mb(encodes: bool) -> int:
    return ENCODER_JOB_MB if encodes else DECODER_JOB_MB


def finetune_steps(train_slices: int, cfg: dict) -> int:
    """Optimiser steps of the whole fine-tuning."""
    per_epoch = math.ceil(train_slices * SAMPLES_PER_SLICE / cfg["batch_size"])
    if cfg.get("max_steps_per_epoch"):
        per_epoch = min(per_epoch, cfg["max_steps_per_epoch"])
    return cfg["max_epochs"] * per_epoch


def finetune_minutes(train_slices: int, val_slices: int, cfg: dict, device: str, embedding_dtype: str) -> int:
    """A CPU job (device cpu) at CPU costs; otherwise at GPU costs, as a cluster runs it."""
    batch_scale = cfg["batch_size"] / 8
    if device == "cpu":
        step = STEP_S["cpu_encoder" if cfg["train_encoder"] else "cpu_decoder"] * batch_scale
    else:
        step = STEP_S["gpu"] * batch_scale
    steps = finetune_steps(train_slices, cfg)
    encodes = 0 if cfg["train_encoder"] or device != "cpu" else min(4 * train_slices, steps * cfg["batch_size"])
    validation = cfg["max_epochs"] * val_slices * SAMPLES_PER_SLICE * DECODER_S_PER_BOX
    return 10 + math.ceil((steps * step + encodes * ENCODER_S_PER_SLICE + validation) / 60)


def finetune_mb(train_slices: int, val_slices: int, cfg: dict, embedding_dtype: str) -> int:
    in_memory = (train_slices + val_slices) * SLICE_MB
    if cfg["train_encoder"]:
        activations = TRAIN_ACTIVATIONS_MB["checkpointed" if cfg.get("gradient_checkpointing") else "full"]
        cache = 0.0
    else:
        activations = TRAIN_ACTIVATIONS_MB["decoder"]
        drawn = min(4 * train_slices * SAMPLES_PER_SLICE, finetune_steps(train_slices, cfg) * cfg["batch_size"])
        cache = (drawn + val_slices) * EMBEDDING_MB[embedding_dtype]
    return math.ceil(ENCODER_JOB_MB + in_memory + activations * cfg["batch_size"] / 8 + cache)
