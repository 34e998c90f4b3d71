"""Image volumes of one patient: CT, SUV truth, T1/T2 (with the MR-space labels) and the displacement field."""

from __future__ import annotations

import math

import numpy as np

from hnseg.synthetic import anatomy as an
from hnseg.synthetic import imaging
from hnseg.synthetic.geometry import Grid
from hnseg.synthetic.model import PatientModel
from hnseg.synthetic.seeding import rng


def ct_volume(model: PatientModel) -> np.ndarray:
    """Stored CT values, int16 (z, y, x), HU = stored - 1024."""
    g = model.ct_grid
    xs, ys = g.axis(0), g.axis(1)
    noise = rng(model.seed, model.patient_id, "ct_noise")
    out = np.empty(g.shape_zyx, dtype=np.int16)
    for k in range(g.size[2]):
        labels, _ = model.anatomy.sample_slice(xs, ys, g.slice_z(k))
        hu = imaging.ct_slice(labels, model.contrast, noise)
        out[k] = np.clip(np.rint(hu) + 1024, 0, 4095).astype(np.int16)
    return out


def suv_volume(model: PatientModel) -> np.ndarray:
    """SUV truth on the PET grid (float32): activity averaged over sub-voxels, PSF, noise."""
    g = model.pet_grid
    f = model.size.pet.supersample
    sub = (np.arange(f) + 0.5) / f - 0.5
    xs = (g.axis(0)[:, None] + sub[None, :] * g.spacing[0]).ravel()
    ys = (g.axis(1)[:, None] + sub[None, :] * g.spacing[1]).ravel()
    nx, ny = g.size[0], g.size[1]
    activity = np.zeros(g.shape_zyx, dtype=np.float32)
    for k, z in enumerate(g.axis(2)):
        acc = np.zeros((ny, nx), dtype=np.float64)
        for dz in sub * g.spacing[2]:
            labels, rho = model.anatomy.sample_slice(xs, ys, float(z + dz))
            values = imaging.suv_values(labels, rho, model.contrast)
            acc += values.reshape(ny, f, nx, f).mean(axis=(1, 3))
        activity[k] = acc / f
    spacing_zyx = (g.spacing[2], g.spacing[1], g.spacing[0])
    return imaging.pet_blur_and_noise(activity, spacing_zyx, rng(model.seed, model.patient_id, "pet_noise"))


def mr_volumes(model: PatientModel) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """T1 and T2 pixels (uint16, z, y, x) and the MR-space truth labels (0 / 1 GTV-T / 2 GTV-N)."""
    g = model.mr_grid
    n_rows, n_cols = g.size[1], g.size[0]
    t1 = np.empty(g.shape_zyx, dtype=np.uint16)
    t2 = np.empty(g.shape_zyx, dtype=np.uint16)
    labels_mr = np.zeros(g.shape_zyx, dtype=np.uint8)
    r_bias = rng(model.seed, model.patient_id, "mr_bias")
    direction = r_bias.normal(size=3)
    direction /= np.linalg.norm(direction)
    strength, curvature = float(r_bias.uniform(0.1, 0.2)), float(r_bias.uniform(0.05, 0.15))
    centre = np.array([g.origin[i] + (g.size[i] - 1) / 2.0 * g.spacing[i] for i in range(3)])
    noise = {
        "T1": rng(model.seed, model.patient_id, "mr_t1_noise"),
        "T2": rng(model.seed, model.patient_id, "mr_t2_noise"),
    }
    for k in range(g.size[2]):
        pts = g.slice_points(k)
        labels, rho = model.anatomy.sample_points(model.pose.mr_to_ct(pts))
        rel = (pts - centre) / 150.0
        bias = np.exp(strength * rel @ direction + curvature * np.sum(rel**2, axis=1)).reshape(n_rows, n_cols)
        labels2 = labels.reshape(n_rows, n_cols)
        rho2 = rho.reshape(n_rows, n_cols)
        for weighting, target in (("T1", t1), ("T2", t2)):
            values = imaging.mr_values(labels2, rho2, model.contrast, weighting)
            target[k] = imaging.mr_slice(values, bias.astype(np.float32), model.contrast, noise[weighting])
        labels_mr[k][labels2 == an.TUMOUR] = 1
        labels_mr[k][labels2 >= an.NODE] = 2
    return t1, t2, labels_mr


def displacement_field(model: PatientModel) -> tuple[Grid, np.ndarray, float, int]:
    """d(x) = M^-1(x) - x on the CT grid subsampled by the size's stride (float32, z, y, x, 3)."""
    g = model.ct_grid
    s = model.size.displacement_stride
    grid = Grid(
        size=tuple(math.ceil(g.size[i] / s[i]) for i in range(3)),
        spacing=tuple(g.spacing[i] * s[i] for i in range(3)),
        origin=g.origin,
    )
    zz, yy, xx = np.meshgrid(grid.axis(2), grid.axis(1), grid.axis(0), indexing="ij")
    pts = np.column_stack([xx.ravel(), yy.ravel(), zz.ravel()])
    mr, residual, iterations = model.pose.ct_to_mr(pts)
    disp = (mr - pts).astype(np.float32).reshape((*grid.shape_zyx, 3))
    return grid, disp, residual, iterations
