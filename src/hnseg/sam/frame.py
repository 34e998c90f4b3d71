"""What LiteMedSAM's fine-tuning and inference share: the model's input tensors, boxes in its 256 frame, and the
image encoder run as inference runs it.

Training and inference both import this module and neither imports the other, so a change to inference-only code
(`hnseg.sam.infer`) reruns the predictions and never the fine-tuning (rule code triggers are the import closure of
each script, hnseg.provenance).

Preprocessing follows the official recipe (reference/litemedsam.md 1.3): the slice in the 256 frame (longest side
resized with area interpolation, see hnseg.fusion) is min-max normalised to [0, 1] over its resized extent and zero
padded; boxes are inclusive pixel boxes in that frame.
"""

from __future__ import annotations

import contextlib
import time

import numpy as np
import torch

from hnseg.fusion import FrameGeometry


def frame_tensor(frame: np.ndarray, geometry: FrameGeometry, device: torch.device | str = "cpu") -> torch.Tensor:
    """(256, 256, 3) uint8 frame -> (1, 3, 256, 256) float in [0, 1], min-max over the resized extent."""
    image = torch.as_tensor(frame, dtype=torch.float32, device=device)
    region = image[: geometry.new_height, : geometry.new_width]
    lo, hi = region.min(), region.max()
    out = torch.zeros_like(image)
    out[: geometry.new_height, : geometry.new_width] = (region - lo) / torch.clamp(hi - lo, min=1e-8)
    return out.permute(2, 0, 1).unsqueeze(0)


def frame_boxes(boxes_xyxy, geometry: FrameGeometry, device: torch.device | str = "cpu") -> torch.Tensor:
    """Inclusive CT-pixel boxes (K, 4) -> (K, 4) float boxes in the 256 frame (FrameGeometry.box_to_frame)."""
    return torch.tensor(
        [geometry.box_to_frame(tuple(int(v) for v in b)) for b in boxes_xyxy], dtype=torch.float32, device=device
    ).reshape(-1, 4)


def inference_autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """Mixed precision of inference (and of every image embedding): float16 on CUDA, none on the CPU."""
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so that a timer read afterwards covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


EMBEDDING_DTYPES = {"float16": torch.float16, "float32": torch.float32}


@torch.inference_mode()
def encode_image(model, image: torch.Tensor, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, float]:
    """The image embedding (256, 64, 64) of one (3, 256, 256) input, on the CPU in `dtype`, and the encoder's
    seconds.

    One image per call, always: the result then never depends on which other images share a batch, so an embedding
    cached by rule embed_slices equals one the fine-tuning computes itself, and a resumed fine-tuning recomputes
    its cache bit for bit.
    """
    synchronize(device)
    start = time.perf_counter()
    with inference_autocast(device):
        embedding = model.image_encoder(image.unsqueeze(0).to(device))[0]
    synchronize(device)
    seconds = time.perf_counter() - start
    return embedding.to("cpu", dtype), seconds
