"""Grids, analytic shapes and the even-odd polygon rasteriser of the synthetic cohort.

Coordinates are DICOM patient coordinates (LPS, mm): x to the patient's left, y posterior, z superior.
Every grid is axial with identity direction; voxel index k = 0 is the most inferior slice (SimpleITK order).

Shapes are implicit functions of a physical point, so any grid (CT, PET, warped MR points) samples the same
truth. A :class:`StarShape` is star-shaped in every axial cross-section: a point is inside when its distance to
the section centre c(z) is below R(theta, z) = cap(z) * E(theta - angle; ax(z), ay(z), n(z)) * (1 + lobes(theta,
z)), with E the radius of a superellipse. Its outline on a slice is therefore one simple polygon.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
import SimpleITK as sitk

# ----------------------------------------------------------------------------------------------- grids


@dataclass(frozen=True)
class Grid:
    """An axial image grid: size and spacing in SimpleITK order (x, y, z); origin = centre of voxel (0, 0, 0)."""

    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]

    @property
    def shape_zyx(self) -> tuple[int, int, int]:
        return (self.size[2], self.size[1], self.size[0])

    def axis(self, i: int) -> np.ndarray:
        return self.origin[i] + np.arange(self.size[i], dtype=np.float64) * self.spacing[i]

    def slice_z(self, k: int) -> float:
        """z of slice k, exactly as written to ImagePositionPatient."""
        return position(self.origin[2] + k * self.spacing[2])

    def slice_points(self, k: int) -> np.ndarray:
        """Voxel centres of slice k as (rows * cols, 3), row-major."""
        xs, ys = self.axis(0), self.axis(1)
        pts = np.empty((ys.size, xs.size, 3))
        pts[..., 0] = xs[None, :]
        pts[..., 1] = ys[:, None]
        pts[..., 2] = self.slice_z(k)
        return pts.reshape(-1, 3)

    def image(self, array_zyx: np.ndarray, vector: bool = False) -> sitk.Image:
        img = sitk.GetImageFromArray(array_zyx, isVector=vector)
        img.SetSpacing(self.spacing)
        img.SetOrigin(self.origin)
        img.SetDirection((1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
        return img

    def to_json(self) -> dict:
        return {"size_xyz": list(self.size), "spacing_xyz_mm": list(self.spacing), "origin_xyz_mm": list(self.origin)}


def ds(value: float, decimals: int | None = None) -> str:
    """Text of a DICOM DS value (at most 16 characters).

    Without ``decimals`` the text is the shortest one that reads back as exactly the same float (so geometry
    written to the files is bit-identical to the geometry used for the truth); with ``decimals`` the value is
    rounded, without trailing zeros.
    """
    if decimals is None:
        text = repr(float(value))
        if text.endswith(".0"):
            text = text[:-2]
    else:
        text = f"{value:.{decimals}f}"
        if "." in text:
            text = text.rstrip("0").rstrip(".")
    if text in ("-0", ""):
        text = "0"
    if len(text) > 16:
        raise ValueError(f"{value!r} does not fit a DS value ({text!r}); round it first")
    return text


def ds_exact(value: float, decimals: int | None = None) -> float:
    """The float that a reader gets back from :func:`ds` (use it for every number that is written)."""
    return float(ds(value, decimals))


def position(value: float) -> float:
    """A coordinate rounded to 1e-8 mm, whose shortest text fits a DS value (positions on grids)."""
    return ds_exact(round(value, 8))


# ----------------------------------------------------------------------------------------------- shapes


def _interp(z, zk: np.ndarray, vk: np.ndarray):
    """Linear interpolation over z knots; two-knot profiles extrapolate (slanted blobs keep their slope)."""
    if zk.size == 2:
        t = (np.asarray(z, dtype=np.float64) - zk[0]) / (zk[1] - zk[0])
        return vk[0] + t * (vk[1] - vk[0])
    return np.interp(z, zk, vk)


def _superellipse_radius(phi, ax, ay, n):
    c, s = np.abs(np.cos(phi)), np.abs(np.sin(phi))
    if isinstance(n, float) and n == 2.0:
        return 1.0 / np.sqrt((c / ax) ** 2 + (s / ay) ** 2)
    return ((c / ax) ** n + (s / ay) ** n) ** (-1.0 / n)


@dataclass(frozen=True)
class StarShape:
    """A tube or blob with star-shaped axial sections (see the module docstring).

    ``z`` are knot positions (increasing), with per-knot centre (cx, cy), semi-axes (ax, ay) and superellipse
    exponent n. ``cap`` = (z centre, half height) multiplies the section by sqrt(1 - ((z - zc) / h)^2), which
    makes an ellipsoid-like blob. ``lobes`` are (k, amplitude, phase, twist per mm): the radius is multiplied by
    1 + sum amplitude * cos(k theta + phase + twist (z - z_ref)).
    """

    z: tuple[float, ...]
    cx: tuple[float, ...]
    cy: tuple[float, ...]
    ax: tuple[float, ...]
    ay: tuple[float, ...]
    n: tuple[float, ...] | None = None
    angle: float = 0.0
    cap: tuple[float, float] | None = None
    lobes: tuple[tuple[float, float, float, float], ...] = ()

    @staticmethod
    def blob(centre, semi_axes, half_height, *, slope=(0.0, 0.0), angle=0.0, lobes=(), n=2.0) -> StarShape:
        """An ellipsoid-like blob centred at ``centre`` whose centre line moves by ``slope`` mm per mm of z."""
        cx, cy, cz = (float(v) for v in centre)
        h = float(half_height)
        return StarShape(
            z=(cz - h, cz + h),
            cx=(cx - slope[0] * h, cx + slope[0] * h),
            cy=(cy - slope[1] * h, cy + slope[1] * h),
            ax=(float(semi_axes[0]),) * 2,
            ay=(float(semi_axes[1]),) * 2,
            n=(float(n),) * 2,
            angle=float(angle),
            cap=(cz, h),
            lobes=tuple(tuple(float(v) for v in lobe) for lobe in lobes),
        )

    @staticmethod
    def tube(knots, n=2.0, angle=0.0) -> StarShape:
        """A tube from knots (z, cx, cy, ax, ay) or (z, cx, cy, ax, ay, n), z increasing."""
        rows = [tuple(float(v) for v in k) for k in knots]
        cols = list(zip(*rows, strict=True))
        exps = cols[5] if len(cols) > 5 else (float(n),) * len(rows)
        return StarShape(z=cols[0], cx=cols[1], cy=cols[2], ax=cols[3], ay=cols[4], n=exps, angle=float(angle))

    # -- derived
    @property
    def z_range(self) -> tuple[float, float]:
        return self.z[0], self.z[-1]

    @cached_property
    def _knots(self) -> dict[str, np.ndarray]:
        names = ("z", "cx", "cy", "ax", "ay")
        out = {k: np.asarray(getattr(self, k), dtype=np.float64) for k in names}
        out["n"] = np.asarray(self.n if self.n is not None else (2.0,) * len(self.z), dtype=np.float64)
        return out

    def _arr(self, name: str) -> np.ndarray:
        return self._knots[name]

    def centre(self, z):
        zk = self._arr("z")
        return _interp(z, zk, self._arr("cx")), _interp(z, zk, self._arr("cy"))

    def _cap(self, z):
        if self.cap is None:
            return np.ones_like(np.asarray(z, dtype=np.float64))
        zc, h = self.cap
        return np.sqrt(np.clip(1.0 - ((np.asarray(z, dtype=np.float64) - zc) / h) ** 2, 0.0, None))

    def _lobe_factor(self, theta, z):
        if not self.lobes:
            return 1.0
        zref = self.cap[0] if self.cap is not None else self.z[0]
        f = 1.0
        for k, amp, phase, twist in self.lobes:
            f = f + amp * np.cos(k * theta + phase + twist * (z - zref))
        return f

    def radius(self, theta, z):
        zk = self._arr("z")
        ax, ay = _interp(z, zk, self._arr("ax")), _interp(z, zk, self._arr("ay"))
        n = 2.0 if self._round else _interp(z, zk, self._arr("n"))
        return self._cap(z) * _superellipse_radius(theta - self.angle, ax, ay, n) * self._lobe_factor(theta, z)

    @cached_property
    def _round(self) -> bool:
        return bool(np.all(self._arr("n") == 2.0))

    @cached_property
    def bbox(self) -> tuple[float, float, float, float, float, float]:
        ax, ay = self._arr("ax"), self._arr("ay")
        lobe = 1.0 + sum(abs(lb[1]) for lb in self.lobes)
        rb = np.sqrt(ax**2 + ay**2) * lobe
        cx, cy = self._arr("cx"), self._arr("cy")
        return (
            float(np.min(cx - rb)),
            float(np.max(cx + rb)),
            float(np.min(cy - rb)),
            float(np.max(cy + rb)),
            self.z[0],
            self.z[-1],
        )

    def evaluate(self, x, y, z) -> tuple[np.ndarray, np.ndarray]:
        """(inside, rho) at points; rho = distance to the section centre / R (0 at the centre, 1 on the boundary)."""
        z = np.asarray(z, dtype=np.float64)
        cx, cy = self.centre(z)
        dx, dy = x - cx, y - cy
        cap = self._cap(z)
        zin = (z >= self.z[0]) & (z <= self.z[-1]) & (cap > 0)
        if not self.lobes:
            zk = self._arr("z")
            ax, ay = _interp(z, zk, self._arr("ax")), _interp(z, zk, self._arr("ay"))
            if self.angle:
                ca, sa = math.cos(self.angle), math.sin(self.angle)
                dx, dy = dx * ca + dy * sa, -dx * sa + dy * ca
            with np.errstate(divide="ignore", invalid="ignore"):
                if self._round:
                    rho = np.sqrt((dx / ax) ** 2 + (dy / ay) ** 2) / cap
                else:  # superellipse: r / R(theta) = (|dx/ax|^n + |dy/ay|^n)^(1/n) by homogeneity
                    n = _interp(z, zk, self._arr("n"))
                    rho = (np.abs(dx / ax) ** n + np.abs(dy / ay) ** n) ** (1.0 / n) / cap
        else:
            theta = np.arctan2(dy, dx)
            with np.errstate(divide="ignore", invalid="ignore"):
                rho = np.hypot(dx, dy) / self.radius(theta, z)
        inside = zin & (rho < 1.0)
        return inside, rho

    def polygon(self, z: float, step_mm: float = 1.0) -> np.ndarray | None:
        """The section outline at z as (N, 2) points (x, y), N about perimeter / step_mm; None if absent."""
        if not (self.z[0] < z < self.z[-1]) or float(self._cap(z)) <= 0.0:
            return None
        dense = np.linspace(0.0, 2.0 * np.pi, 1441)
        r = self.radius(dense, z)
        if float(np.min(r)) < 0.3:
            return None
        cx, cy = (float(v) for v in self.centre(z))
        px, py = r * np.cos(dense), r * np.sin(dense)
        arc = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(px), np.diff(py)))])
        count = max(12, round(arc[-1] / step_mm))
        theta = np.interp(np.arange(count) * arc[-1] / count, arc, dense)
        rr = self.radius(theta, z)
        return np.column_stack([cx + rr * np.cos(theta), cy + rr * np.sin(theta)])

    def translated(self, dx: float, dy: float, dz: float) -> StarShape:
        return replace(
            self,
            z=tuple(v + dz for v in self.z),
            cx=tuple(v + dx for v in self.cx),
            cy=tuple(v + dy for v in self.cy),
            cap=None if self.cap is None else (self.cap[0] + dz, self.cap[1]),
        )

    def expanded(self, margin: float) -> StarShape:
        """The same shape with semi-axes and half height grown by margin (a simple isotropic-ish expansion)."""
        if self.cap is None:
            return replace(self, ax=tuple(v + margin for v in self.ax), ay=tuple(v + margin for v in self.ay))
        zc, h = self.cap
        zk = self._arr("z")
        new_z = (zc - h - margin, zc + h + margin)
        cx, cy = self.centre(np.array(new_z))
        return replace(
            self,
            z=new_z,
            cx=tuple(float(v) for v in cx),
            cy=tuple(float(v) for v in cy),
            ax=tuple(float(v) + margin for v in _interp(np.array(new_z), zk, self._arr("ax"))),
            ay=tuple(float(v) + margin for v in _interp(np.array(new_z), zk, self._arr("ay"))),
            cap=(zc, h + margin),
        )


@dataclass(frozen=True)
class ArchShape:
    """A horseshoe (mandible, hyoid): between an inner and an outer ellipse, within +-half_angle of anterior."""

    cx: float
    cy: float
    z0: float
    z1: float
    outer: tuple[float, float]
    inner: tuple[float, float]
    half_angle: float  # radians, measured from the anterior direction (-y)

    @property
    def z_range(self) -> tuple[float, float]:
        return self.z0, self.z1

    @property
    def bbox(self) -> tuple[float, float, float, float, float, float]:
        ox, oy = self.outer
        return (self.cx - ox, self.cx + ox, self.cy - oy, self.cy + oy, self.z0, self.z1)

    def evaluate(self, x, y, z) -> tuple[np.ndarray, np.ndarray]:
        z = np.asarray(z, dtype=np.float64)
        dx, dy = x - self.cx, y - self.cy
        phi = np.arctan2(dx, -dy)
        q_out = (dx / self.outer[0]) ** 2 + (dy / self.outer[1]) ** 2
        q_in = (dx / self.inner[0]) ** 2 + (dy / self.inner[1]) ** 2
        inside = (z >= self.z0) & (z <= self.z1) & (np.abs(phi) <= self.half_angle) & (q_out < 1) & (q_in >= 1)
        return inside, np.zeros(np.shape(inside))

    def _arc(self, axes: tuple[float, float], phis: np.ndarray) -> np.ndarray:
        ux, uy = np.sin(phis), -np.cos(phis)
        r = 1.0 / np.sqrt((ux / axes[0]) ** 2 + (uy / axes[1]) ** 2)
        return np.column_stack([self.cx + r * ux, self.cy + r * uy])

    def polygon(self, z: float, step_mm: float = 1.0) -> np.ndarray | None:
        if not (self.z0 < z < self.z1):
            return None
        parts = []
        for axes, reverse in ((self.outer, False), (self.inner, True)):
            dense = np.linspace(-self.half_angle, self.half_angle, 721)
            pts = self._arc(axes, dense)
            arc = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(pts, axis=0).T))])
            count = max(4, round(arc[-1] / step_mm))
            phis = np.interp(np.linspace(0.0, arc[-1], count + 1), arc, dense)
            parts.append(self._arc(axes, phis[::-1] if reverse else phis))
        return np.concatenate(parts)

    def translated(self, dx: float, dy: float, dz: float) -> ArchShape:
        return replace(self, cx=self.cx + dx, cy=self.cy + dy, z0=self.z0 + dz, z1=self.z1 + dz)


@dataclass(frozen=True)
class Banded:
    """A shape restricted to periodic z bands (intervertebral discs): inside when (z - phase) mod period < width."""

    base: StarShape
    period: float
    width: float
    phase: float
    z_max: float

    @property
    def z_range(self) -> tuple[float, float]:
        return self.base.z[0], min(self.base.z[-1], self.z_max)

    @property
    def bbox(self) -> tuple[float, float, float, float, float, float]:
        b = self.base.bbox
        return (*b[:5], min(b[5], self.z_max))

    def evaluate(self, x, y, z) -> tuple[np.ndarray, np.ndarray]:
        inside, rho = self.base.evaluate(x, y, z)
        z = np.asarray(z, dtype=np.float64)
        band = (np.mod(z - self.phase, self.period) < self.width) & (z <= self.z_max)
        return inside & band, rho

    def translated(self, dx: float, dy: float, dz: float) -> Banded:
        return replace(self, base=self.base.translated(dx, dy, dz), phase=self.phase + dz, z_max=self.z_max + dz)


# ----------------------------------------------------------------------------------------------- rasteriser


def evenodd_crossings(
    polygons_pix: list[np.ndarray], rows: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Scanline crossings of closed polygons (pixel coordinates: column, row) with the rows' pixel centres.

    An edge from y0 to y1 crosses row r when r lies in [min(y0, y1), max(y0, y1)): half-open, so a vertex on a
    row is counted once and horizontal edges never. Returns (row, x of the crossing, polygon index, edge index).
    """
    out_r, out_x, out_p, out_e = [], [], [], []
    for index, poly in enumerate(polygons_pix):
        x0, y0 = poly[:, 0], poly[:, 1]
        x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
        lo, hi = np.minimum(y0, y1), np.maximum(y0, y1)
        first = np.clip(np.ceil(lo), 0, rows)
        last = np.clip(np.ceil(hi), 0, rows)  # exclusive
        count = np.maximum(last - first, 0).astype(np.int64)
        if not count.any():
            continue
        edge = np.repeat(np.arange(x0.size), count)
        offset = np.arange(edge.size) - np.repeat(np.cumsum(count) - count, count)
        r = first[edge] + offset
        t = (r - y0[edge]) / (y1[edge] - y0[edge])
        out_r.append(r.astype(np.int64))
        out_x.append(x0[edge] + t * (x1[edge] - x0[edge]))
        out_p.append(np.full(edge.size, index))
        out_e.append(edge)
    if not out_r:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty.astype(np.float64), empty, empty
    return np.concatenate(out_r), np.concatenate(out_x), np.concatenate(out_p), np.concatenate(out_e)


def rasterize_evenodd(polygons_pix: list[np.ndarray], rows: int, cols: int) -> np.ndarray:
    """Pixels whose centre is inside the polygons under the even-odd rule (the polygons of a slice XOR).

    A pixel is inside when an odd number of crossings lie strictly left of its centre on its row.
    """
    mask = np.zeros((rows, cols), dtype=bool)
    r, x, _, _ = evenodd_crossings(polygons_pix, rows)
    if r.size == 0:
        return mask
    r0, r1 = int(r.min()), int(r.max()) + 1
    toggles = np.zeros((r1 - r0, cols + 1), dtype=np.int32)
    start = np.clip(np.floor(x).astype(np.int64) + 1, 0, cols)
    np.add.at(toggles, (r - r0, start), 1)
    mask[r0:r1] = (np.cumsum(toggles, axis=1)[:, :cols] & 1).astype(bool)
    return mask
