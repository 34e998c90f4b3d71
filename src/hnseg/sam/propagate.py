"""One 3D box per lesion, propagated through the slices by LiteMedSAM (issue 16). Reads boxes, never labels.

Both protocols decode cached slice embeddings (any slice of the box's z range) with one box per slice:

- **A, the official LiteMedSAM 3D inference** (`CVPR24_LiteMedSAM_infer.py`, reference/litemedsam.md 1.7): the
  middle slice `int((z_max - z_min) / 2 + z_min)` is prompted with the 3D box's in-plane extent, each coordinate
  scaled to the 256 frame as the script does (`int(c * 256 / max(H, W))`, rounded down). Then up to z_max and down to
  z_min, every slice of the range: the prompt is the tight box of the previous slice's prediction in the 256 frame,
  widened by 3 pixels on each side (clipped to 0 and 256, as the script's `get_bbox256`); if that prediction is
  empty, the prompt falls back to the middle slice's box. Nothing stops the walk and nothing clips the masks. The
  script resizes the previous mask to the frame with cv2 INTER_AREA and rounds half to even; a frame pixel is in
  it when more than half of its area is (the script's rule for the first box of a case).
- **B, from the largest cross-section**: the slice the box was drawn on (`LesionBox.start`, the lesion's largest
  area: what a person looks at when drawing the box) is prompted with the box's in-plane extent (the project's
  box-to-frame mapping, hnseg.fusion.FrameGeometry.box_to_frame). The walk goes up and down with the previous
  prediction's box widened as in A, but every prompt and every mask is kept inside the 3D box, and the walk stops
  at the first slice whose predicted area is below `floor_mm2` (that slice is left empty) or at the box's end.

Lesions are written into one label volume in their order (GTV-T 1, GTV-N 2), a later lesion's voxels overwriting an
earlier one's, as the official script writes its boxes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from hnseg.fusion import FrameGeometry, area_weights
from hnseg.lesion_prompts import LesionBox
from hnseg.sam.frame import inference_autocast
from hnseg.sam.infer import TARGET_LABELS, logits_to_slice

PROTOCOLS = ("A", "B")
OFFICIAL_WIDENING = 3  # pixels of the 256 frame, get_bbox256's bbox_shift


@dataclass
class Step:
    instance: int
    z: int
    box_frame: tuple[int, int, int, int]
    source: str  # "box" (the 3D box's extent), "previous" (the previous slice's prediction), "fallback"
    area_mm2: float


@dataclass
class Propagation:
    labels: np.ndarray  # (z, y, x) uint8
    steps: list[Step] = field(default_factory=list)
    decoder_s: float = 0.0


def official_box_to_frame(box_2d: tuple[int, int, int, int], geometry: FrameGeometry) -> tuple[int, int, int, int]:
    """The official script's `resize_box_to_256`: every coordinate times 256 / max(H, W), rounded down."""
    ratio = geometry.size / max(geometry.height, geometry.width)
    return tuple(int(c * ratio) for c in box_2d)


def mask_in_frame(mask: np.ndarray, geometry: FrameGeometry) -> np.ndarray:
    """A (H, W) bool mask in the padded 256 frame: a pixel is in when more than half its area is (INTER_AREA, then
    rounding half to even, of a 0/1 mask)."""
    rows = area_weights(geometry.height, geometry.new_height)
    cols = area_weights(geometry.width, geometry.new_width)
    fraction = rows @ mask.astype(np.float64) @ cols.T
    out = np.zeros((geometry.size, geometry.size), dtype=bool)
    out[: geometry.new_height, : geometry.new_width] = fraction > 0.5 + 1e-9
    return out


def widened_box(mask_frame: np.ndarray, shift: int = OFFICIAL_WIDENING) -> tuple[int, int, int, int] | None:
    """The official `get_bbox256`: the tight box of a frame mask widened by `shift`, clipped to [0, 256]; None if
    the mask is empty."""
    ys, xs = np.nonzero(mask_frame)
    if ys.size == 0:
        return None
    h, w = mask_frame.shape
    return (
        max(0, int(xs.min()) - shift),
        max(0, int(ys.min()) - shift),
        min(w, int(xs.max()) + shift),
        min(h, int(ys.max()) + shift),
    )


@torch.inference_mode()
def decode_frame_box(
    model, embedding: torch.Tensor, geometry: FrameGeometry, box_frame, device: torch.device
) -> tuple[np.ndarray, float]:
    """The (H, W) bool mask of one box given in the 256 frame on one slice's embedding, and the decoder seconds."""
    start = time.perf_counter()
    with inference_autocast(device):
        emb = embedding.to(device, torch.float32 if device.type == "cpu" else embedding.dtype).unsqueeze(0)
        boxes = torch.tensor([box_frame], dtype=torch.float32, device=device)
        logits, _ = model.decode(emb, boxes)
        mask = (torch.sigmoid(logits_to_slice(logits, geometry))[0] > 0.5).cpu().numpy()
    return mask, time.perf_counter() - start


def _clip_box(box, limit) -> tuple[int, int, int, int]:
    return (max(box[0], limit[0]), max(box[1], limit[1]), min(box[2], limit[2]), min(box[3], limit[3]))


def _inside(mask: np.ndarray, box_2d) -> np.ndarray:
    x0, y0, x1, y1 = box_2d
    out = np.zeros_like(mask)
    out[y0 : y1 + 1, x0 : x1 + 1] = mask[y0 : y1 + 1, x0 : x1 + 1]
    return out


def propagate_lesion(
    model,
    embedding_of: Callable[[int], torch.Tensor],
    geometry: FrameGeometry,
    lesion: LesionBox,
    protocol: str,
    pixel_area_mm2: float,
    n_slices: int,
    device: torch.device,
    floor_mm2: float = 0.0,
) -> tuple[dict[int, np.ndarray], list[Step], float]:
    """The masks {z: (H, W) bool} of one lesion under `protocol`, the prompts used, and the decoder seconds.
    `embedding_of(z)` gives slice z's embedding (256, 64, 64)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown propagation protocol {protocol!r}: expected one of {', '.join(PROTOCOLS)}")
    z0, z1 = lesion.box[2], lesion.box[5]
    z0, z1 = max(z0, 0), min(z1, n_slices - 1)
    masks: dict[int, np.ndarray] = {}
    steps: list[Step] = []
    seconds = 0.0

    def run(z: int, box_frame, source: str) -> np.ndarray:
        nonlocal seconds
        mask, s = decode_frame_box(model, embedding_of(z), geometry, box_frame, device)
        seconds += s
        if protocol == "B":
            mask = _inside(mask, lesion.box_2d)
        steps.append(
            Step(lesion.instance, z, tuple(int(v) for v in box_frame), source, float(mask.sum()) * pixel_area_mm2)
        )
        return mask

    if protocol == "A":
        first_box = official_box_to_frame(lesion.box_2d, geometry)
        middle = int((z1 - z0) / 2 + z0)
        for direction, stop in ((1, z1 + 1), (-1, z0 - 1)):
            start = middle if direction == 1 else middle - 1
            for z in range(start, stop, direction):
                if z == middle:
                    box, source = first_box, "box"
                else:
                    box = widened_box(mask_in_frame(masks[z - direction], geometry))
                    box, source = (first_box, "fallback") if box is None else (box, "previous")
                masks[z] = run(z, box, source)
        return masks, steps, seconds

    limit = geometry.box_to_frame(lesion.box_2d)
    start = min(max(lesion.start, z0), z1)
    mask = run(start, limit, "box")
    if mask.sum() * pixel_area_mm2 < floor_mm2 or not mask.any():
        return {}, steps, seconds
    masks[start] = mask
    for direction in (1, -1):
        previous = mask
        z = start + direction
        while z0 <= z <= z1:
            box = widened_box(mask_in_frame(previous, geometry))
            if box is None:
                break
            current = run(z, _clip_box(box, limit), "previous")
            if current.sum() * pixel_area_mm2 < floor_mm2 or not current.any():
                break
            masks[z] = previous = current
            z += direction
    return masks, steps, seconds


def propagate_volume(
    model,
    embedding_of: Callable[[int], torch.Tensor],
    geometry: FrameGeometry,
    shape_zyx: tuple[int, int, int],
    lesions: list[LesionBox],
    protocol: str,
    spacing_xyz: tuple[float, float, float],
    device: torch.device,
    floor_mm2: float = 0.0,
) -> Propagation:
    """The label volume of every lesion of a patient propagated under `protocol` (module docstring)."""
    labels = np.zeros(shape_zyx, dtype=np.uint8)
    result = Propagation(labels)
    pixel_area = float(spacing_xyz[0] * spacing_xyz[1])
    for lesion in lesions:
        masks, steps, seconds = propagate_lesion(
            model, embedding_of, geometry, lesion, protocol, pixel_area, shape_zyx[0], device, floor_mm2
        )
        for z, mask in masks.items():
            labels[z][mask] = TARGET_LABELS[lesion.target]
        result.steps.extend(steps)
        result.decoder_s += seconds
    return result


class SliceEmbeddings:
    """Slice embeddings of a patient gathered from several files of rule embed_slices' format (the main cache of
    the slices with targets, and the study's file of the other slices of the boxes' ranges), by CT slice."""

    def __init__(self, paths):
        from hnseg.sam.embeddings import read_embeddings

        self.by_slice: dict[int, torch.Tensor] = {}
        self.geometry = None
        for path in paths:
            cached = read_embeddings(path)
            if len(cached.slice_index):
                self.geometry = cached.geometry
            for i, z in enumerate(cached.slice_index):
                self.by_slice.setdefault(int(z), cached.embeddings[i])

    def __call__(self, z: int) -> torch.Tensor:
        if z not in self.by_slice:
            raise KeyError(f"no embedding of slice {z}: the box's range needs every slice (rule embed_box_slices)")
        return self.by_slice[z]


def propagate_patients(model, cases: list[dict], protocol: str, device: torch.device, floor_mm2: float) -> dict:
    """Propagate each case {"patient", "boxes" (lesion boxes JSON), "embeddings" (files), "reference" (an image whose
    header gives the CT grid), "out"}: the label volume on that grid to "out", and beside it {patient}.steps.json (every prompt). Returns the
    timings and box counts per patient."""
    import json
    from dataclasses import asdict
    from pathlib import Path

    import SimpleITK as sitk

    from hnseg.lesion_prompts import read_lesion_boxes

    per_patient = {}
    for case in cases:
        header = sitk.ImageFileReader()  # the grid only: the header, never the voxels (the labels)
        header.SetFileName(str(case["reference"]))
        header.ReadImageInformation()
        shape = tuple(reversed(header.GetSize()))
        reference = sitk.Image(header.GetSize(), sitk.sitkUInt8)
        reference.SetSpacing(header.GetSpacing())
        reference.SetOrigin(header.GetOrigin())
        reference.SetDirection(header.GetDirection())
        lesions = read_lesion_boxes(case["boxes"])
        embeddings = SliceEmbeddings(case["embeddings"])
        result = propagate_volume(
            model, embeddings, embeddings.geometry, shape, lesions, protocol, reference.GetSpacing(), device, floor_mm2
        )
        image = sitk.GetImageFromArray(result.labels)
        image.CopyInformation(reference)
        out = Path(case["out"])
        out.parent.mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(image, str(out), useCompression=True)
        steps = [asdict(s) for s in result.steps]
        (out.parent / f"{case['patient']}.steps.json").write_text(json.dumps(steps, indent=0) + "\n")
        per_patient[case["patient"]] = {
            "boxes_drawn": len(lesions),
            "slices_decoded": len(steps),
            "fallbacks": sum(s.source == "fallback" for s in result.steps),
            "decoder_s": round(result.decoder_s, 4),
        }
    return {"protocol": protocol, "device": str(device), "floor_mm2": floor_mm2, "patients": per_patient}
