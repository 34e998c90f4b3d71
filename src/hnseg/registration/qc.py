"""Registration QC measures: similarity on the CT body, landmark TRE and GTV-T Dice against the synthetic truth, the
flags, and the checkerboard figure (body overlap is `masks.overlap_coefficient`, which the registration also uses).

Only the registration_qc rule runs this module (through `qc_stage`); nothing the registration runs imports it, so
editing a measure or the figure reruns the QC and never a registration."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from hnseg.registration.options import QcOptions

STAGES = ("before", "rigid", "syn")
DISPLAY_WINDOW_HU = (-160.0, 240.0)  # qc.png only: a soft-tissue window for the eye


def mutual_information(a: np.ndarray, b: np.ndarray, bins: int) -> float:
    """Mutual information (nats) of two equally long samples, from their joint histogram with `bins` bins each."""
    if a.size == 0 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    joint, _, _ = np.histogram2d(a, b, bins=bins)
    p = joint / joint.sum()
    pa, pb = p.sum(axis=1), p.sum(axis=0)
    nz = p > 0
    return float(np.sum(p[nz] * np.log(p[nz] / np.outer(pa, pb)[nz])))


def normalised_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two samples (0 when either is constant)."""
    if a.size < 2:
        return 0.0
    a = a.astype(np.float64) - a.mean()
    b = b.astype(np.float64) - b.mean()
    denom = math.sqrt(float(np.dot(a, a)) * float(np.dot(b, b)))
    return float(np.dot(a, b) / denom) if denom > 0 else 0.0


def similarity(ct: sitk.Image, mr: sitk.Image, body: sitk.Image, bins: int) -> dict[str, float]:
    """MI and NCC of CT and MR (same grid) over the CT body mask; MR outside its field of view counts as 0."""
    inside = sitk.GetArrayViewFromImage(body) > 0
    a = sitk.GetArrayViewFromImage(ct)[inside]
    b = sitk.GetArrayViewFromImage(mr)[inside]
    return {"mi": round(mutual_information(a, b, bins), 5), "ncc": round(normalised_correlation(a, b), 5)}


def tre_summary(mapped_mr: np.ndarray, truth_mr: np.ndarray, names: list[str]) -> dict:
    """Target registration error (mm) of CT landmarks mapped into the MR against their true MR positions."""
    errors = np.linalg.norm(np.asarray(mapped_mr) - np.asarray(truth_mr), axis=1)
    return {
        "mean_mm": round(float(errors.mean()), 3),
        "max_mm": round(float(errors.max()), 3),
        "per_landmark_mm": {n: round(float(e), 3) for n, e in zip(names, errors, strict=True)},
    }


def dice(a: np.ndarray, b: np.ndarray) -> float | None:
    a, b = a > 0, b > 0
    total = int(a.sum()) + int(b.sum())
    return round(2.0 * float((a & b).sum()) / total, 4) if total else None


def flags_for(name: str, record: dict, opts: QcOptions) -> list[tuple[str, str]]:
    """(flag, explanation) pairs for one MR's QC record: no overlap with the CT, similarity made worse."""
    out = []
    overlap = record["overlap"]
    if overlap["scanner_coordinates"] < opts.min_overlap:
        out.append(
            (
                "mr_outside_ct_coordinates",
                f"{name}: in scanner coordinates the MR body overlaps the CT body by "
                f"{overlap['scanner_coordinates']:.2f} (< {opts.min_overlap}); the registration started from "
                f"{record['initialisation']}. Check qc.png",
            )
        )
    if overlap["registered"] < opts.min_overlap:
        out.append(
            (
                "no_overlap",
                f"{name}: after registration the MR body overlaps the CT body by {overlap['registered']:.2f} "
                f"(< {opts.min_overlap}): the MR does not show the CT's anatomy or the registration failed; check "
                "qc.png and the MR series chosen at import",
            )
        )
    sim = record["similarity"]
    keep = 1.0 - opts.max_mi_drop
    if sim["syn"]["mi"] < keep * sim["before"]["mi"]:
        out.append(
            (
                "similarity_worse",
                f"{name}: mutual information with the CT fell from {sim['before']['mi']:.4f} (scanner coordinates) "
                f"to {sim['syn']['mi']:.4f} after registration (more than registration.qc.max_mi_drop = "
                f"{opts.max_mi_drop}); check qc.png",
            )
        )
    if sim["syn"]["mi"] < keep * sim["rigid"]["mi"]:
        out.append(
            (
                "syn_worse_than_rigid",
                f"{name}: mutual information with the CT fell from {sim['rigid']['mi']:.4f} after the rigid stage to "
                f"{sim['syn']['mi']:.4f} after SyN (more than registration.qc.max_mi_drop = {opts.max_mi_drop}); "
                "check qc.png, consider more regularisation (registration.syn.flow_sigma, total_sigma)",
            )
        )
    return out


def tumour_slices(labels: np.ndarray, n: int) -> list[int]:
    """n axial slice indices spread over the GTV-T (label 1), else over all labels, else around the middle."""
    for mask in (labels == 1, labels > 0):
        zs = np.flatnonzero(mask.any(axis=(1, 2)))
        if zs.size:
            picks = np.quantile(zs, np.linspace(0.2, 0.8, n)) if n > 1 else [np.median(zs)]
            return sorted({int(np.rint(z)) for z in picks})
    mid = labels.shape[0] // 2
    return sorted({min(max(mid + k, 0), labels.shape[0] - 1) for k in range(-(n // 2), n - n // 2)})


def _unit(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return np.clip((values - lo) / (hi - lo if hi > lo else 1.0), 0.0, 1.0)


def checkerboard(a: np.ndarray, b: np.ndarray, tile: int) -> np.ndarray:
    yy, xx = np.indices(a.shape)
    return np.where(((yy // tile) + (xx // tile)) % 2 == 0, a, b)


def _crop_box(body: np.ndarray, margin: int) -> tuple[slice, slice]:
    ys, xs = np.nonzero(body.any(axis=0))
    if ys.size == 0:
        return slice(None), slice(None)
    return (
        slice(max(int(ys.min()) - margin, 0), int(ys.max()) + margin + 1),
        slice(max(int(xs.min()) - margin, 0), int(xs.max()) + margin + 1),
    )


def qc_figure(
    path: Path,
    patient: str,
    ct: sitk.Image,
    labels: sitk.Image,
    body: sitk.Image,
    rows: list[tuple[str, sitk.Image]],
    n_slices: int,
) -> list[int]:
    """Checkerboards of the CT (soft-tissue window) and each MR on the CT grid, on axial slices through the
    GTV-T (red contour), cropped to the body; one row per (title, MR image). Returns the slice indices shown."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ct_a = _unit(sitk.GetArrayFromImage(ct).astype(np.float32), *DISPLAY_WINDOW_HU)
    lab = sitk.GetArrayFromImage(labels)
    slices = tumour_slices(lab, n_slices)
    rows_box, cols_box = _crop_box(sitk.GetArrayViewFromImage(body) > 0, 8)
    sx, sy = ct.GetSpacing()[0], ct.GetSpacing()[1]
    tile = max(4, round(16.0 / sx))
    fig, axes = plt.subplots(len(rows), len(slices), figsize=(3.2 * len(slices), 3.2 * len(rows)), squeeze=False)
    for r, (title, mr) in enumerate(rows):
        mr_a = sitk.GetArrayFromImage(mr).astype(np.float32)
        body = mr_a[mr_a > 0]
        top = float(np.percentile(body, 99.5)) if body.size else 1.0
        mr_a = _unit(mr_a, 0.0, top)
        for c, k in enumerate(slices):
            ax = axes[r][c]
            a, b, gtv = ct_a[k][rows_box, cols_box], mr_a[k][rows_box, cols_box], lab[k][rows_box, cols_box] == 1
            ax.imshow(checkerboard(a, b, tile), cmap="gray", vmin=0, vmax=1, aspect=sy / sx)
            if gtv.any():
                ax.contour(gtv, levels=[0.5], colors="red", linewidths=0.8)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{title}, slice {k}", fontsize=8)
    fig.suptitle(f"{patient}: CT / MR checkerboard (red: GTV-T)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return slices
