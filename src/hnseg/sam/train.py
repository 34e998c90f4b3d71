"""Fine-tuning LiteMedSAM on the training shards, selecting the epoch on the validation shards.

The paper's recipe (DESIGN.md section 1; reference/litemedsam.md 1.6 and 2): a sample is one target on one slice;
its box is the target's tight box pushed out by the prompt rule (hnseg.prompts.perturb_box: independent uniform
0-20 mm per side, in CT pixels, then mapped into the 256 frame as every prompt is); random left-right and up-down
flips; loss = Dice + BCE + MSE between the predicted IoU and the IoU of the thresholded prediction; AdamW (lr 3e-4,
weight decay 0.01), batch 8; ReduceLROnPlateau (factor 0.9, patience 5) stepped on the epoch's training loss; the
epoch with the lowest validation Dice loss is kept. Validation runs in eval mode, without flips, on the very boxes
the prediction gets (the prompts of the validation patients).

Targets and their tight boxes come from the prompts (`results/prompts/{p}.json`), masks from the shard's target
map (the same ids, hnseg.prompts.split_instances), so a training box and a test box of the same target and seed
key are the same box.

Everything random is drawn from generators seeded by (seed, epoch, sample), so a run killed after any epoch and
resumed from `last.pth` ends with exactly the weights of an uninterrupted run. `last.pth` also holds the best
epoch's weights, so that `best.pth` and `history.csv` are written whenever training ends, even by a rerun that
resumes after the last epoch and trains nothing. Its key is a digest of the settings and of the contents (not the
paths) of every shard, prompt and embedding file: changed data start from the official weights.

Mixed precision (`amp`): bfloat16 autocast where the device supports it, else float16 with a gradient scaler, else
float32; `auto` picks bfloat16 on CUDA devices that have it, float16 with the scaler on older CUDA devices, and
float32 on the CPU.

For CPUs, `train_encoder: false` freezes the image encoder (eval mode, no gradients) and caches its embeddings per
(slice, flips); the unflipped validation embeddings come from rule embed_slices. `max_steps_per_epoch` and
`max_val_samples` cap the work: the demo's way to exercise the whole loop.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from hnseg.errors import InputError
from hnseg.fusion import FrameGeometry, read_shard
from hnseg.memory import return_freed_memory
from hnseg.prompts import Prompt, perturb_box, read_prompts
from hnseg.sam.embeddings import read_embeddings
from hnseg.sam.frame import EMBEDDING_DTYPES, encode_image, frame_tensor
from hnseg.sam.model import LiteMedSAM, load_litemedsam

log = logging.getLogger(__name__)

AMP_MODES = ("auto", "bf16", "fp16", "off")


@dataclass
class FinetuneConfig:
    max_epochs: int = 20
    batch_size: int = 8
    lr: float = 3e-4
    weight_decay: float = 0.01
    loss_weights: dict = field(default_factory=lambda: {"dice": 1.0, "bce": 1.0, "iou_mse": 1.0})
    plateau: dict = field(default_factory=lambda: {"factor": 0.9, "patience": 5})
    augment_flips: bool = True
    margin_mm: tuple[float, float] = (0.0, 20.0)
    max_steps_per_epoch: int | None = None
    max_val_samples: int | None = None
    train_encoder: bool = True
    gradient_checkpointing: bool = False
    amp: str = "auto"
    embedding_dtype: str = "float16"  # of the frozen encoder's embeddings, as rule embed_slices stores them
    seed: int = 2024

    @classmethod
    def from_params(cls, params: dict, margin_mm, embedding_dtype: str = "float16") -> FinetuneConfig:
        known = {k: params[k] for k in cls.__dataclass_fields__ if k in params}
        return cls(**known, margin_mm=tuple(margin_mm), embedding_dtype=embedding_dtype)


@dataclass(frozen=True)
class Precision:
    """Autocast dtype (None: float32) and whether a gradient scaler guards float16 gradients from underflow."""

    dtype: torch.dtype | None
    scaler: bool

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=self.dtype)


def training_precision(amp: str, device: torch.device) -> Precision:
    """The precision `amp` (auto, bf16, fp16, off) means on `device` (module docstring)."""
    if amp not in AMP_MODES:
        raise ValueError(f"amp must be one of {', '.join(AMP_MODES)}, got {amp!r}")
    if amp == "auto":
        if device.type != "cuda":
            return Precision(None, False)
        amp = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return {
        "off": Precision(None, False),
        "bf16": Precision(torch.bfloat16, False),
        "fp16": Precision(torch.float16, True),
    }[amp]


# --- data ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    shard: int
    frame: int  # index in the shard
    prompt: Prompt  # the target: its slice, id, tight box and its test-time (perturbed) box, in CT pixels


class ShardSet:
    """The frames and target maps of a list of shards, their prompts, and every (slice, target) sample in them.

    `embeddings` (optional, one file per shard, from rule embed_slices) are the frozen official encoder's
    embeddings of the unflipped frames. `digest` covers the contents of everything read (not the paths)."""

    def __init__(self, shards: list, prompts: list, embeddings: list | None = None):
        if len(shards) != len(prompts) or (embeddings is not None and len(embeddings) != len(shards)):
            raise ValueError("one prompts file (and embeddings file, if any) per shard")
        self.images, self.instances, self.geometry, self.ct_shape_yx, self.spacing_xy = [], [], [], [], []
        self.embeddings: list[torch.Tensor] = []
        self.samples: list[Sample] = []
        digest = hashlib.sha256()
        for s, (shard_path, prompts_path) in enumerate(zip(shards, prompts, strict=True)):
            images, instances, slice_index, info = read_shard(shard_path)
            for name, array in (("images", images), ("instances", instances), ("slice_index", slice_index)):
                _update(digest, name, array)
            digest.update(json.dumps(info, sort_keys=True).encode())
            prompt_bytes = Path(prompts_path).read_bytes()
            digest.update(prompt_bytes)
            self.images.append(images)
            self.instances.append(instances)
            self.geometry.append(FrameGeometry(info["frame"]["height"], info["frame"]["width"], info["frame"]["size"]))
            self.ct_shape_yx.append(tuple(info["ct_shape_zyx"][1:]))
            self.spacing_xy.append(tuple(info["spacing_xyz_mm"][:2]))
            if embeddings is not None:
                cached = read_embeddings(embeddings[s])
                if not np.array_equal(cached.slice_index, slice_index):
                    raise InputError(
                        f"patient {info.get('patient')}: {embeddings[s]} holds other slices than {shard_path}; "
                        "rerun embed_slices for this patient (delete the file)"
                    )
                _update(digest, "embeddings", cached.embeddings.numpy())
                self.embeddings.append(cached.embeddings)
            self.samples += _samples_of(s, instances, slice_index, read_prompts(prompts_path), info, shard_path)
        self.digest = digest.hexdigest()

    def __len__(self) -> int:
        return len(self.samples)


def _update(digest, name: str, array: np.ndarray) -> None:
    array = np.ascontiguousarray(array)
    digest.update(f"{name}\0{array.dtype.str}\0{array.shape}\0".encode())
    digest.update(array.data)


def _samples_of(s: int, instances, slice_index, prompts: list[Prompt], info: dict, shard_path) -> list[Sample]:
    """The shard's (slice, target) samples: the prompts of each slice whose target shows in the frame."""
    by_slice: dict[int, dict[int, Prompt]] = {}
    for p in prompts:
        by_slice.setdefault(p.slice, {})[p.instance] = p
    samples = []
    for f, z in enumerate(int(v) for v in slice_index):
        in_frame = {int(t) for t in np.unique(instances[f]) if t}
        prompted = by_slice.get(z, {})
        if in_frame - set(prompted):
            raise InputError(
                f"patient {info.get('patient')}: slice {z} of {shard_path} has targets {sorted(in_frame - set(prompted))} "
                "that its prompts do not have; the shard and the prompts were made with different target settings "
                "(prompts.node_connectivity, prompts.target_unit): rerun fuse_slices and make_prompts"
            )
        # a target too small to survive the resize into the frame has no mask to learn from
        samples += [Sample(s, f, prompted[t]) for t in sorted(prompted) if t in in_frame]
    return samples


def sample_rng(seed: int, *key) -> np.random.Generator:
    digest = hashlib.sha256("\0".join(str(k) for k in ("hnseg-finetune", seed, *key)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "big"))


def training_box(
    data: ShardSet, sample: Sample, margin_mm: tuple[float, float], rng: np.random.Generator
) -> tuple[int, int, int, int]:
    """A fresh box for a training sample, in the 256 frame: the prompt rule (hnseg.prompts.perturb_box, in CT
    pixels) drawn from `rng`, mapped into the frame as the prediction maps its prompts. Given the generator
    hnseg.prompts.prompt_rng of the same (seed, patient, slice, target), it is the prompt's box."""
    box, _ = perturb_box(
        sample.prompt.tight, data.ct_shape_yx[sample.shard], data.spacing_xy[sample.shard], margin_mm, rng
    )
    return data.geometry[sample.shard].box_to_frame(box)


def flip_box(box: tuple[int, int, int, int], size: int, flip_lr: bool, flip_ud: bool) -> tuple[int, int, int, int]:
    """An inclusive frame box after flipping the size x size frame left-right and/or up-down."""
    x0, y0, x1, y1 = box
    if flip_lr:
        x0, x1 = size - 1 - x1, size - 1 - x0
    if flip_ud:
        y0, y1 = size - 1 - y1, size - 1 - y0
    return x0, y0, x1, y1


def make_item(data: ShardSet, sample: Sample, rng: np.random.Generator, cfg: FinetuneConfig, train: bool):
    """(image (3, 256, 256) in [0, 1], mask (1, 256, 256), box (4,) in the frame, flips) for one sample.

    Training: random flips and a fresh box from `rng`. Validation: no flips, and the prompt's own box."""
    geometry = data.geometry[sample.shard]
    image = frame_tensor(data.images[sample.shard][sample.frame], geometry)[0]
    target = data.instances[sample.shard][sample.frame] == sample.prompt.instance
    mask = torch.from_numpy(target.astype(np.float32))[None]
    if train:
        flip_lr = bool(cfg.augment_flips and rng.random() < 0.5)
        flip_ud = bool(cfg.augment_flips and rng.random() < 0.5)
        box = training_box(data, sample, cfg.margin_mm, rng)
    else:
        flip_lr = flip_ud = False
        box = geometry.box_to_frame(sample.prompt.box)
    if flip_lr:
        image, mask = image.flip(-1), mask.flip(-1)
    if flip_ud:
        image, mask = image.flip(-2), mask.flip(-2)
    box = flip_box(box, geometry.size, flip_lr, flip_ud)
    return image, mask, torch.tensor(box, dtype=torch.float32), (flip_lr, flip_ud)


# --- loss ---------------------------------------------------------------------------------------------------------


def dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1e-5) -> torch.Tensor:
    """Soft Dice loss on sigmoid probabilities with squared denominators, mean over samples."""
    p = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    dice = (2 * (p * t).sum(1) + smooth) / ((p * p).sum(1) + (t * t).sum(1) + smooth)
    return (1 - dice).mean()


def iou_of(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    pred = (logits > 0).flatten(1).float()
    t = target.flatten(1)
    inter = (pred * t).sum(1)
    union = pred.sum(1) + t.sum(1) - inter
    return (inter / union.clamp(min=1e-8)).unsqueeze(1)


# --- training -----------------------------------------------------------------------------------------------------


class Trainer:
    def __init__(self, model: LiteMedSAM, cfg: FinetuneConfig, device: torch.device):
        self.model, self.cfg, self.device = model.to(device), cfg, device
        self.precision = training_precision(cfg.amp, device)
        params = [
            p for name, p in model.named_parameters() if cfg.train_encoder or not name.startswith("image_encoder.")
        ]
        model.image_encoder.gradient_checkpointing = cfg.gradient_checkpointing and cfg.train_encoder
        if cfg.train_encoder and device.type == "cpu":
            return_freed_memory()  # training activations would fragment a heap that keeps freed memory
        if not cfg.train_encoder:
            for p in model.image_encoder.parameters():
                p.requires_grad_(False)
        self.optimizer = torch.optim.AdamW(
            params, lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=cfg.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, mode="min", factor=cfg.plateau["factor"], patience=cfg.plateau["patience"]
        )
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.precision.scaler)
        self._embeddings: dict = {}

    def embed(self, images: torch.Tensor, keys: list, data: ShardSet | None = None) -> torch.Tensor:
        """Image embeddings of a batch. A frozen encoder's are computed once per key (split, shard, frame, flips)
        as rule embed_slices computes them (hnseg.sam.frame.encode_image, in the embedding dtype), or read from
        that rule's files where `data` has them (unflipped frames)."""
        if self.cfg.train_encoder:
            return self.model.image_encoder(images)
        dtype = EMBEDDING_DTYPES[self.cfg.embedding_dtype]
        for image, key in zip(images, keys, strict=True):
            if key not in self._embeddings:
                _, shard, frame, flips = key
                if data is not None and data.embeddings and flips == (False, False):
                    self._embeddings[key] = data.embeddings[shard][frame]
                else:
                    self._embeddings[key] = encode_image(self.model, image, self.device, dtype)[0]
        # float32 in, as an encoder's output would be (autocast lowers it where it pays; CPU autocast cannot stack
        # float16 tensors)
        return torch.stack([self._embeddings[key].float() for key in keys]).to(self.device)

    def loss(self, logits, iou_pred, masks) -> tuple[torch.Tensor, torch.Tensor]:
        w = self.cfg.loss_weights
        l_dice = dice_loss(logits, masks)
        l_bce = F.binary_cross_entropy_with_logits(logits, masks)
        l_iou = F.mse_loss(iou_pred, iou_of(logits.detach(), masks))
        return w["dice"] * l_dice + w["bce"] * l_bce + w["iou_mse"] * l_iou, l_dice

    def step(self, images, masks, boxes, keys, data: ShardSet | None = None) -> float:
        """One optimiser step on a batch; returns its loss."""
        with self.precision.autocast(self.device):
            logits, iou_pred = self.model.decode(self.embed(images, keys, data), boxes)
            loss, _ = self.loss(logits.float(), iou_pred.float(), masks)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return float(loss.detach())

    def train_epoch(self, data: ShardSet, epoch: int) -> float:
        cfg = self.cfg
        self.model.train()
        if not cfg.train_encoder:
            self.model.image_encoder.eval()
        order = sample_rng(cfg.seed, "order", epoch).permutation(len(data))
        batches = [order[i : i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
        if cfg.max_steps_per_epoch is not None:
            batches = batches[: cfg.max_steps_per_epoch]
        losses = []
        for batch in batches:
            items = [
                make_item(data, data.samples[j], sample_rng(cfg.seed, "train", epoch, int(j)), cfg, train=True)
                for j in batch
            ]
            keys = [
                ("train", data.samples[j].shard, data.samples[j].frame, it[3])
                for j, it in zip(batch, items, strict=True)
            ]
            images, masks, boxes = (torch.stack([it[k] for it in items]).to(self.device) for k in range(3))
            losses.append(self.step(images, masks, boxes, keys, data))
        return float(np.mean(losses)) if losses else float("nan")

    @torch.no_grad()
    def validate(self, data: ShardSet) -> float:
        """Mean Dice loss over the validation samples (eval mode, no flips, each sample's prompt box)."""
        cfg = self.cfg
        self.model.eval()
        indices = np.arange(len(data))
        if cfg.max_val_samples is not None and len(indices) > cfg.max_val_samples:
            indices = np.sort(sample_rng(cfg.seed, "val-subset").choice(indices, cfg.max_val_samples, replace=False))
        losses = []
        for start in range(0, len(indices), cfg.batch_size):
            chunk = indices[start : start + cfg.batch_size]
            items = [make_item(data, data.samples[j], None, cfg, train=False) for j in chunk]
            images = torch.stack([it[0] for it in items]).to(self.device)
            keys = [
                ("val", data.samples[j].shard, data.samples[j].frame, it[3]) for j, it in zip(chunk, items, strict=True)
            ]
            with self.precision.autocast(self.device):
                logits, _ = self.model.decode(
                    self.embed(images, keys, data), torch.stack([it[2] for it in items]).to(self.device)
                )
            masks = torch.stack([it[1] for it in items]).to(self.device)
            losses.extend(float(dice_loss(logits[k : k + 1].float(), masks[k : k + 1])) for k in range(len(chunk)))
        return float(np.mean(losses)) if losses else float("nan")

    def state(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "torch_rng": torch.get_rng_state(),
        }


HISTORY_FIELDS = ["epoch", "train_loss", "val_dice_loss", "lr", "seconds"]


def run_key(settings: dict, train: ShardSet, val: ShardSet) -> str:
    """What last.pth must match to be resumed: the settings and the contents of every input."""
    return hashlib.sha256(
        json.dumps({"settings": settings, "train": train.digest, "val": val.digest}, sort_keys=True).encode()
    ).hexdigest()


def finetune(
    train_shards: list,
    val_shards: list,
    out_dir: str | Path,
    cfg: FinetuneConfig,
    device: torch.device,
    *,
    train_prompts: list,
    val_prompts: list,
    val_embeddings: list | None = None,
    init_checkpoint: str | Path | None = None,
    stop_after_epoch: int | None = None,
    settings: dict | None = None,
) -> dict:
    """Fine-tune from the official weights (or init_checkpoint); writes best.pth and history.csv in out_dir when
    training ends, and last.pth after every epoch. Resumes from out_dir/last.pth if its key matches (run_key of
    `settings`, which should also name the code, and of the data); else starts afresh. stop_after_epoch ends right
    after that epoch's checkpoint without writing the outputs (as a kill would). Returns the best epoch and its
    validation Dice loss."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    train = ShardSet(train_shards, train_prompts)
    val = ShardSet(val_shards, val_prompts, val_embeddings if not cfg.train_encoder else None)
    if not len(train):
        raise InputError("no training samples: the training shards hold no slice with a target")
    settings = {"config": _jsonable(cfg), "init": str(init_checkpoint), **(settings or {})}
    key = run_key(settings, train, val)
    trainer = Trainer(load_litemedsam(init_checkpoint, device="cpu"), cfg, device)
    log.info("precision %s on %s", trainer.precision, device)
    history: list[dict] = []
    best = {"epoch": None, "val_dice_loss": float("inf")}
    best_model = None
    start_epoch = 1
    last = out_dir / "last.pth"
    state = torch.load(last, map_location="cpu", weights_only=True) if last.is_file() else None
    initial = "the official weights" if init_checkpoint is None else str(init_checkpoint)
    if state is not None and state.get("run_key") != key:
        log.info("%s belongs to a run with other settings or data: starting from %s", last, initial)
        state = None
    elif state is None:
        log.info("no checkpoint to resume: starting from %s", initial)
    if state is not None:
        trainer.model.load_state_dict(state["model"])
        trainer.optimizer.load_state_dict(state["optimizer"])
        trainer.scheduler.load_state_dict(state["scheduler"])
        trainer.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"])
        history, best, best_model = list(state["history"]), dict(state["best"]), state["best_model"]
        start_epoch = int(state["epoch"]) + 1
        log.info("resuming after epoch %d from %s (best so far: epoch %s)", start_epoch - 1, last, best["epoch"])
    log.info("%d training and %d validation samples on %s", len(train), len(val), device)
    for epoch in range(start_epoch, cfg.max_epochs + 1):
        t0 = time.perf_counter()
        train_loss = trainer.train_epoch(train, epoch)
        val_loss = trainer.validate(val) if len(val) else float("nan")
        trainer.scheduler.step(train_loss)
        seconds = time.perf_counter() - t0
        lr = trainer.optimizer.param_groups[0]["lr"]
        history.append(
            {"epoch": epoch, "train_loss": train_loss, "val_dice_loss": val_loss, "lr": lr, "seconds": seconds}
        )
        log.info("epoch %d: train loss %.4f, val Dice loss %.4f, %.1f s", epoch, train_loss, val_loss, seconds)
        if val_loss < best["val_dice_loss"] or best["epoch"] is None:
            best = {"epoch": epoch, "val_dice_loss": val_loss}
            best_model = {k: v.detach().to("cpu", copy=True) for k, v in trainer.model.state_dict().items()}
        checkpoint = {
            **trainer.state(),
            "epoch": epoch,
            "history": history,
            "best": best,
            "best_model": best_model,
            "run_key": key,
        }
        torch.save(checkpoint, out_dir / "last.pth.tmp")
        (out_dir / "last.pth.tmp").replace(last)
        if stop_after_epoch is not None and epoch >= stop_after_epoch:
            return best
    if best_model is None:
        raise RuntimeError(f"{last} resumed a run with no finished epoch")
    _atomic_save(best_model, out_dir / "best.pth")
    write_history(out_dir / "history.csv", history)
    log.info("best epoch %s (validation Dice loss %.4f) written to %s", best["epoch"], best["val_dice_loss"], out_dir)
    return best


def _jsonable(cfg: FinetuneConfig) -> dict:
    return json.loads(json.dumps({k: getattr(cfg, k) for k in cfg.__dataclass_fields__}))


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def write_history(path: Path, history: list[dict]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=HISTORY_FIELDS)
        writer.writeheader()
        writer.writerows(history)
    tmp.replace(path)
