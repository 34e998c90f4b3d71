"""Figure 2 in the paper's style: one test patient, on one slice, with both inputs, the box prompts, the ground
truth and the zero-shot and fine-tuned contours of GTV-T and GTV-N.

The rule (:func:`pick_case`): among the test patients whose reference has a GTV-N, the one whose fine-tuned
multimodal GTV-T DSC is nearest the median of that method's test GTV-T DSCs (all its test patients with a GTV-T
DSC); ties go to the lowest id. The slice (:func:`largest_gtvt_slice`) is the one with the largest GTV-T area in
the reference (ties: the lowest index).

Images are the fused slices the model saw (``results/slices/{fusion}/{p}.npz``, the 256 frame cropped of its
padding and stretched back over the CT slice); boxes, reference and predictions are drawn in CT pixel coordinates.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from os import PathLike

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from hnseg.report.methods import SUBSET_NAMES
from hnseg.report.scores import USED

CASE_METHOD = "litemedsam_finetuned_multimodal"
FUSIONS = ("ct", "multimodal")
FUSION_NAMES = {"ct": "CT-only input", "multimodal": "multimodal input (R CT, G PET, B MRI)"}
TARGET_LABELS = {"GTV-T": 1, "GTV-N": 2}
COLOURS = {"GTV-T": "#ff2d2d", "GTV-N": "#ffd400"}
REFERENCE_HAS_TARGET = ("ok", "pred_empty")
"""Statuses of a metric row whose reference mask is not empty (hnseg.metrics.score_target)."""
_TIE = 1e-9


@dataclass(frozen=True)
class CaseChoice:
    patient: str | None  # None: no patient qualifies (see reason)
    gtvt_dsc: float
    median: float
    n: int  # test patients with a GTV-T DSC of CASE_METHOD
    candidates: pd.DataFrame  # patient, gtvt_dsc, has_gtvn, distance_to_median, chosen
    reason: str = ""


def pick_case(scores: pd.DataFrame, subset: str = "test", method: str = CASE_METHOD) -> CaseChoice:
    """Apply the rule of the module docstring to the per-patient rows."""
    rows = scores[(scores["method"] == method) & (scores["subset"] == subset) & scores[USED]]
    gtvt = rows[(rows["target"] == "GTV-T")].dropna(subset=["dsc"]).set_index("patient")["dsc"]
    gtvn = rows[(rows["target"] == "GTV-N") & rows["status"].isin(REFERENCE_HAS_TARGET)]["patient"]
    columns = ["patient", "gtvt_dsc", "has_gtvn", "distance_to_median", "chosen"]
    if gtvt.empty:
        empty = pd.DataFrame(columns=columns)
        return CaseChoice(None, math.nan, math.nan, 0, empty, f"{method} has no {subset} GTV-T DSC")
    median = float(np.median(gtvt.to_numpy()))
    candidates = pd.DataFrame({"patient": gtvt.index, "gtvt_dsc": gtvt.to_numpy()})
    candidates["has_gtvn"] = candidates["patient"].isin(set(gtvn))
    candidates["distance_to_median"] = (candidates["gtvt_dsc"] - median).abs()
    eligible = candidates[candidates["has_gtvn"]].copy()
    eligible["_key"] = (eligible["distance_to_median"] / _TIE).round() * _TIE
    chosen = None
    if not eligible.empty:
        chosen = str(eligible.sort_values(["_key", "patient"]).iloc[0]["patient"])
    candidates["chosen"] = candidates["patient"] == chosen
    candidates = candidates.sort_values(["has_gtvn", "distance_to_median", "patient"], ascending=[False, True, True])
    candidates = candidates[columns].reset_index(drop=True)
    if chosen is None:
        return CaseChoice(
            None, math.nan, median, len(gtvt), candidates, f"no {subset} patient with a GTV-N has a GTV-T DSC"
        )
    return CaseChoice(chosen, float(gtvt[chosen]), median, len(gtvt), candidates)


def rule_text(choice: CaseChoice, subset: str = "test") -> str:
    name = SUBSET_NAMES.get(subset, subset)
    rule = (
        f"the {name} patient with a GTV-N whose fine-tuned multimodal GTV-T DSC is nearest the median of that "
        f"method's {name} GTV-T DSCs (ties: the lowest id), on the slice with the largest GTV-T area"
    )
    if choice.patient is None:
        return f"No case figure: {choice.reason}. The rule: {rule}."
    return (
        f"Patient {choice.patient}: {rule}. Its fine-tuned multimodal GTV-T DSC is {choice.gtvt_dsc:.3f}; the "
        f"median over {choice.n} {name} patients is {choice.median:.3f}."
    )


def largest_gtvt_slice(labels: np.ndarray) -> int:
    """Axial index (z, y, x volume) with the most GTV-T voxels; ties: the lowest index."""
    areas = (np.asarray(labels) == TARGET_LABELS["GTV-T"]).sum(axis=(1, 2))
    if not areas.any():
        raise ValueError("the reference has no GTV-T")
    return int(np.argmax(areas))


def _read_labels(path: str | PathLike[str]) -> np.ndarray:
    import SimpleITK as sitk

    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def _shard_slice(path: str | PathLike[str], z: int) -> np.ndarray:
    """The fused RGB slice z of a shard, cropped of the frame's padding (new_height x new_width x 3)."""
    from hnseg.fusion import read_shard

    images, _, slice_index, info = read_shard(path)
    where = np.flatnonzero(slice_index == z)
    if where.size == 0:
        raise ValueError(f"{path} holds no slice {z} (it holds the slices with a target: rerun fuse_slices)")
    return images[where[0], : info["new_height"], : info["new_width"]]


def _zoom(
    masks: list[np.ndarray], boxes: list[tuple[int, int, int, int]], shape: tuple[int, int]
) -> tuple[slice, slice]:
    """A square window (rows, cols) around every mask and box of the slice, with a margin."""
    ys, xs = [], []
    for mask in masks:
        r, c = np.nonzero(mask)
        ys += [r.min(), r.max()] if r.size else []
        xs += [c.min(), c.max()] if c.size else []
    for x0, y0, x1, y1 in boxes:
        xs += [x0, x1]
        ys += [y0, y1]
    if not ys:
        return slice(0, shape[0]), slice(0, shape[1])
    side = max(max(ys) - min(ys), max(xs) - min(xs)) + 1
    side = min(int(side * 1.5) + 8, max(shape))
    cy, cx = (max(ys) + min(ys)) / 2, (max(xs) + min(xs)) / 2
    y0 = int(np.clip(round(cy - side / 2), 0, max(shape[0] - side, 0)))
    x0 = int(np.clip(round(cx - side / 2), 0, max(shape[1] - side, 0)))
    return slice(y0, min(y0 + side, shape[0])), slice(x0, min(x0 + side, shape[1]))


def case_figure(
    choice: CaseChoice,
    scores: pd.DataFrame,
    shards: Mapping[str, str | PathLike[str]],
    prompts: str | PathLike[str],
    reference: str | PathLike[str],
    predictions: Mapping[str, str | PathLike[str]],
    subset: str = "test",
) -> tuple[Figure, pd.DataFrame]:
    """The figure of the chosen patient and the rows of what it draws (panel, layer, target, box, pixels, DSC).

    shards: {fusion: npz}; predictions: {method: nii.gz} of the zero-shot and fine-tuned methods of each fusion
    (a missing one leaves its panel saying so).
    """
    from hnseg.prompts import read_prompts

    if choice.patient is None:
        raise ValueError(choice.reason)
    patient = choice.patient
    labels = _read_labels(reference)
    z = largest_gtvt_slice(labels)
    slice_prompts = [p for p in read_prompts(prompts) if p.slice == z]
    truth = {t: labels[z] == v for t, v in TARGET_LABELS.items()}
    predicted = {m: _read_labels(path)[z] for m, path in predictions.items()}
    zoom = _zoom(
        [labels[z] > 0, *(p > 0 for p in predicted.values())], [p.box for p in slice_prompts], labels.shape[1:]
    )
    dsc = scores[(scores["patient"] == patient) & (scores["subset"] == subset)].set_index(["method", "target"])["dsc"]
    height, width = labels.shape[1:]
    extent = (-0.5, width - 0.5, height - 0.5, -0.5)

    drawn = []
    fig, axes = plt.subplots(len(FUSIONS), 3, figsize=(10.5, 3.6 * len(FUSIONS)), squeeze=False)
    for row, fusion in enumerate(FUSIONS):
        image = _shard_slice(shards[fusion], z) if fusion in shards else None
        for col in range(3):
            ax = axes[row][col]
            ax.set_xticks([])
            ax.set_yticks([])
            if image is None:
                ax.text(0.5, 0.5, f"no {fusion} slices", ha="center", va="center", transform=ax.transAxes)
                continue
            ax.imshow(image, extent=extent, interpolation="nearest", gid=f"input:{fusion}")
            ax.set_xlim(zoom[1].start - 0.5, zoom[1].stop - 0.5)
            ax.set_ylim(zoom[0].stop - 0.5, zoom[0].start - 0.5)
        axes[row][0].set_ylabel(FUSION_NAMES[fusion], fontsize=9)
        if image is None:
            continue
        drawn.append({"panel": f"{fusion} input", "layer": "input", "fusion": fusion, "slice": z})
        for p in slice_prompts:
            x0, y0, x1, y1 = p.box
            axes[row][0].add_patch(
                Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0 + 1, y1 - y0 + 1, fill=False, lw=1.4, ec=COLOURS[p.target])
            )
            drawn.append(
                {"panel": f"{fusion} input", "layer": "box prompt", "fusion": fusion, "slice": z, "target": p.target,
                 "instance": p.instance, "x_min": x0, "y_min": y0, "x_max": x1, "y_max": y1}
            )  # fmt: skip
        axes[row][0].set_title(f"{fusion}: input and box prompts", fontsize=9)
        for col, variant in ((1, "zeroshot"), (2, "finetuned")):
            ax, method = axes[row][col], f"litemedsam_{variant}_{fusion}"
            title = []
            for target, colour in COLOURS.items():
                if truth[target].any():
                    ax.contour(truth[target], levels=[0.5], colors=[colour], linewidths=1.0, linestyles="solid")
                drawn.append(
                    {"panel": f"{fusion} {variant}", "layer": "ground truth", "fusion": fusion, "slice": z,
                     "target": target, "pixels": int(truth[target].sum())}
                )  # fmt: skip
                if method not in predicted:
                    continue
                mask = predicted[method] == TARGET_LABELS[target]
                if mask.any():
                    ax.contour(mask, levels=[0.5], colors=[colour], linewidths=1.6, linestyles="dashed")
                value = dsc.get((method, target), math.nan)
                drawn.append(
                    {"panel": f"{fusion} {variant}", "layer": "prediction", "fusion": fusion, "slice": z,
                     "target": target, "method": method, "pixels": int(mask.sum()), "dsc_3d": value}
                )  # fmt: skip
                title.append(f"{target} {value:.2f}" if not math.isnan(value) else f"{target} n/a")
            name = "zero-shot" if variant == "zeroshot" else "fine-tuned"
            ax.set_title(
                f"{name}: 3D DSC {', '.join(title)}" if method in predicted else f"{name}: not run", fontsize=9
            )
    handles = [
        Line2D([], [], color=COLOURS["GTV-T"], lw=1.4, label="GTV-T"),
        Line2D([], [], color=COLOURS["GTV-N"], lw=1.4, label="GTV-N"),
        Line2D([], [], color="0.3", lw=1.0, ls="solid", label="ground truth (solid), box prompt (left)"),
        Line2D([], [], color="0.3", lw=1.6, ls="dashed", label="prediction (dashed)"),
    ]
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.suptitle(f"{patient}, axial slice {z}", fontsize=11)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    columns = [
        "panel",
        "layer",
        "fusion",
        "slice",
        "target",
        "instance",
        "method",
        "x_min",
        "y_min",
        "x_max",
        "y_max",
        "pixels",
        "dsc_3d",
    ]
    data = pd.DataFrame(drawn, columns=columns)
    data.insert(0, "patient", patient)
    return fig, data
