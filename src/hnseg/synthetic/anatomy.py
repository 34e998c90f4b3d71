"""Analytic head-and-neck anatomy: tissue classes as implicit shapes in CT patient space.

The builder works in an anatomical frame (x left, y posterior, z superior, mm; z = 0 near the C2 body,
y = 0 near the posterior pharyngeal wall) and translates everything into CT patient coordinates at the end.
Shapes are painted in a fixed order, later shapes winning; the result at any set of physical points is a tissue
code per point plus rho, the normalised radius inside the shape that painted the point (0 centre, 1 boundary),
which the imaging models use for the tumour's cooler core and similar gradients.

Dimensions follow typical adult anatomy (head about 150 x 190 mm, neck about 115 x 120 mm, cervical vertebrae
every 18 mm); they are plausible, not anatomically exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from hnseg.synthetic.geometry import ArchShape, Banded, StarShape

# Tissue codes (uint8). NODE + k is node k (k = 0, 1, 2, ...).
OUTSIDE, FAT, MUSCLE, BRAIN, BONE, MARROW, DISC, CSF, CORD = 0, 1, 2, 3, 4, 5, 6, 7, 8
PAROTID, SUBMANDIBULAR, TONSIL, ARTERY, VEIN, AIR, TUMOUR, NODE = 9, 10, 11, 12, 13, 14, 15, 16
MAX_NODES = 3
N_CODES = NODE + MAX_NODES
TISSUE_NAMES = {
    OUTSIDE: "outside",
    FAT: "fat",
    MUSCLE: "muscle",
    BRAIN: "brain",
    BONE: "cortical bone",
    MARROW: "bone marrow",
    DISC: "intervertebral disc",
    CSF: "CSF",
    CORD: "spinal cord",
    PAROTID: "parotid",
    SUBMANDIBULAR: "submandibular gland",
    TONSIL: "tonsil",
    ARTERY: "artery",
    VEIN: "vein",
    AIR: "air (airway, sinus)",
    TUMOUR: "GTV-T",
    **{NODE + k: f"GTV-N node {k + 1}" for k in range(MAX_NODES)},
}

Shape = StarShape | ArchShape | Banded


@dataclass(frozen=True)
class Tumour:
    site: str  # tonsil_left, tonsil_right, base_of_tongue
    shape: StarShape
    diameter_mm: float


@dataclass(frozen=True)
class Node:
    level: str  # II or III
    side: str  # left or right
    shape: StarShape
    diameter_mm: float


@dataclass
class Anatomy:
    """Painted layers (tissue code, shape) plus the named shapes that ROIs and landmarks use (CT space)."""

    layers: list[tuple[int, Shape]]
    named: dict[str, Shape | list[Shape]]
    landmarks: dict[str, tuple[float, float, float]]
    tumour: Tumour | None = None
    nodes: list[Node] = field(default_factory=list)
    params: dict = field(default_factory=dict)

    # -- sampling
    def sample_points(self, points: np.ndarray, chunk: int = 400_000) -> tuple[np.ndarray, np.ndarray]:
        """Tissue code (uint8) and rho (float32) at arbitrary points (N, 3)."""
        labels = np.zeros(points.shape[0], dtype=np.uint8)
        rho = np.ones(points.shape[0], dtype=np.float32)
        for start in range(0, points.shape[0], chunk):  # an empty array skips the loop
            x, y, z = (points[start : start + chunk, i] for i in range(3))
            lo = (x.min(), y.min(), z.min())
            hi = (x.max(), y.max(), z.max())
            out_l, out_r = labels[start : start + chunk], rho[start : start + chunk]
            for code, shape in self.layers:
                b = shape.bbox
                if b[1] < lo[0] or b[0] > hi[0] or b[3] < lo[1] or b[2] > hi[1] or b[5] < lo[2] or b[4] > hi[2]:
                    continue
                if (
                    b[0] <= lo[0]
                    and b[1] >= hi[0]
                    and b[2] <= lo[1]
                    and b[3] >= hi[1]
                    and b[4] <= lo[2]
                    and b[5] >= hi[2]
                ):
                    inside, r = shape.evaluate(x, y, z)
                    out_l[inside] = code
                    out_r[inside] = r[inside]
                    continue
                sel = np.flatnonzero((x >= b[0]) & (x <= b[1]) & (y >= b[2]) & (y <= b[3]) & (z >= b[4]) & (z <= b[5]))
                if sel.size == 0:
                    continue
                inside, r = shape.evaluate(x[sel], y[sel], z[sel])
                hit = sel[inside]
                out_l[hit] = code
                out_r[hit] = r[inside]
        return labels, rho

    def sample_slice(self, xs: np.ndarray, ys: np.ndarray, z: float) -> tuple[np.ndarray, np.ndarray]:
        """Tissue code and rho on an axial grid (rows = ys, columns = xs) at height z (fast path)."""
        labels = np.zeros((ys.size, xs.size), dtype=np.uint8)
        rho = np.ones((ys.size, xs.size), dtype=np.float32)
        for code, shape in self.layers:
            b = shape.bbox
            if not (b[4] <= z <= b[5]):
                continue
            i0, i1 = np.searchsorted(xs, b[0]), np.searchsorted(xs, b[1], side="right")
            j0, j1 = np.searchsorted(ys, b[2]), np.searchsorted(ys, b[3], side="right")
            if i0 >= i1 or j0 >= j1:
                continue
            inside, r = shape.evaluate(xs[None, i0:i1], ys[j0:j1, None], z)
            inside = np.broadcast_to(inside, (j1 - j0, i1 - i0))
            sub_l, sub_r = labels[j0:j1, i0:i1], rho[j0:j1, i0:i1]
            sub_l[inside] = code
            sub_r[inside] = np.broadcast_to(r, inside.shape)[inside]
        return labels, rho


# ----------------------------------------------------------------------------------------------- builder


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _shape_points(shape: StarShape, n_levels: int = 7, step: float = 2.0) -> np.ndarray:
    """Boundary and interior sample points of a blob (for placement checks)."""
    z0, z1 = shape.z_range
    pts = []
    for z in np.linspace(z0, z1, n_levels + 2)[1:-1]:
        poly = shape.polygon(float(z), step)
        if poly is None:
            continue
        cx, cy = (float(v) for v in shape.centre(z))
        for f in (1.0, 0.6, 0.2):
            ring = np.column_stack([cx + f * (poly[:, 0] - cx), cy + f * (poly[:, 1] - cy)])
            pts.append(np.column_stack([ring, np.full(len(ring), z)]))
    return np.concatenate(pts)


def build_anatomy(rng: np.random.Generator, weight_kg: float, offset: tuple[float, float, float]) -> Anatomy:
    """Draw one patient's anatomy; ``offset`` moves the anatomical frame into CT patient coordinates."""
    s = _u(rng, 0.93, 1.07)  # in-plane body size
    fat_neck = 4.0 + (min(max(weight_kg, 50.0), 110.0) - 50.0) / 60.0 * 8.0

    body_knots = [
        (-300, 15, 200, 100, 3.2),
        (-150, 15, 190, 92, 3.0),
        (-120, 10, 120, 75, 2.4),
        (-95, 2, 62, 60, 2.0),
        (-60, 0, 56, 58, 2.0),
        (-45, -3, 58, 63, 2.0),
        (-25, -8, 62, 72, 2.0),
        (0, -10, 68, 86, 2.0),
        (25, -6, 75, 100, 2.0),
        (60, 0, 78, 98, 2.0),
        (110, 2, 72, 92, 2.0),
        (150, 5, 50, 65, 2.0),
        (172, 5, 12, 14, 2.0),
    ]
    fat_knots = {-300: fat_neck + 4, -120: fat_neck + 3, -95: fat_neck, -30: fat_neck, 0: 6.0, 25: 4.0, 172: 3.0}

    def fat_at(z: float) -> float:
        zs = sorted(fat_knots)
        return float(np.interp(z, zs, [fat_knots[k] for k in zs]))

    body = StarShape.tube([(z, 0.0, cy * s, ax * s, ay * s, n) for z, cy, ax, ay, n in body_knots])
    core = StarShape.tube(
        [(z, 0.0, cy * s, ax * s - fat_at(z), ay * s - fat_at(z), n) for z, cy, ax, ay, n in body_knots]
    )
    skull = StarShape.blob((0.0, 2.0 * s, 75.0), (66.0 * s, 86.0 * s), 62.0)
    brain = StarShape.blob((0.0, 2.0 * s, 77.0), (60.0 * s, 80.0 * s), 55.0)
    sinuses = [StarShape.blob((side * 24.0 * s, -44.0 * s, 18.0), (12.0, 14.0), 13.0) for side in (1, -1)]

    # airway, with patient variation in calibre and position
    w = _u(rng, 0.85, 1.15)
    dy_air = _u(rng, -2.0, 2.0)
    air_knots = [
        (-300, -28, 9, 8),
        (-95, -22, 8, 7.5),
        (-78, -20, 7, 5),
        (-62, -16, 9, 8),
        (-50, -10, 11, 8),
        (-35, -5, 13, 8),
        (-10, -4, 13, 8),
        (8, -6, 12, 7),
        (22, -10, 15, 9),
        (32, -12, 12, 6),
    ]
    airway = StarShape.tube([(z, 0.0, cy + dy_air, ax * w, ay * w) for z, cy, ax, ay in air_knots])

    # spine
    vb_knots = [(-300, 30, 15, 13), (-110, 22, 12, 10), (-90, 18, 9, 8), (12, 18, 8.5, 7.5)]
    vert_body = StarShape.tube([(z, 0.0, cy, ax, ay) for z, cy, ax, ay in vb_knots])
    vert_marrow = StarShape.tube([(z, 0.0, cy, ax - 1.5, ay - 1.5) for z, cy, ax, ay in vb_knots])
    discs = Banded(vert_body, period=18.0, width=5.0, phase=-15.0, z_max=-9.0)
    dens = StarShape.tube([(12, 0, 14, 4.5, 4.5), (22, 0, 14, 4.0, 4.0)])
    post_arch = StarShape.tube([(-300, 0, 38, 14, 11), (14, 0, 36, 13, 10)])
    spinous = StarShape.tube([(-300, 0, 54, 3.5, 9), (8, 0, 50, 3, 8)])
    canal = StarShape.tube([(-300, 0, 36, 9, 7), (26, 0, 34, 8, 6.5)])
    cord = StarShape.tube([(-300, 0, 36, 5.5, 4.5), (26, 0, 34, 5, 4)])

    # vessels, parotids, glands, tonsils, mandible, hyoid (both sides)
    vessels, glands, tonsils, rami, rami_marrow = [], [], [], [], []
    parotids: dict[str, StarShape] = {}
    for side, name in ((1, "left"), (-1, "right")):
        vessels.append(
            (
                ARTERY,
                StarShape.tube(
                    [
                        (z, side * x * s, cy, r, r)
                        for z, x, cy, r in ((-300, 30, 10, 4.5), (-60, 24, 8, 4), (-20, 22, 12, 3.5), (25, 20, 16, 3))
                    ]
                ),
            )
        )
        vessels.append(
            (
                VEIN,
                StarShape.tube(
                    [
                        (z, side * x * s, cy, ax, ay)
                        for z, x, cy, ax, ay in ((-300, 40, 12, 7, 6), (-60, 34, 14, 6, 5), (25, 30, 20, 5, 4.5))
                    ]
                ),
            )
        )
        parotids[name] = StarShape.blob(
            (side * _u(rng, 51, 55) * s, _u(rng, 20, 24), _u(rng, 2, 6)),
            (_u(rng, 8.5, 10.5), _u(rng, 14, 17)),
            _u(rng, 18, 22),
            angle=side * 0.3,
            lobes=((3, 0.05, _u(rng, 0, 6.28), 0.02),),
        )
        glands.append(StarShape.blob((side * 30 * s, -28 * s, -42), (9.0, 11.0), 10.0))
        air_ax = float(airway.radius(0.0, -12.0))
        tonsils.append(
            StarShape.blob((side * (air_ax + 3.5), -4 + dy_air, -12), (6.0, 9.0), 14.0, lobes=((2, 0.08, 0.5, 0.0),))
        )
        rami.append(StarShape.tube([(-22, side * 44 * s, 4, 4, 11), (20, side * 45 * s, 14, 3.5, 10)]))
        rami_marrow.append(StarShape.tube([(-22, side * 44 * s, 4, 2, 8), (20, side * 45 * s, 14, 1.6, 7)]))
    mandible = ArchShape(0.0, -4 * s, -46.0, -22.0, (45 * s, 50 * s), (37 * s, 42 * s), math.radians(100))
    mandible_marrow = ArchShape(0.0, -4 * s, -44.5, -23.5, (42.5 * s, 47.5 * s), (39.5 * s, 44.5 * s), math.radians(97))
    hyoid = ArchShape(0.0, -18.0, -52.0, -47.0, (17.0, 14.0), (13.0, 10.0), math.radians(75))

    layers: list[tuple[int, Shape]] = [
        (FAT, body),
        (MUSCLE, core),
        (BONE, skull),
        (BRAIN, brain),
        *((AIR, sh) for sh in sinuses),
        (PAROTID, parotids["left"]),
        (PAROTID, parotids["right"]),
        *((SUBMANDIBULAR, g) for g in glands),
        (BONE, post_arch),
        (BONE, spinous),
        (BONE, vert_body),
        (MARROW, vert_marrow),
        (DISC, discs),
        (BONE, dens),
        (CSF, canal),
        (CORD, cord),
        *vessels,
        (BONE, mandible),
        (MARROW, mandible_marrow),
        *((BONE, r) for r in rami),
        *((MARROW, r) for r in rami_marrow),
        (BONE, hyoid),
        *((TONSIL, t) for t in tonsils),
        (AIR, airway),
    ]
    landmarks = {
        "dens_tip": (0.0, 14.0, 22.0),
        "c2_body": (0.0, 18.0, 2.0),
        "c4_body": (0.0, 18.0, -39.5),
        "c6_body": (0.0, 18.0, -75.5),
        "mandible_tip": (0.0, -4 * s - 50 * s, -46.0),
        "hyoid_body": (0.0, -18.0 - 15.5, -49.5),
        "parotid_left": tuple(
            float(v) for v in (*parotids["left"].centre(parotids["left"].cap[0]), parotids["left"].cap[0])
        ),
        "parotid_right": tuple(
            float(v) for v in (*parotids["right"].centre(parotids["right"].cap[0]), parotids["right"].cap[0])
        ),
        "foramen_magnum": (0.0, 34.0, 24.0),
    }
    anatomy = Anatomy(
        layers=layers,
        named={
            "body": body,
            "cord": cord,
            "parotid_left": parotids["left"],
            "parotid_right": parotids["right"],
            "mandible": [mandible, *rami],
            "airway": airway,
        },
        landmarks=landmarks,
        params={"body_scale": s, "fat_neck_mm": fat_neck, "airway_scale": w},
    )
    _place_tumour(anatomy, rng)
    _place_nodes(anatomy, rng)
    return _translate(anatomy, offset)


_TUMOUR_ALLOWED = (MUSCLE, TONSIL, AIR)


def _feret_mm(shape: StarShape) -> float:
    """Longest axial diameter (maximum Feret diameter over the shape's sections)."""
    best = 0.0
    z0, z1 = shape.z_range
    for z in np.linspace(z0, z1, 15)[1:-1]:
        poly = shape.polygon(float(z), 1.0)
        if poly is not None:
            d = np.hypot(poly[:, None, 0] - poly[None, :, 0], poly[:, None, 1] - poly[None, :, 1])
            best = max(best, float(d.max()))
    return best


def _blob_of_diameter(diameter: float, centre_of, params: dict) -> StarShape:
    """A blob whose semi-axes and half height scale with r0, sized so that its Feret diameter is ``diameter``."""

    def make(r0: float) -> StarShape:
        return StarShape.blob(
            centre_of(r0),
            (r0 * params["ax"], r0 * params["ay"]),
            r0 * params["h"],
            slope=params.get("slope", (0.0, 0.0)),
            angle=params["angle"],
            lobes=params["lobes"],
        )

    unit = _feret_mm(make(10.0)) / 10.0
    return make(diameter / unit)


def _tumour_centre(r0: float, where: dict) -> tuple[float, float, float]:
    """Centre of a tumour of scale r0: lateral to the lumen (tonsil) or anterior to it (base of tongue), sunk
    into the wall by depth * r0 so that the tumour bulges into the airway."""
    acx, acy, aax, aay, zc = where["lumen"]
    if where["side"] == 0.0:
        return (acx + where["shift"][0], acy - aay - where["depth"] * r0, zc)
    return (acx + where["side"] * (aax + where["depth"] * r0), acy + where["shift"][1], zc)


def _place_tumour(anatomy: Anatomy, rng: np.random.Generator) -> None:
    """GTV-T of 20-40 mm (longest axial diameter) at the tonsil or base of tongue, bulging into the airway."""
    airway = anatomy.named["airway"]
    site = str(rng.choice(["tonsil_left", "tonsil_right", "base_of_tongue"], p=[0.3, 0.3, 0.4]))
    wanted = _u(rng, 20.0, 40.0)
    for attempt in range(400):
        diameter = max(wanted * (1.0 - attempt / 300.0), 20.0) if attempt < 300 else 20.0 - (attempt - 300) / 20.0
        zc = _u(rng, -24, -8) if site != "base_of_tongue" else _u(rng, -34, -20)
        acx, acy = (float(v) for v in airway.centre(zc))
        aax, aay = float(airway.radius(0.0, zc)), float(airway.radius(math.pi / 2, zc))
        depth, shift = 0.55 * _u(rng, 0.9, 1.1), (_u(rng, -5, 5), _u(rng, -5, 1))
        where = {
            "side": {"tonsil_left": 1.0, "tonsil_right": -1.0}.get(site, 0.0),
            "lumen": (acx, acy, aax, aay, zc),
            "depth": depth,
            "shift": shift,
        }
        params = {
            "ax": _u(rng, 0.85, 1.1),
            "ay": _u(rng, 0.85, 1.1),
            "h": _u(rng, 0.8, 1.25),
            "slope": (_u(rng, -0.15, 0.15), _u(rng, -0.15, 0.15)),
            "angle": _u(rng, 0, math.pi),
            "lobes": tuple(
                (k, _u(rng, 0.03, 0.08), _u(rng, 0, 2 * math.pi), _u(rng, -0.06, 0.06)) for k in (2, 3, 4, 5)
            ),
        }
        shape = _blob_of_diameter(diameter, lambda r0, w=where: _tumour_centre(r0, w), params)
        pts = _shape_points(shape)
        codes, _ = anatomy.sample_points(pts)
        if np.all(np.isin(codes, _TUMOUR_ALLOWED)) and np.mean(codes == AIR) > 0.02:
            break
    else:  # pragma: no cover - the shrinking diameter always ends in an accepted tumour
        raise RuntimeError("could not place the synthetic primary tumour")
    anatomy.tumour = Tumour(site=site, shape=shape, diameter_mm=_feret_mm(shape))
    anatomy.layers.append((TUMOUR, shape))
    centre = shape.centre(shape.cap[0])
    anatomy.landmarks["tumour_centre"] = (float(centre[0]), float(centre[1]), float(shape.cap[0]))


def _place_nodes(anatomy: Anatomy, rng: np.random.Generator) -> None:
    """0-3 GTV-N of 8-25 mm at levels II/III, mostly ipsilateral, at least 4 mm from the GTV-T and each other."""
    n_wanted = int(rng.choice(4, p=[0.25, 0.35, 0.25, 0.15]))
    site = anatomy.tumour.site
    avoid: list[StarShape] = [anatomy.tumour.shape.expanded(4.0)]
    s = anatomy.params["body_scale"]
    for _ in range(n_wanted):
        if site == "base_of_tongue":
            side = float(rng.choice([-1.0, 1.0]))
        else:
            ipsi = 1.0 if site == "tonsil_left" else -1.0
            side = ipsi if rng.uniform() < 0.75 else -ipsi
        wanted = _u(rng, 8.0, 25.0)
        for attempt in range(300):
            level = "II" if rng.uniform() < 0.65 else "III"
            zc = _u(rng, -44, -22) if level == "II" else _u(rng, -74, -52)
            centre = (side * _u(rng, 32, 52) * s, _u(rng, -12, 16), zc)
            params = {
                "ax": _u(rng, 0.85, 1.05),
                "ay": _u(rng, 0.85, 1.05),
                "h": _u(rng, 0.9, 1.4),
                "angle": _u(rng, 0, math.pi),
                "lobes": (
                    (2, _u(rng, 0.02, 0.05), _u(rng, 0, 6.28), 0.0),
                    (3, _u(rng, 0.02, 0.05), _u(rng, 0, 6.28), 0.0),
                ),
            }
            diameter = max(8.0, wanted * (1.0 - attempt / 200.0))
            shape = _blob_of_diameter(diameter, lambda _r0, c=centre: c, params)
            pts = _shape_points(shape)
            codes, _ = anatomy.sample_points(pts)
            clear = not any(np.any(a.evaluate(pts[:, 0], pts[:, 1], pts[:, 2])[0]) for a in avoid)
            if clear and np.all(np.isin(codes, (MUSCLE, FAT))) and np.mean(codes == MUSCLE) >= 0.7:
                break
        else:
            continue  # no room found for this node: the patient gets fewer nodes
        node = Node(level=level, side="left" if side > 0 else "right", shape=shape, diameter_mm=_feret_mm(shape))
        anatomy.layers.append((NODE + len(anatomy.nodes), shape))
        anatomy.nodes.append(node)
        anatomy.landmarks[f"node_{len(anatomy.nodes)}_centre"] = centre
        avoid.append(shape.expanded(4.0))


def _translate(anatomy: Anatomy, offset: tuple[float, float, float]) -> Anatomy:
    dx, dy, dz = offset

    def move(shape):
        return shape.translated(dx, dy, dz)

    anatomy.layers = [(code, move(shape)) for code, shape in anatomy.layers]
    anatomy.named = {
        key: [move(v) for v in value] if isinstance(value, list) else move(value)
        for key, value in anatomy.named.items()
    }
    anatomy.landmarks = {key: (p[0] + dx, p[1] + dy, p[2] + dz) for key, p in anatomy.landmarks.items()}
    if anatomy.tumour is not None:
        t = anatomy.tumour
        anatomy.tumour = Tumour(t.site, move(t.shape), t.diameter_mm)
    anatomy.nodes = [Node(n.level, n.side, move(n.shape), n.diameter_mm) for n in anatomy.nodes]
    anatomy.params["offset_mm"] = [dx, dy, dz]
    return anatomy
