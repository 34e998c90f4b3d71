"""One prompt per lesion (issue 16): the 3D box a person draws around a lesion, for propagation through the slices.

A lesion is a target of hnseg.prompts.split_instances with `instance_3d` (the GTV-T, each GTV-N 3D instance). Its
prompt is its tight 3D box with each of the six sides pushed out by the margin rule of hnseg.prompts.perturb_box
(an independent uniform draw in `margin_mm` per side; in-plane sides converted with the x and y spacing, the two
z sides with the slice spacing; rounded down; clipped to the volume), seeded by (seed, patient, -1, instance), and
`start`: the slice of the lesion's largest area inside the box, the cross-section on which a person draws the box.
Only this stage reads the labels; the propagation (hnseg.sam.propagate) reads the boxes.

Boxes are inclusive CT voxel indices (x_min, y_min, z_min, x_max, y_max, z_max), as the official LiteMedSAM 3D
boxes are.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from hnseg.prompts import prompt_rng, split_instances

BOX3D_SLICE = -1
"""The slice number in the seed of a 3D box's draw (per-slice prompts use their slice, 0 or more)."""


@dataclass(frozen=True)
class LesionBox:
    instance: int
    target: str
    box: tuple[int, int, int, int, int, int]  # x0, y0, z0, x1, y1, z1 (inclusive)
    tight: tuple[int, int, int, int, int, int]
    start: int  # the slice of the lesion's largest area inside the box
    margins_mm: tuple[float, ...]  # left, top, below (z0), right, bottom, above (z1)

    @property
    def box_2d(self) -> tuple[int, int, int, int]:
        """The box's in-plane extent (x0, y0, x1, y1)."""
        x0, y0, _, x1, y1, _ = self.box
        return x0, y0, x1, y1

    @property
    def z_range(self) -> range:
        return range(self.box[2], self.box[5] + 1)


def lesion_boxes(
    labels: np.ndarray,
    spacing_xyz: tuple[float, float, float],
    patient: str,
    seed: int,
    margin_mm: tuple[float, float],
    connectivity: int = 26,
) -> list[LesionBox]:
    """The 3D box prompt of every lesion of a (z, y, x) label volume (0, 1 GTV-T, 2 GTV-N), in target-id order."""
    instances, targets = split_instances(labels, connectivity, "instance_3d")
    shape_xyz = (labels.shape[2], labels.shape[1], labels.shape[0])
    boxes = []
    for instance, target in targets.items():
        mask = instances == instance
        zs, ys, xs = (np.flatnonzero(mask.any(axis=axes)) for axes in ((1, 2), (0, 2), (0, 1)))
        tight = (int(xs[0]), int(ys[0]), int(zs[0]), int(xs[-1]), int(ys[-1]), int(zs[-1]))
        draws = prompt_rng(seed, patient, BOX3D_SLICE, instance).uniform(margin_mm[0], margin_mm[1], size=6)
        lows = [max(tight[a] - int(np.floor(draws[a] / spacing_xyz[a])), 0) for a in range(3)]
        highs = [min(tight[3 + a] + int(np.floor(draws[3 + a] / spacing_xyz[a])), shape_xyz[a] - 1) for a in range(3)]
        areas = mask.reshape(mask.shape[0], -1).sum(axis=1)
        start = int(np.argmax(areas))  # inside the tight z range, so inside the box
        boxes.append(
            LesionBox(int(instance), target, (*lows, *highs), tight, start, tuple(round(float(d), 4) for d in draws))
        )
    return boxes


def write_lesion_boxes(
    path: str | Path, patient: str, boxes: list[LesionBox], *, shape_zyx, spacing_xyz, params: dict
) -> None:
    record = {
        "patient": patient,
        "box_format": "x_min, y_min, z_min, x_max, y_max, z_max; inclusive CT voxel indices",
        "ct_shape_zyx": list(shape_zyx),
        "spacing_xyz_mm": list(spacing_xyz),
        "params": params,
        "lesions": [asdict(b) for b in boxes],
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(record, indent=1) + "\n")


def read_lesion_boxes(path: str | Path) -> list[LesionBox]:
    record = json.loads(Path(path).read_text())
    return [
        LesionBox(b["instance"], b["target"], tuple(b["box"]), tuple(b["tight"]), b["start"], tuple(b["margins_mm"]))
        for b in record["lesions"]
    ]


def slices_to_embed(boxes: list[LesionBox]) -> list[int]:
    """Every slice inside some lesion's box, sorted: the frames propagation needs."""
    return sorted({z for b in boxes for z in b.z_range})
