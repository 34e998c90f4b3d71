"""Stage make_prompts: the targets and the box prompts every method shares (DESIGN.md sections 1, 3.5).

Targets are 3D instances: the GTV-T and the GTV-N labels are each split into 26-connected components (nodes are
separate targets; a GTV-T is usually one instance). What one target is on a slice is a choice (`target_unit`):

- `instance_3d` (default, as the authors' code and the official MedSAM preprocessing): one target per instance per
  slice, its box around all of the instance's pixels there, even when they form two blobs on that slice;
- `object_2d` (the paper's text read literally: "each GTV-T and GTV-N object within the 2D slices"): every 2D
  connected object of an instance on a slice is its own target. Objects are connected in-plane as the 3D instances
  are (26 and 18: 8 neighbours; 6: 4). The first object of an instance on a slice (in row-major order) keeps the
  instance's id, so slices where the instance is one object get the same target, id and box under both choices;
  further objects get new ids after the last instance's, in order of slice, instance and object.

On every axial slice a target appears on, it gets its tight box and a perturbed box: each side pushed out by an independent uniform margin in `margin_mm` (default
0-20 mm), converted to pixels with that axis' spacing and rounded down so the margin never exceeds its draw,
then clipped to the image. The draw is seeded by (seed, patient, slice, instance), so every method, every run
and every machine see the same prompts, and another patient gets other ones.

Boxes are inclusive CT pixel coordinates (x_min, y_min, x_max, y_max): x is the column, y the row.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

LABEL_TARGETS = {1: "GTV-T", 2: "GTV-N"}
_STRUCTURES = {
    6: ndimage.generate_binary_structure(3, 1),
    18: ndimage.generate_binary_structure(3, 2),
    26: np.ones((3, 3, 3), bool),
}
TARGET_UNITS = ("instance_3d", "object_2d")


@dataclass(frozen=True)
class Prompt:
    slice: int
    instance: int
    target: str
    tight: tuple[int, int, int, int]
    box: tuple[int, int, int, int]
    margins_mm: tuple[float, float, float, float]  # drawn margins: left, top, right, bottom


def split_instances(
    labels: np.ndarray, connectivity: int = 26, target_unit: str = "instance_3d"
) -> tuple[np.ndarray, dict[int, str]]:
    """Target map (uint16, 0 = background) and target id -> GTV-T or GTV-N: the targets of every slice.

    3D instances are numbered in a stable order: GTV-T instances first, then GTV-N, each by its first voxel in
    (z, y, x) order. With target_unit "object_2d", objects beyond an instance's first on a slice get new ids
    (module docstring).
    """
    if connectivity not in _STRUCTURES:
        raise ValueError(f"connectivity must be 6, 18 or 26, got {connectivity}")
    if target_unit not in TARGET_UNITS:
        raise ValueError(f"target_unit must be one of {', '.join(TARGET_UNITS)}, got {target_unit!r}")
    instances = np.zeros(labels.shape, dtype=np.uint16)
    targets: dict[int, str] = {}
    next_id = 1
    for value, target in LABEL_TARGETS.items():
        components, n = ndimage.label(labels == value, structure=_STRUCTURES[connectivity])
        for component in range(1, n + 1):
            instances[components == component] = next_id
            targets[next_id] = target
            next_id += 1
    if target_unit == "object_2d":
        _split_into_slice_objects(instances, targets, _STRUCTURES[connectivity][1])
    return instances, targets


def _split_into_slice_objects(instances: np.ndarray, targets: dict[int, str], in_plane: np.ndarray) -> None:
    """Give every 2D object of an instance on a slice, beyond its first, an id of its own (in place)."""
    next_id = max(targets, default=0) + 1
    for z in np.flatnonzero(instances.reshape(instances.shape[0], -1).any(axis=1)):
        plane = instances[z]
        for instance in np.unique(plane[plane > 0]):
            objects, n = ndimage.label(plane == instance, structure=in_plane)
            for extra in range(2, n + 1):  # ndimage numbers objects in row-major order of their first pixel
                if next_id > np.iinfo(np.uint16).max:
                    raise ValueError(f"more than {np.iinfo(np.uint16).max} targets: the target map is uint16")
                plane[objects == extra] = next_id
                targets[next_id] = targets[int(instance)]
                next_id += 1


def tight_box(mask2d: np.ndarray) -> tuple[int, int, int, int]:
    rows = np.flatnonzero(mask2d.any(axis=1))
    cols = np.flatnonzero(mask2d.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])


def prompt_rng(seed: int, patient: str, slice_index: int, instance: int) -> np.random.Generator:
    digest = hashlib.sha256(f"hnseg-prompt\0{seed}\0{patient}\0{slice_index}\0{instance}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "big"))


def perturb_box(
    tight: tuple[int, int, int, int],
    shape_yx: tuple[int, int],
    spacing_xy: tuple[float, float],
    margin_mm: tuple[float, float],
    rng: np.random.Generator,
) -> tuple[tuple[int, int, int, int], tuple[float, float, float, float]]:
    """Push each side of `tight` out by its own uniform margin in mm; returns (box, the four margins drawn)."""
    margins = tuple(float(m) for m in rng.uniform(margin_mm[0], margin_mm[1], size=4))
    left, top, right, bottom = margins
    sx, sy = spacing_xy
    x0, y0, x1, y1 = tight
    box = (
        max(x0 - int(np.floor(left / sx)), 0),
        max(y0 - int(np.floor(top / sy)), 0),
        min(x1 + int(np.floor(right / sx)), shape_yx[1] - 1),
        min(y1 + int(np.floor(bottom / sy)), shape_yx[0] - 1),
    )
    return box, margins


def make_prompts(
    labels: np.ndarray,
    spacing_xyz: tuple[float, float, float],
    patient: str,
    seed: int,
    *,
    margin_mm: tuple[float, float] = (0.0, 20.0),
    connectivity: int = 26,
    target_unit: str = "instance_3d",
) -> list[Prompt]:
    """Every (slice, target) prompt of a patient, ordered by slice then target id (`split_instances`)."""
    instances, targets = split_instances(labels, connectivity, target_unit)
    prompts = []
    for z in np.flatnonzero(instances.reshape(instances.shape[0], -1).any(axis=1)):
        for instance in np.unique(instances[z]):
            if instance == 0:
                continue
            tight = tight_box(instances[z] == instance)
            rng = prompt_rng(seed, patient, int(z), int(instance))
            box, margins = perturb_box(tight, labels.shape[1:], spacing_xyz[:2], margin_mm, rng)
            prompts.append(Prompt(int(z), int(instance), targets[int(instance)], tight, box, margins))
    return prompts


def write_prompts(
    path: str | Path, patient: str, prompts: list[Prompt], *, shape_zyx, spacing_xyz, params: dict
) -> None:
    slices: dict[int, list[dict]] = {}
    for p in prompts:
        slices.setdefault(p.slice, []).append(
            {
                "instance": p.instance,
                "target": p.target,
                "tight_box": list(p.tight),
                "box": list(p.box),
                "margins_mm": [round(m, 4) for m in p.margins_mm],
            }
        )
    record = {
        "patient": patient,
        "box_format": "x_min, y_min, x_max, y_max; inclusive CT pixel indices (x column, y row)",
        "ct_shape_zyx": list(shape_zyx),
        "spacing_xyz_mm": list(spacing_xyz),
        "params": params,
        "instances": {str(p.instance): p.target for p in prompts},
        "slices": [{"slice": z, "prompts": items} for z, items in sorted(slices.items())],
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(record, indent=1) + "\n")


def read_prompts(path: str | Path) -> list[Prompt]:
    record = json.loads(Path(path).read_text())
    return [
        Prompt(s["slice"], p["instance"], p["target"], tuple(p["tight_box"]), tuple(p["box"]), tuple(p["margins_mm"]))
        for s in record["slices"]
        for p in s["prompts"]
    ]


def render_box_channel(prompts: list[Prompt], shape_zyx: tuple[int, int, int], which: str = "box") -> np.ndarray:
    """A uint8 (z, y, x) volume: 1 inside any box of its slice (the nnU-Net box channel), 0 elsewhere."""
    channel = np.zeros(shape_zyx, dtype=np.uint8)
    for p in prompts:
        x0, y0, x1, y1 = p.box if which == "box" else p.tight
        channel[p.slice, y0 : y1 + 1, x0 : x1 + 1] = 1
    return channel
