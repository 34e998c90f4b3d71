"""LiteMedSAM inference: one image embedding per slice, all boxes of the slice decoded in one batch.

Postprocessing follows the official recipe (reference/litemedsam.md 1.5): the 256x256 logits are cropped to the
resized extent, upsampled bilinearly to the CT slice, and thresholded on the sigmoid. The embeddings come from rule
embed_slices (hnseg.sam.embeddings) where the official encoder is used, or are computed here with the same function
for a fine-tuned encoder. Only inference lives here: what fine-tuning shares with it is in hnseg.sam.frame.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from hnseg.fusion import FrameGeometry, to_model_frame
from hnseg.prompts import Prompt
from hnseg.sam.frame import encode_image, frame_boxes, frame_tensor, inference_autocast, synchronize

TARGET_LABELS = {"GTV-T": 1, "GTV-N": 2}


def logits_to_slice(logits: torch.Tensor, geometry: FrameGeometry) -> torch.Tensor:
    """(K, 1, 256, 256) low-res logits -> (K, H, W) logits on the CT slice."""
    crop = logits[:, :, : geometry.new_height, : geometry.new_width].float()
    return F.interpolate(crop, size=(geometry.height, geometry.width), mode="bilinear", align_corners=False)[:, 0]


@torch.inference_mode()
def decode_boxes(
    model, embedding: torch.Tensor, geometry: FrameGeometry, boxes_xyxy, device: torch.device
) -> tuple[torch.Tensor, float]:
    """Probabilities (K, H, W) on the CT slice for K inclusive CT-pixel boxes on one slice's embedding (256, 64,
    64), and the decoder's seconds."""
    synchronize(device)
    start = time.perf_counter()
    with inference_autocast(device):
        embedding = embedding.to(device, torch.float32 if device.type == "cpu" else embedding.dtype)
        logits, _ = model.decode(embedding.unsqueeze(0), frame_boxes(boxes_xyxy, geometry, device))
        probs = torch.sigmoid(logits_to_slice(logits, geometry))
    synchronize(device)
    return probs, time.perf_counter() - start


def segment_slice(model, image_rgb_uint8: np.ndarray, boxes_xyxy, threshold: float = 0.5) -> np.ndarray:
    """Masks (K, H, W) bool for K inclusive boxes (x_min, y_min, x_max, y_max) on one slice at native size.

    Public entry point (DESIGN.md section 7). The image is (H, W, 3) uint8 (or (H, W), repeated to RGB).
    """
    if image_rgb_uint8.ndim == 2:
        image_rgb_uint8 = np.repeat(image_rgb_uint8[..., None], 3, axis=2)
    device = next(model.parameters()).device
    frame, geometry = to_model_frame(image_rgb_uint8)
    embedding, _ = encode_image(model, frame_tensor(frame, geometry)[0], device, torch.float32)
    probs, _ = decode_boxes(model, embedding, geometry, boxes_xyxy, device)
    return (probs > threshold).cpu().numpy()


@dataclass
class Timings:
    encoder_s: list[float] = field(default_factory=list)  # per slice
    decoder_s: list[float] = field(default_factory=list)  # per slice (all its boxes)
    boxes: list[int] = field(default_factory=list)  # per slice

    def extend(self, other: Timings) -> None:
        for name in ("encoder_s", "decoder_s", "boxes"):
            getattr(self, name).extend(getattr(other, name))

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
    embeddings: torch.Tensor,
    slice_index: np.ndarray,
    geometry: FrameGeometry,
    shape_zyx: tuple[int, int, int],
    prompts: list[Prompt],
    device: torch.device,
    threshold: float = 0.5,
    encoder_s=None,
) -> tuple[np.ndarray, Timings]:
    """A label volume (z, y, x) uint8 (0, 1 GTV-T, 2 GTV-N) from a shard's slice embeddings and the patient's
    prompts. `encoder_s` (per slice) is what the embeddings cost, for the timings.

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
        probs, t_dec = decode_boxes(model, embeddings[i], geometry, [p.box for p in slice_prompts], device)
        best, which = probs.max(dim=0)
        target = torch.tensor([TARGET_LABELS[p.target] for p in slice_prompts], device=probs.device)[which]
        labels[z] = torch.where(best > threshold, target, 0).to(torch.uint8).cpu().numpy()
        timings.encoder_s.append(float(encoder_s[i]) if encoder_s is not None else 0.0)
        timings.decoder_s.append(t_dec)
        timings.boxes.append(len(slice_prompts))
    return labels, timings


def predict_patients(model, cases: list[dict], device: torch.device, threshold: float = 0.5, dtype="float16") -> dict:
    """Predict each case {"patient", "prompts", "reference", "out"} with either "embeddings" (a file of rule
    embed_slices, made by the official encoder) or "shard" (encoded here by `model`'s own encoder, stored in
    `dtype` as the cache would be): the label volume on the grid of the reference image (the patient's
    labels.nii.gz) is written to "out". Returns the timings per patient and overall."""
    import SimpleITK as sitk

    from hnseg.prompts import read_prompts
    from hnseg.sam.embeddings import embed_shard, read_embeddings

    per_patient, overall = {}, Timings()
    sources = set()
    for case in cases:
        if "embeddings" in case:
            cached, source = read_embeddings(case["embeddings"]), "embed_slices"
        else:
            cached, source = embed_shard(model, case["shard"], device, dtype), "this job"
        sources.add(source)
        reference = sitk.ReadImage(str(case["reference"]))
        shape = tuple(reversed(reference.GetSize()))
        labels, timings = predict_volume(
            model,
            cached.embeddings,
            cached.slice_index,
            cached.geometry,
            shape,
            read_prompts(case["prompts"]),
            device,
            threshold,
            cached.encoder_s,
        )
        image = sitk.GetImageFromArray(labels)
        image.CopyInformation(reference)
        sitk.WriteImage(image, str(case["out"]), useCompression=True)
        per_patient[case["patient"]] = timings.summary()
        overall.extend(timings)
    return {
        "device": str(device),
        "embeddings_from": sorted(sources),
        "overall": overall.summary(),
        "patients": per_patient,
    }
