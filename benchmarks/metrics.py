"""Seconds per structure of hnseg.metrics (DSC, HD95, NSD, score_target) on a realistic CT grid.

    PYTHONPATH=src python benchmarks/metrics.py [--shape 150 512 512] [--spacing 2.0 0.98 0.98] [--repeats 3]

Builds a ~50 mm irregular tumour and a shifted, re-shaped prediction on a 150x512x512 grid (spacing z, y, x in mm),
and the same prediction plus a far false-positive blob (which makes the union bounding box most of the volume).
Prints one row per case: the metric values and the best of --repeats wall seconds of each call. For comparison it
also times HD95 through a distance transform of the cropped union bounding box (``--no-edt`` skips it) and checks
that it gives the same value. Target (DESIGN.md section 9): HD95 under 0.2 s per structure.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable

import numpy as np
from scipy import ndimage

from hnseg.metrics import _bbox, dsc, hd95, nsd, score_target


def blob(shape, spacing, centre_mm, radii_mm, rng: np.random.Generator | None = None, roughness: float = 0.0):
    """Boolean (z, y, x) mask of a (noisy) ellipsoid, computed only in its own box."""
    spacing, centre, radii = (np.asarray(v, dtype=float) for v in (spacing, centre_mm, radii_mm))
    reach = (1.5 * radii / spacing).astype(int) + 2
    middle = np.round(centre / spacing).astype(int)
    lo, hi = np.maximum(middle - reach, 0), np.minimum(middle + reach + 1, shape)
    grids = np.meshgrid(*[np.arange(a, b) * s for a, b, s in zip(lo, hi, spacing, strict=True)], indexing="ij")
    level = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii, strict=True))
    if roughness and rng is not None:
        noise = ndimage.gaussian_filter(rng.normal(size=level.shape), sigma=(2.0, 4.0, 4.0))
        level = level + roughness * noise / noise.std()
    mask = np.zeros(shape, dtype=bool)
    mask[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] = level <= 1.0
    return mask


def edt_hd95(pred: np.ndarray, gt: np.ndarray, spacing: tuple[float, ...]) -> float:
    """The same HD95, through distance transforms of the union bounding box (plus one voxel)."""
    pred_box, gt_box = _bbox(pred), _bbox(gt)
    box = tuple(slice(min(a.start, b.start), max(a.stop, b.stop)) for a, b in zip(pred_box, gt_box, strict=True))
    cross = ndimage.generate_binary_structure(3, 1)
    p, g = pred[box], gt[box]
    p_edge = p & ~ndimage.binary_erosion(p, cross, border_value=0)
    g_edge = g & ~ndimage.binary_erosion(g, cross, border_value=0)
    to_g = ndimage.distance_transform_edt(~g_edge, sampling=spacing)[p_edge]
    to_p = ndimage.distance_transform_edt(~p_edge, sampling=spacing)[g_edge]
    return float(max(np.percentile(to_g, 95), np.percentile(to_p, 95)))


def best_of(repeats: int, fn: Callable[[], object]) -> tuple[float, object]:
    best, value = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - start)
    return best, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[150, 512, 512], metavar=("Z", "Y", "X"))
    parser.add_argument("--spacing", type=float, nargs=3, default=[2.0, 0.98, 0.98], metavar=("Z", "Y", "X"))
    parser.add_argument("--repeats", type=int, default=3, help="best of this many calls (default 3)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-edt", action="store_true", help="skip the distance-transform comparison")
    args = parser.parse_args()

    shape, spacing = tuple(args.shape), tuple(args.spacing)
    extent = np.asarray(shape) * spacing
    rng = np.random.default_rng(args.seed)
    centre = extent / 2
    gt = blob(shape, spacing, centre, (24, 26, 22), rng, roughness=0.25)
    pred = blob(shape, spacing, centre + np.array([2.0, 3.0, -2.5]), (22, 27, 24), rng, roughness=0.3)
    fp_centre = extent * np.array([0.12, 0.85, 0.85])
    far_fp = pred | blob(shape, spacing, fp_centre, (4, 5, 5))
    fp_mm = float(np.linalg.norm(fp_centre - centre))

    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"# grid {shape} (z, y, x), spacing {spacing} mm; GTV {gt.sum() * np.prod(spacing) / 1000:.1f} ml")
    header = (
        f"{'case':<16} {'DSC':>6} {'HD95 mm':>8} {'NSD 2mm':>8} {'bbox Mvox':>9} "
        f"{'s dsc':>7} {'s hd95':>7} {'s nsd':>7} {'s score':>8} {'s hd95 EDT':>10}"
    )
    print(header)
    print("-" * len(header))
    for name, prediction in (("tumour", pred), (f"+ FP {fp_mm:.0f} mm away", far_fp)):
        t_dsc, v_dsc = best_of(args.repeats, lambda p=prediction: dsc(p, gt))
        t_hd, v_hd = best_of(args.repeats, lambda p=prediction: hd95(p, gt, spacing))
        t_nsd, v_nsd = best_of(args.repeats, lambda p=prediction: nsd(p, gt, spacing))
        t_score, _ = best_of(args.repeats, lambda p=prediction: score_target(p, gt, spacing))
        union = _bbox(prediction | gt, margin=0)
        bbox_mvox = np.prod([s.stop - s.start for s in union]) / 1e6
        edt_cell = "-"
        if not args.no_edt:
            t_edt, v_edt = best_of(args.repeats, lambda p=prediction: edt_hd95(p, gt, spacing))
            if abs(v_edt - v_hd) > 1e-6:
                raise SystemExit(f"HD95 differs: k-d tree {v_hd} vs distance transform {v_edt}")
            edt_cell = f"{t_edt:.3f}"
        print(
            f"{name:<16} {v_dsc:>6.3f} {v_hd:>8.2f} {v_nsd:>8.3f} {bbox_mvox:>9.2f} "
            f"{t_dsc:>7.3f} {t_hd:>7.3f} {t_nsd:>7.3f} {t_score:>8.3f} {edt_cell:>10}"
        )


if __name__ == "__main__":
    main()
