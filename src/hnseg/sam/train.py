"""Fine-tuning LiteMedSAM on the training shards, selecting the epoch on the validation shards.

The paper's recipe (DESIGN.md section 1; reference/litemedsam.md 1.6 and 2): a sample is one instance on one
slice; its box is the instance's tight box pushed out by the prompt rule (independent uniform 0-20 mm per side);
random left-right and up-down flips; loss = Dice + BCE + MSE between the predicted IoU and the IoU of the
thresholded prediction; AdamW (lr 3e-4, weight decay 0.01), batch 8; ReduceLROnPlateau (factor 0.9, patience 5)
stepped on the epoch's training loss; the epoch with the lowest validation Dice loss (eval mode, no flips, a fixed
box per validation sample) is kept.

Everything random is drawn from generators seeded by (seed, epoch, sample), so a run killed after any epoch and
resumed from `last.pth` ends with exactly the weights of an uninterrupted run.

For CPUs, `train_encoder: false` freezes the image encoder (eval mode, no gradients) and caches its embeddings,
and `max_steps_per_epoch` / `max_val_samples` cap the work: the demo's way to exercise the whole loop.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from hnseg.fusion import FrameGeometry, read_shard
from hnseg.memory import return_freed_memory
from hnseg.prompts import tight_box
from hnseg.sam.infer import autocast_for, frame_tensor
from hnseg.sam.model import LiteMedSAM, load_litemedsam

log = logging.getLogger(__name__)


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
    seed: int = 2024

    @classmethod
    def from_params(cls, params: dict, margin_mm) -> FinetuneConfig:
        known = {k: params[k] for k in cls.__dataclass_fields__ if k in params}
        return cls(**known, margin_mm=tuple(margin_mm))


@dataclass
class Sample:
    shard: int
    frame: int  # index in the shard
    instance: int


class ShardSet:
    """The frames and instance maps of a list of shards, and every (frame, instance) sample in them."""

    def __init__(self, paths: list[str | Path]):
        self.images, self.instances, self.geometry, self.pixel_mm = [], [], [], []
        self.samples: list[Sample] = []
        for s, path in enumerate(paths):
            images, instances, _, info = read_shard(path)
            geometry = FrameGeometry(info["frame"]["height"], info["frame"]["width"], info["frame"]["size"])
            sx, sy = info["spacing_xyz_mm"][:2]
            self.images.append(images)
            self.instances.append(instances)
            self.geometry.append(geometry)
            self.pixel_mm.append((sx * geometry.width / geometry.new_width, sy * geometry.height / geometry.new_height))
            for f in range(len(images)):
                for instance in np.unique(instances[f]):
                    if instance:
                        self.samples.append(Sample(s, f, int(instance)))

    def __len__(self) -> int:
        return len(self.samples)


def sample_rng(seed: int, *key) -> np.random.Generator:
    digest = hashlib.sha256("\0".join(str(k) for k in ("hnseg-finetune", seed, *key)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "big"))


def make_item(data: ShardSet, sample: Sample, rng: np.random.Generator, cfg: FinetuneConfig, flips: bool):
    """(image (3, 256, 256) in [0, 1], mask (1, 256, 256), box (4,), flip key) for one sample."""
    geometry = data.geometry[sample.shard]
    image = frame_tensor(data.images[sample.shard][sample.frame], geometry)[0]
    mask = torch.from_numpy((data.instances[sample.shard][sample.frame] == sample.instance).astype(np.float32))[None]
    flip_lr = bool(flips and rng.random() < 0.5)
    flip_ud = bool(flips and rng.random() < 0.5)
    if flip_lr:
        image, mask = image.flip(-1), mask.flip(-1)
    if flip_ud:
        image, mask = image.flip(-2), mask.flip(-2)
    x0, y0, x1, y1 = tight_box(mask[0].numpy() > 0)
    px, py = data.pixel_mm[sample.shard]
    left, top, right, bottom = rng.uniform(cfg.margin_mm[0], cfg.margin_mm[1], size=4)
    size = mask.shape[-1]
    box = torch.tensor(
        [
            max(x0 - int(left / px), 0),
            max(y0 - int(top / py), 0),
            min(x1 + int(right / px), size - 1),
            min(y1 + int(bottom / py), size - 1),
        ],
        dtype=torch.float32,
    )
    return image, mask, box, (flip_lr, flip_ud)


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


class Trainer:
    def __init__(self, model: LiteMedSAM, cfg: FinetuneConfig, device: torch.device):
        self.model, self.cfg, self.device = model.to(device), cfg, device
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
        self._embeddings: dict = {}

    def embed(self, images: torch.Tensor, keys: list) -> torch.Tensor:
        """Image embeddings; with a frozen encoder they are computed once per (image, flips) and cached."""
        if self.cfg.train_encoder:
            return self.model.image_encoder(images)
        missing = [i for i, k in enumerate(keys) if k not in self._embeddings]
        if missing:
            with torch.no_grad():
                fresh = self.model.image_encoder(images[missing])
            for i, emb in zip(missing, fresh, strict=True):
                self._embeddings[keys[i]] = emb
        return torch.stack([self._embeddings[k] for k in keys])

    def loss(self, logits, iou_pred, masks) -> tuple[torch.Tensor, torch.Tensor]:
        w = self.cfg.loss_weights
        l_dice = dice_loss(logits, masks)
        l_bce = F.binary_cross_entropy_with_logits(logits, masks)
        l_iou = F.mse_loss(iou_pred, iou_of(logits.detach(), masks))
        return w["dice"] * l_dice + w["bce"] * l_bce + w["iou_mse"] * l_iou, l_dice

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
                make_item(data, data.samples[j], sample_rng(cfg.seed, "train", epoch, int(j)), cfg, cfg.augment_flips)
                for j in batch
            ]
            images = torch.stack([it[0] for it in items]).to(self.device)
            masks = torch.stack([it[1] for it in items]).to(self.device)
            boxes = torch.stack([it[2] for it in items]).to(self.device)
            keys = [(data.samples[j].shard, data.samples[j].frame, it[3]) for j, it in zip(batch, items, strict=True)]
            with autocast_for(self.device):
                logits, iou_pred = self.model.decode(self.embed(images, keys), boxes)
                loss, _ = self.loss(logits.float(), iou_pred.float(), masks)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            losses.append(float(loss.detach()))
        return float(np.mean(losses)) if losses else float("nan")

    @torch.no_grad()
    def validate(self, data: ShardSet) -> float:
        """Mean Dice loss over the validation samples (eval mode, no flips, a fixed box per sample)."""
        cfg = self.cfg
        self.model.eval()
        indices = np.arange(len(data))
        if cfg.max_val_samples is not None and len(indices) > cfg.max_val_samples:
            indices = np.sort(sample_rng(cfg.seed, "val-subset").choice(indices, cfg.max_val_samples, replace=False))
        losses = []
        for start in range(0, len(indices), cfg.batch_size):
            chunk = indices[start : start + cfg.batch_size]
            items = [make_item(data, data.samples[j], sample_rng(cfg.seed, "val", int(j)), cfg, False) for j in chunk]
            images = torch.stack([it[0] for it in items]).to(self.device)
            keys = [("val", data.samples[j].shard, data.samples[j].frame) for j in chunk]
            with autocast_for(self.device):
                logits, _ = self.model.decode(
                    self.embed(images, keys), torch.stack([it[2] for it in items]).to(self.device)
                )
            masks = torch.stack([it[1] for it in items]).to(self.device)
            losses.extend(float(dice_loss(logits[k : k + 1].float(), masks[k : k + 1])) for k in range(len(chunk)))
        return float(np.mean(losses)) if losses else float("nan")

    def state(self, epoch: int, history: list[dict], best: dict) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": epoch,
            "history": history,
            "best": best,
            "torch_rng": torch.get_rng_state(),
        }


HISTORY_FIELDS = ["epoch", "train_loss", "val_dice_loss", "lr", "seconds"]


def finetune(
    train_shards: list[str | Path],
    val_shards: list[str | Path],
    out_dir: str | Path,
    cfg: FinetuneConfig,
    device: torch.device,
    init_checkpoint: str | Path | None = None,
    stop_after_epoch: int | None = None,
    run_key: str = "",
) -> dict:
    """Fine-tune from the official weights (or init_checkpoint); writes best.pth, last.pth and history.csv in
    out_dir, resuming from out_dir/last.pth if it exists and was written by a run with the same `run_key` (a
    fingerprint of the settings and data; another key starts afresh). stop_after_epoch ends early (as a kill
    would). Returns the best epoch and its validation Dice loss."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    train, val = ShardSet(train_shards), ShardSet(val_shards)
    if not len(train):
        raise ValueError("no training samples: the training shards hold no slice with a target")
    trainer = Trainer(load_litemedsam(init_checkpoint, device="cpu"), cfg, device)
    history: list[dict] = []
    best = {"epoch": None, "val_dice_loss": float("inf")}
    start_epoch = 1
    last = out_dir / "last.pth"
    state = torch.load(last, map_location="cpu", weights_only=True) if last.is_file() else None
    if state is not None and state.get("run_key", "") != run_key:
        log.info("%s belongs to a run with other settings or data; starting afresh", last)
        state = None
    if state is not None:
        trainer.model.load_state_dict(state["model"])
        trainer.optimizer.load_state_dict(state["optimizer"])
        trainer.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        history, best = list(state["history"]), dict(state["best"])
        start_epoch = int(state["epoch"]) + 1
        log.info("resuming after epoch %d from %s", start_epoch - 1, last)
    log.info("%d training and %d validation samples on %s", len(train), len(val), device)
    for epoch in range(start_epoch, cfg.max_epochs + 1):
        t0 = time.perf_counter()
        train_loss = trainer.train_epoch(train, epoch)
        val_loss = trainer.validate(val) if len(val) else float("nan")
        trainer.scheduler.step(train_loss)
        seconds = time.perf_counter() - t0
        history.append(
            {
                "epoch": epoch,
                "train_loss": train_loss,
                "val_dice_loss": val_loss,
                "lr": trainer.optimizer.param_groups[0]["lr"],
                "seconds": seconds,
            }
        )
        log.info("epoch %d: train loss %.4f, val Dice loss %.4f, %.1f s", epoch, train_loss, val_loss, seconds)
        if val_loss < best["val_dice_loss"] or best["epoch"] is None:
            best = {"epoch": epoch, "val_dice_loss": val_loss}
            torch.save(trainer.model.state_dict(), out_dir / "best.pth")
        torch.save({**trainer.state(epoch, history, best), "run_key": run_key}, out_dir / "last.pth.tmp")
        (out_dir / "last.pth.tmp").replace(last)
        write_history(out_dir / "history.csv", history)
        if stop_after_epoch is not None and epoch >= stop_after_epoch:
            break
    return best


def write_history(path: Path, history: list[dict]) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=HISTORY_FIELDS)
        writer.writeheader()
        writer.writerows(history)
