"""Stage fuse_slices: windowing, MRI blend, RGB composition, the LiteMedSAM 256 frame, slice shards.

Volumes are numpy arrays in SimpleITK order (z, y, x), all on the CT grid. Every number (window, SUV range, MRI
percentiles, model size) is an argument: the rule passes them from the config as params.

The model frame (reference/litemedsam.md 1.3): the longest side of a slice is resized to `size` with area
interpolation (output pixel = area-weighted mean of the input pixels it covers; exact k x k means for an integer
downscale, pixel copies for an integer upscale), then zero padded at the bottom and right to size x size.
`FrameGeometry` maps boxes and masks between the CT slice and that frame.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from hnseg.errors import InputError

# Fusion kinds are data (config fusion.kinds): each names the source of its R, G and B channels. Sources: ct (the CT
# window), pet (the SUV range), t1, t2 (each MR by its own percentiles) and mri (the mean of T1w and T2w).
SOURCES = ("ct", "pet", "t1", "t2", "mri")
CHANNELS = ("r", "g", "b")
PAPER_FUSIONS: dict[str, dict[str, str]] = {
    "ct": {"r": "ct", "g": "ct", "b": "ct"},
    "multimodal": {"r": "ct", "g": "pet", "b": "mri"},
}
FUSIONS = tuple(PAPER_FUSIONS)
VOLUMES_OF_SOURCE = {"ct": ("ct",), "pet": ("pet",), "t1": ("t1",), "t2": ("t2",), "mri": ("t1", "t2")}
VOLUME_ORDER = ("ct", "pet", "t1", "t2")


def fusion_recipes(kinds) -> dict[str, dict[str, str]]:
    """{fusion name: {r, g, b: source}} from config fusion.kinds: a mapping of name to sources (a name mapped to
    null is dropped), or (the older form) a list of the paper's fusion names. InputError naming the fusion and the
    channel for anything else."""
    if isinstance(kinds, list | tuple):
        unknown = [k for k in kinds if k not in PAPER_FUSIONS]
        if unknown:
            raise InputError(
                f"fusion.kinds lists {unknown}, which are not the paper's fusions ({', '.join(PAPER_FUSIONS)}); define "
                "a new fusion by its sources, e.g. fusion.kinds: {ctpet: {r: ct, g: pet, b: ct}}"
            )
        return {k: dict(PAPER_FUSIONS[k]) for k in kinds}
    recipes = {}
    for name, recipe in dict(kinds).items():
        if recipe is None:  # dropped by a config file layered over the one that defines it
            continue
        if not isinstance(recipe, dict) or set(recipe) != set(CHANNELS):
            raise InputError(f"fusion.kinds.{name}: give the source of each channel r, g and b, got {recipe!r}")
        bad = {c: v for c, v in recipe.items() if v not in SOURCES}
        if bad:
            raise InputError(f"fusion.kinds.{name}: unknown source(s) {bad}; sources: {', '.join(SOURCES)}")
        recipes[str(name)] = {c: recipe[c] for c in CHANNELS}
    if not recipes:
        raise InputError("fusion.kinds defines no fusion (every one is null); keep at least one, e.g. ct")
    return recipes


def fusion_volumes(recipe: dict[str, str]) -> tuple[str, ...]:
    """The volumes (ct, pet, t1, t2, in that order) a fusion reads on the CT grid."""
    needed = {v for source in recipe.values() for v in VOLUMES_OF_SOURCE[source]}
    return tuple(v for v in VOLUME_ORDER if v in needed)


def describe_recipe(recipe: dict[str, str]) -> str:
    """E.g. 'R = CT, G = PET, B = MRI'."""
    return ", ".join(f"{c.upper()} = {recipe[c].upper()}" for c in CHANNELS)


# --- windowing ---------------------------------------------------------------------------------------------------


def to_uint8(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Clip to [low, high] and map linearly to 0..255 (rounded)."""
    if not high > low:
        raise InputError(f"window [{low}, {high}] is empty; the upper bound must exceed the lower")
    scaled = (np.clip(values.astype(np.float64), low, high) - low) * 255.0 / (high - low)
    return np.rint(scaled).astype(np.uint8)


def window_ct(hu: np.ndarray, level: float, width: float) -> np.ndarray:
    """CT window: [level - width/2, level + width/2] HU -> 0..255."""
    return to_uint8(hu, level - width / 2.0, level + width / 2.0)


def window_pet(suv: np.ndarray, suv_range: tuple[float, float]) -> np.ndarray:
    """SUVbw clipped to suv_range -> 0..255."""
    return to_uint8(suv, suv_range[0], suv_range[1])


def window_mri(volume: np.ndarray, percentiles: tuple[float, float], valid: np.ndarray | None = None) -> np.ndarray:
    """MR clipped at its own percentiles -> 0..255.

    Percentiles are taken over `valid` voxels (default: voxels above 0, i.e. inside the MR field of view once
    resampled to the CT grid; outside it the warped image is 0 and stays 0).
    """
    if valid is None:
        valid = volume > 0
    if not np.any(valid):
        raise InputError("the MR volume has no voxel inside its field of view on the CT grid (all zero)")
    low, high = np.percentile(volume[valid], percentiles)
    if not high > low:
        high = low + 1.0
    out = to_uint8(volume, low, high)
    out[~valid] = 0
    return out


def blend_mri(t1: np.ndarray, t2: np.ndarray, percentiles: tuple[float, float]) -> np.ndarray:
    """T1w and T2w each windowed to 0..255 by their own percentiles, then averaged pixel-wise."""
    a = window_mri(t1, percentiles).astype(np.uint16)
    b = window_mri(t2, percentiles).astype(np.uint16)
    return ((a + b + 1) // 2).astype(np.uint8)


def compose(kind: str, ct8: np.ndarray, pet8: np.ndarray | None = None, mri8: np.ndarray | None = None) -> np.ndarray:
    """RGB volume (..., 3) uint8: `ct` = CT in R, G and B; `multimodal` = R CT, G PET, B MRI blend."""
    if kind == "ct":
        return np.stack([ct8, ct8, ct8], axis=-1)
    if kind == "multimodal":
        if pet8 is None or mri8 is None:
            raise InputError("the multimodal fusion needs PET and MRI on the CT grid")
        if not ct8.shape == pet8.shape == mri8.shape:
            raise InputError(f"CT {ct8.shape}, PET {pet8.shape} and MRI {mri8.shape} are not on one grid")
        return np.stack([ct8, pet8, mri8], axis=-1)
    raise InputError(f"unknown fusion {kind!r}; allowed: {', '.join(FUSIONS)}")


# --- the model frame ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FrameGeometry:
    """How a CT slice of `height` x `width` pixels sits in the square model frame of `size` pixels."""

    height: int
    width: int
    size: int = 256

    @property
    def scale(self) -> float:
        return self.size / max(self.height, self.width)

    @property
    def new_height(self) -> int:
        return int(self.height * self.scale + 0.5)

    @property
    def new_width(self) -> int:
        return int(self.width * self.scale + 0.5)

    def box_to_frame(self, box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        """Inclusive CT-pixel box (x0, y0, x1, y1) -> the inclusive frame box covering the same pixels."""
        x0, y0, x1, y1 = box
        sx, sy = self.new_width / self.width, self.new_height / self.height
        return (
            int(np.floor(x0 * sx)),
            int(np.floor(y0 * sy)),
            min(int(np.ceil((x1 + 1) * sx)) - 1, self.new_width - 1),
            min(int(np.ceil((y1 + 1) * sy)) - 1, self.new_height - 1),
        )

    def box_from_frame(self, box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        """Inclusive frame box -> the inclusive CT-pixel box of the CT pixels whose centres it contains
        (at least the pixel under its centre). Frame -> CT -> frame is exact to one pixel."""
        x0, y0, x1, y1 = box
        sx, sy = self.new_width / self.width, self.new_height / self.height

        def side(lo: int, hi: int, s: float, n: int) -> tuple[int, int]:
            first = max(int(np.ceil(lo / s - 0.5)), 0)
            last = min(int(np.floor((hi + 1) / s - 0.5)), n - 1)
            if first > last:  # a frame box narrower than a CT pixel: the pixel under its centre
                first = last = min(int(((lo + hi + 1) / 2) / s), n - 1)
            return first, last

        cx0, cx1 = side(x0, x1, sx, self.width)
        cy0, cy1 = side(y0, y1, sy, self.height)
        return cx0, cy0, cx1, cy1

    def mask_from_frame(self, mask: np.ndarray) -> np.ndarray:
        """A (size, size) frame mask -> (height, width), cropping the padding, nearest neighbour."""
        crop = mask[: self.new_height, : self.new_width]
        rows = np.minimum(
            ((np.arange(self.height) + 0.5) * self.new_height / self.height).astype(int), self.new_height - 1
        )
        cols = np.minimum(((np.arange(self.width) + 0.5) * self.new_width / self.width).astype(int), self.new_width - 1)
        return crop[np.ix_(rows, cols)]

    def mask_to_frame(self, mask: np.ndarray) -> np.ndarray:
        """A (height, width) label or mask -> (size, size), nearest neighbour, zero padded."""
        rows = np.minimum(
            ((np.arange(self.new_height) + 0.5) * self.height / self.new_height).astype(int), self.height - 1
        )
        cols = np.minimum(((np.arange(self.new_width) + 0.5) * self.width / self.new_width).astype(int), self.width - 1)
        out = np.zeros((self.size, self.size), dtype=mask.dtype)
        out[: self.new_height, : self.new_width] = mask[np.ix_(rows, cols)]
        return out


def area_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) matrix: output pixel i is the mean of [i*s, (i+1)*s) of the input, s = n_in / n_out."""
    s = n_in / n_out
    lo = np.arange(n_out)[:, None] * s
    hi = lo + s
    j = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(hi, j + 1) - np.maximum(lo, j), 0.0, None)
    return overlap / s


def to_model_frame(image: np.ndarray, size: int = 256) -> tuple[np.ndarray, FrameGeometry]:
    """A (H, W) or (H, W, C) uint8 slice -> (size, size[, C]) uint8 in the model frame, and its geometry."""
    geometry = FrameGeometry(image.shape[0], image.shape[1], size)
    rows = area_weights(geometry.height, geometry.new_height)
    cols = area_weights(geometry.width, geometry.new_width)
    data = image.astype(np.float64)
    resized = np.tensordot(rows, data, axes=(1, 0))  # (new_h, W[, C])
    resized = np.moveaxis(np.tensordot(cols, resized, axes=(1, 1)), 0, 1)  # (new_h, new_w[, C])
    out = np.zeros((size, size, *image.shape[2:]), dtype=np.uint8)
    out[: geometry.new_height, : geometry.new_width] = np.clip(np.rint(resized), 0, 255).astype(np.uint8)
    return out, geometry


# --- shards ------------------------------------------------------------------------------------------------------


def fuse_volume(
    kind: str | dict[str, str],
    ct_hu: np.ndarray | None,
    ct_window: dict,
    *,
    pet_suv: np.ndarray | None = None,
    suv_range: tuple[float, float] = (0.0, 6.0),
    t1: np.ndarray | None = None,
    t2: np.ndarray | None = None,
    mri_percentiles: tuple[float, float] = (0.0, 99.5),
) -> np.ndarray:
    """The RGB volume (z, y, x, 3) of one fusion, on the CT grid: `kind` is one of the paper's fusion names or a
    recipe {r, g, b: source} (see :func:`fusion_recipes`). Each source is windowed once, however many channels use it."""
    recipe = PAPER_FUSIONS.get(kind) if isinstance(kind, str) else kind
    if recipe is None:
        raise InputError(
            f"unknown fusion {kind!r}; give its recipe {{r, g, b: source}} (sources: {', '.join(SOURCES)})"
        )
    name = kind if isinstance(kind, str) else describe_recipe(recipe)
    given = {"ct": ct_hu, "pet": pet_suv, "t1": t1, "t2": t2}
    missing = [v for v in fusion_volumes(recipe) if given[v] is None]
    if missing:
        names = {"ct": "CT", "pet": "PET", "t1": "T1w", "t2": "T2w"}
        raise InputError(f"the {name} fusion needs {', '.join(names[v] for v in missing)} on the CT grid")
    windowed: dict[str, np.ndarray] = {}

    def channel(source: str) -> np.ndarray:
        if source not in windowed:
            if source == "ct":
                windowed[source] = window_ct(ct_hu, ct_window["level"], ct_window["width"])
            elif source == "pet":
                windowed[source] = window_pet(pet_suv, suv_range)
            elif source == "mri":
                windowed[source] = blend_mri(t1, t2, mri_percentiles)
            else:
                windowed[source] = window_mri(given[source], mri_percentiles)
        return windowed[source]

    planes = [channel(recipe[c]) for c in CHANNELS]
    if len({p.shape for p in planes}) != 1:
        raise InputError(f"the {name} fusion's sources are not on one grid: {[p.shape for p in planes]}")
    return np.stack(planes, axis=-1)


def fuse_volume_files(
    kind: str | dict[str, str],
    files: Mapping[str, str | Path],
    ct_window: dict,
    *,
    suv_range: tuple[float, float],
    mri_percentiles: tuple[float, float],
) -> np.ndarray:
    """:func:`fuse_volume` on volumes read from image files on the CT grid (the rules' inputs): `files` maps the
    volumes the fusion reads (ct, pet, t1, t2; VOLUME_ORDER) to their paths, and may leave the others out. The
    windows come from config (fusion.ct_window, pet_suv_range, mri_percentiles), with no defaults here."""
    import SimpleITK as sitk

    unknown = sorted(set(files) - set(VOLUME_ORDER))
    if unknown:
        raise InputError(f"fusion inputs {unknown} are not volumes; give {', '.join(VOLUME_ORDER)}")
    volumes = {name: sitk.GetArrayFromImage(sitk.ReadImage(str(path))) for name, path in files.items()}
    return fuse_volume(
        kind,
        volumes.get("ct"),
        ct_window,
        pet_suv=volumes.get("pet"),
        suv_range=suv_range,
        t1=volumes.get("t1"),
        t2=volumes.get("t2"),
        mri_percentiles=mri_percentiles,
    )


def write_shard(
    path: str | Path,
    rgb: np.ndarray,
    instances: np.ndarray,
    slices: list[int],
    *,
    spacing_xyz: tuple[float, float, float],
    size: int = 256,
    meta: dict | None = None,
) -> dict:
    """One patient's slices with targets, in the model frame: images (N, size, size, 3) uint8, instances
    (N, size, size) uint16, slice_index (N,), and the geometry to map back (stored as JSON in `geometry`)."""
    n = len(slices)
    images = np.zeros((n, size, size, 3), dtype=np.uint8)
    frame_instances = np.zeros((n, size, size), dtype=np.uint16)
    geometry = FrameGeometry(rgb.shape[1], rgb.shape[2], size)
    for i, z in enumerate(slices):
        images[i], geometry = to_model_frame(rgb[z], size)
        frame_instances[i] = geometry.mask_to_frame(instances[z].astype(np.uint16))
    info = {
        "frame": asdict(geometry),
        "new_height": geometry.new_height,
        "new_width": geometry.new_width,
        "ct_shape_zyx": list(instances.shape),
        "spacing_xyz_mm": list(spacing_xyz),
        **(meta or {}),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path,
        images=images,
        instances=frame_instances,
        slice_index=np.asarray(slices, dtype=np.int32),
        geometry=np.array(json.dumps(info)),
    )
    return info


def read_shard(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """(images, instances, slice_index, geometry info) of a shard written by write_shard."""
    with np.load(path) as data:
        return data["images"], data["instances"], data["slice_index"], json.loads(str(data["geometry"]))


def plot_shard_preview(shard_path: str | Path, prompts: list, out_png: str | Path, n_slices: int = 4) -> None:
    """A figure of up to n_slices shard slices (most targets, then most target area), each with its perturbed
    boxes (solid) and tight boxes (dotted) mapped into the model frame, GTV-T in red and GTV-N in yellow."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    images, instances, slice_index, info = read_shard(shard_path)
    frame = FrameGeometry(info["frame"]["height"], info["frame"]["width"], info["frame"]["size"])
    by_slice: dict[int, list] = {}
    for p in prompts:
        by_slice.setdefault(p.slice, []).append(p)
    # the slices with the most targets, then the most target area: the informative ones
    order = sorted(
        range(len(slice_index)),
        key=lambda i: (-len(by_slice.get(int(slice_index[i]), [])), -int(np.count_nonzero(instances[i])), i),
    )
    chosen = sorted(order[:n_slices])
    fig, axes = plt.subplots(1, max(len(chosen), 1), figsize=(3.2 * max(len(chosen), 1), 3.4), squeeze=False)
    colours = {"GTV-T": "red", "GTV-N": "yellow"}
    for ax, i in zip(axes[0], chosen, strict=False):
        z = int(slice_index[i])
        ax.imshow(images[i])
        ax.contour(instances[i] > 0, levels=[0.5], colors="cyan", linewidths=0.6)
        for p in by_slice.get(z, []):
            for box, style in ((p.box, "-"), (p.tight, ":")):
                x0, y0, x1, y1 = frame.box_to_frame(box)
                ax.add_patch(
                    Rectangle(
                        (x0 - 0.5, y0 - 0.5),
                        x1 - x0 + 1,
                        y1 - y0 + 1,
                        fill=False,
                        lw=1.0,
                        ls=style,
                        ec=colours[p.target],
                    )
                )
        ax.set_title(f"slice {z}: {len(by_slice.get(z, []))} target(s)", fontsize=9)
        ax.set_axis_off()
    if not chosen:
        axes[0][0].text(0.5, 0.5, "no slice with a target", ha="center", va="center")
        axes[0][0].set_axis_off()
    fig.suptitle(f"{info.get('patient', '')} {info.get('fusion', '')}: boxes solid, tight boxes dotted", fontsize=10)
    fig.tight_layout()
    Path(out_png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
