"""The MR pose: how MR patient space relates to CT patient space.

Convention. M maps an MR patient point y (LPS mm, the MR series' own frame of reference) to the CT patient point
that the MR shows there:

    p = R (y - c) + c + t          (rigid part; c = centre of rotation in CT space, t = translation)
    M(y) = p + u(p)                (deformation; u = sum of Gaussian RBFs in CT space)

so the MR intensity at y is the anatomy at M(y), and imaging needs no inversion. The inverse (CT point x to MR
point y) solves p + u(p) = x by the fixed-point iteration p <- x - u(p) (u is a contraction: its Jacobian norm is
far below 1), then y = R^T (p - c - t) + c. The displacement field d(x) = M^-1(x) - x, sampled on the CT grid, is
what a registration of the MR (moving) to the CT (fixed) should recover (ITK/ANTs convention: fixed point plus
displacement = moving point).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def rotation_xyz(deg: tuple[float, float, float]) -> np.ndarray:
    """R = Rz @ Ry @ Rx for angles (about x, about y, about z) in degrees (right-handed, LPS axes)."""
    ax, ay, az = (math.radians(v) for v in deg)
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


@dataclass(frozen=True)
class MrPose:
    angles_deg: tuple[float, float, float]
    centre: tuple[float, float, float]
    translation: tuple[float, float, float]
    rbf_centres: tuple[tuple[float, float, float], ...]
    rbf_sigmas: tuple[float, ...]
    rbf_amplitudes: tuple[tuple[float, float, float], ...]

    @property
    def rotation(self) -> np.ndarray:
        return rotation_xyz(self.angles_deg)

    def deformation(self, p: np.ndarray) -> np.ndarray:
        """u(p) for points (N, 3) in CT space."""
        u = np.zeros_like(p)
        x, y, z = p[:, 0], p[:, 1], p[:, 2]
        for q, sigma, amp in zip(self.rbf_centres, self.rbf_sigmas, self.rbf_amplitudes, strict=True):
            d2 = (x - q[0]) ** 2
            d2 += (y - q[1]) ** 2
            d2 += (z - q[2]) ** 2
            w = np.exp(d2 * (-0.5 / (sigma * sigma)))
            for i in range(3):
                u[:, i] += w * amp[i]
        return u

    def rigid(self, y: np.ndarray) -> np.ndarray:
        c = np.asarray(self.centre)
        return (y - c) @ self.rotation.T + c + np.asarray(self.translation)

    def rigid_inverse(self, p: np.ndarray) -> np.ndarray:
        c = np.asarray(self.centre)
        return (p - c - np.asarray(self.translation)) @ self.rotation + c

    def mr_to_ct(self, y: np.ndarray) -> np.ndarray:
        """M(y): the CT point shown at MR points y, (N, 3)."""
        p = self.rigid(np.atleast_2d(np.asarray(y, dtype=np.float64)))
        return p + self.deformation(p)

    def ct_to_mr(self, x: np.ndarray, tol: float = 1e-10, max_iter: int = 100) -> tuple[np.ndarray, float, int]:
        """M^-1(x) by fixed-point iteration; returns (MR points, max residual |M(y) - x| in mm, iterations)."""
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        p = x.copy()
        iterations = 0
        for iterations in range(1, max_iter + 1):  # noqa: B007 - the count is returned
            new = x - self.deformation(p)
            change = float(np.max(np.abs(new - p))) if p.size else 0.0
            p = new
            if change < tol:
                break
        y = self.rigid_inverse(p)
        residual = float(np.max(np.linalg.norm(self.mr_to_ct(y) - x, axis=1))) if x.size else 0.0
        return y, residual, iterations

    def max_displacement(self, points: np.ndarray) -> float:
        return float(np.max(np.linalg.norm(self.deformation(points), axis=1)))

    def to_json(self) -> dict:
        r = self.rotation
        c, t = np.asarray(self.centre), np.asarray(self.translation)
        m = np.eye(4)
        m[:3, :3] = r
        m[:3, 3] = c + t - r @ c
        return {
            "convention": (
                "M maps an MR patient point y (LPS mm) to the CT patient point shown there: "
                "p = R (y - c) + c + t, M(y) = p + u(p), u(p) = sum_k a_k exp(-|p - q_k|^2 / (2 s_k^2)). "
                "MR intensity at y = anatomy(M(y)). R = Rz @ Ry @ Rx of angles_deg (about x, y, z). "
                "The rigid part alone is rigid_matrix_mr_to_ct (4x4, homogeneous, p = A [y, 1]). "
                "displacement_ct.nii.gz holds d(x) = M^-1(x) - x at CT grid points (LPS mm, as ITK reads it): "
                "the MR point showing the tissue at CT point x is x + d(x)."
            ),
            "rigid": {
                "angles_deg": list(self.angles_deg),
                "centre_ct_mm": list(self.centre),
                "translation_mm": list(self.translation),
                "rotation_matrix": r.tolist(),
                "rigid_matrix_mr_to_ct": m.tolist(),
                "rotation_angle_deg": math.degrees(math.acos(max(-1.0, min(1.0, (np.trace(r) - 1) / 2)))),
            },
            "deformation": {
                "type": "sum of Gaussian radial basis functions in CT space, added after the rigid part",
                "centres_ct_mm": [list(q) for q in self.rbf_centres],
                "sigmas_mm": list(self.rbf_sigmas),
                "amplitudes_mm": [list(a) for a in self.rbf_amplitudes],
            },
        }

    @staticmethod
    def from_json(data: dict) -> MrPose:
        rigid, deform = data["rigid"], data["deformation"]
        return MrPose(
            angles_deg=tuple(rigid["angles_deg"]),
            centre=tuple(rigid["centre_ct_mm"]),
            translation=tuple(rigid["translation_mm"]),
            rbf_centres=tuple(tuple(q) for q in deform["centres_ct_mm"]),
            rbf_sigmas=tuple(deform["sigmas_mm"]),
            rbf_amplitudes=tuple(tuple(a) for a in deform["amplitudes_mm"]),
        )


def draw_pose(rng: np.random.Generator, centre: np.ndarray, probe_points: np.ndarray) -> MrPose:
    """A rigid pose (flexion 3-5 degrees about x, 1-3 about y and z; 5-15 mm translation) plus a neck-flexion-like
    deformation whose peak over ``probe_points`` is 3-6 mm."""

    def signed(lo: float, hi: float) -> float:
        return float(rng.uniform(lo, hi) * rng.choice([-1.0, 1.0]))

    angles = (signed(3.0, 5.0), signed(1.0, 3.0), signed(1.0, 3.0))
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    translation = direction * rng.uniform(5.0, 15.0)
    c = np.asarray(centre, dtype=np.float64)
    # lower neck moves forward/down relative to the head, plus a lateral and a local component
    centres = [
        c + np.array([rng.uniform(-10, 10), rng.uniform(5, 20), rng.uniform(-80, -60)]),
        c + np.array([rng.choice([-1.0, 1.0]) * rng.uniform(25, 40), rng.uniform(-15, 5), rng.uniform(-50, -25)]),
        c + np.array([rng.uniform(-15, 15), rng.uniform(-40, -20), rng.uniform(-30, 0)]),
    ]
    sigmas = [float(rng.uniform(40, 55)), float(rng.uniform(30, 40)), float(rng.uniform(30, 40))]
    amps = [
        np.array([rng.uniform(-1, 1), rng.uniform(-5, -3), rng.uniform(-3, -1)]),
        np.array([rng.uniform(-3, 3), rng.uniform(-2, 2), rng.uniform(-2, 2)]),
        np.array([rng.uniform(-2, 2), rng.uniform(-2, 2), rng.uniform(-2, 2)]),
    ]
    pose = MrPose(
        angles_deg=angles,
        centre=tuple(float(v) for v in c),
        translation=tuple(float(v) for v in translation),
        rbf_centres=tuple(tuple(float(v) for v in q) for q in centres),
        rbf_sigmas=tuple(sigmas),
        rbf_amplitudes=tuple(tuple(float(v) for v in a) for a in amps),
    )
    target = float(rng.uniform(3.0, 6.0))
    scale = target / pose.max_displacement(probe_points)
    return MrPose(
        angles_deg=angles,
        centre=pose.centre,
        translation=pose.translation,
        rbf_centres=pose.rbf_centres,
        rbf_sigmas=pose.rbf_sigmas,
        rbf_amplitudes=tuple(tuple(float(v) * scale for v in a) for a in pose.rbf_amplitudes),
    )
