"""LiteMedSAM inference: one image embedding per slice, all boxes of the slice decoded in one batch.

Preprocessing follows the official recipe (reference/litemedsam.md 1.3-1.5): the slice in the 256 frame (longest
side resized with area interpolation, see hnseg.fusion) is min-max normalised to [0, 1] over its resized extent
and zero padded; boxes are mapped into the frame; the 256x256 logits are cropped to the resized extent,
upsampled bilinearly to the CT slice, and thresholded on the sigmoid.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from hnseg.fusion import FrameGeometry, to_model_frame
from hnseg.prompts import Prompt

TARGET_LABELS = {"GTV-T": 1, "GTV-N": 2}


def frame_tensor(frame: np.ndarray, geometry: FrameGeometry, device: torch.device | str = "cpu") -> torch.Tensor:
    """(256, 256, 3) uint8 frame -> (1, 3, 256, 256) float in [0, 1], min-max over the resized extent."""
    image = torch.as_tensor(frame, dtype=torch.float32, device=device)
    region = image[: geometry.new_height, : geometry.new_width]
    lo, hi = region.min(), region.max()
    out = torch.zeros_like(image)
    out[: geometry.new_height, : geometry.new_width] = (region - lo) / torch.clamp(hi - lo, min=1e-8)
    return out.permute(2, 0, 1).unsqueeze(0)


def frame_boxes(boxes_xyxy, geometry: FrameGeometry, device: torch.device | str = "cpu") -> torch.Tensor:
    """Inclusive CT-pixel boxes (K, 4) -> (K, 4) float boxes in the 256 frame."""
    return torch.tensor(
        [geometry.box_to_frame(tuple(int(v) for v in b)) for b in boxes_xyxy], dtype=torch.float32, device=device
    )


def logits_to_slice(logits: torch.Tensor, geometry: FrameGeometry) -> torch.Tensor:
    """(K, 1, 256, 256) low-res logits -> (K, H, W) logits on the CT slice."""
    crop = logits[:, :, : geometry.new_height, : geometry.new_width].float()
    return F.interpolate(crop, size=(geometry.height, geometry.width), mode="bilinear", align_corners=False)[:, 0]


def autocast_for(device: torch.device) -> contextlib.AbstractContextManager:
    """Mixed precision on CUDA (float16), none on the CPU."""
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def segment_slice(model, image_rgb_uint8: np.ndarray, boxes_xyxy, threshold: float = 0.5) -> np.ndarray:
    """Masks (K, H, W) bool for K inclusive boxes (x_min, y_min, x_max, y_max) on one slice at native size.

    Public entry point (DESIGN.md section 7). The image is (H, W, 3) uint8 (or (H, W), repeated to RGB).
    """
    if image_rgb_uint8.ndim == 2:
        image_rgb_uint8 = np.repeat(image_rgb_uint8[..., None], 3, axis=2)
    device = next(model.parameters()).device
    frame, geometry = to_model_frame(image_rgb_uint8)
    probs = decode_slice(model, frame, geometry, boxes_xyxy, device)[0]
    return (probs > threshold).cpu().numpy()


def decode_slice(model, frame: np.ndarray, geometry: FrameGeometry, boxes_xyxy, device: torch.device):
    """(probabilities (K, H, W), encoder seconds, decoder seconds) for K boxes on one frame."""
    with torch.inference_mode(), autocast_for(device):
        _sync(device)
        start = time.perf_counter()
        embedding = model.image_encoder(frame_tensor(frame, geometry, device))
        _sync(device)
        encoded = time.perf_counter()
        logits, _ = model.decode(embedding, frame_boxes(boxes_xyxy, geometry, device))
        probs = torch.sigmoid(logits_to_slice(logits, geometry))
        _sync(device)
        decoded = time.perf_counter()
    return probs, encoded - start, decoded - encoded


@dataclass
class Timings:
    encoder_s: list[float] = field(default_factory=list)  # per slice
    decoder_s: list[float] = field(default_factory=list)  # per slice (all its boxes)
    boxes: list[int] = field(default_factory=list)  # per slice

    def summary(self) -> dict:
        n_boxes = int(sum(self.boxes))
        total_dec, total_enc = float(sum(self.decoder_s)), float(sum(self.encoder_s))
        return {
            "slices": len(self.boxes),
            "boxes": n_boxes,
            "encoder_s_per_slice": total_enc / max(len(self.boxes), 1),
            "decoder_s_per_slice": total_dec / max(len(self.boxes), 1),
            "decoder_s_per_box": total_dec / max(n_boxes, 1),
            "s_per_box_per_slice": (total_enc + total_dec) / max(n_boxes, 1),
            "total_s": total_enc + total_dec,
        }


def predict_volume(
    model,
    images: np.ndarray,
    slice_index: np.ndarray,
    geometry: FrameGeometry,
    shape_zyx: tuple[int, int, int],
    prompts: list[Prompt],
    device: torch.device,
    threshold: float = 0.5,
) -> tuple[np.ndarray, Timings]:
    """A label volume (z, y, x) uint8 (0, 1 GTV-T, 2 GTV-N) from a shard's frames and the patient's prompts.

    Where boxes overlap, each voxel takes the target whose prediction is most confident, if above threshold.
    """
    by_slice: dict[int, list[Prompt]] = {}
    for p in prompts:
        by_slice.setdefault(p.slice, []).append(p)
    labels = np.zeros(shape_zyx, dtype=np.uint8)
    timings = Timings()
    for i, z in enumerate(int(v) for v in slice_index):
        slice_prompts = by_slice.get(z, [])
        if not slice_prompts:
            continue
        probs, t_enc, t_dec = decode_slice(model, images[i], geometry, [p.box for p in slice_prompts], device)
        best, which = probs.max(dim=0)
        target = torch.tensor([TARGET_LABELS[p.target] for p in slice_prompts], device=probs.device)[which]
        labels[z] = torch.where(best > threshold, target, 0).to(torch.uint8).cpu().numpy()
        timings.encoder_s.append(t_enc)
        timings.decoder_s.append(t_dec)
        timings.boxes.append(len(slice_prompts))
    return labels, timings


def predict_patients(model, cases: list[dict], device: torch.device, threshold: float = 0.5) -> dict:
    """Predict each case {"patient", "shard", "prompts", "reference", "out"}: the label volume on the grid of the
    reference image (the patient's labels.nii.gz) is written to "out". Returns the timings per patient and overall."""
    import SimpleITK as sitk

    from hnseg.fusion import read_shard
    from hnseg.prompts import read_prompts

    per_patient, overall = {}, Timings()
    for case in cases:
        images, _, slice_index, info = read_shard(case["shard"])
        geometry = FrameGeometry(info["frame"]["height"], info["frame"]["width"], info["frame"]["size"])
        reference = sitk.ReadImage(str(case["reference"]))
        shape = tuple(reversed(reference.GetSize()))
        labels, timings = predict_volume(
            model, images, slice_index, geometry, shape, read_prompts(case["prompts"]), device, threshold
        )
        image = sitk.GetImageFromArray(labels)
        image.CopyInformation(reference)
        sitk.WriteImage(image, str(case["out"]), useCompression=True)
        per_patient[case["patient"]] = timings.summary()
        for name in ("encoder_s", "decoder_s", "boxes"):
            getattr(overall, name).extend(getattr(timings, name))
    return {"device": str(device), "overall": overall.summary(), "patients": per_patient}
