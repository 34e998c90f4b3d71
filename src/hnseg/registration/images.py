"""Volumes of the registration stages: reading them with checks that name the patient, their grids as JSON (for the
records, and exactly enough to rebuild a grid from), writing them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from hnseg.errors import InputError
from hnseg.registration.resample import physical_bounds


def read_volume(patient: str, path: str | Path, what: str) -> sitk.Image:
    """A 3D scalar volume; InputError naming the patient, the file and the fix when it is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"patient {patient}: {what} {path} does not exist; run the import of this patient first")
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise InputError(
            f"patient {patient}: cannot read the {what} {path} ({str(exc).strip().splitlines()[-1]}); rerun its import"
        ) from None
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            f"patient {patient}: the {what} {path} is not a 3D scalar volume (dimension {image.GetDimension()}, "
            f"{image.GetNumberOfComponentsPerPixel()} components); rerun its import"
        )
    return image


def same_grid(a: sitk.Image, b: sitk.Image, tol_mm: float = 1e-3) -> bool:
    return (
        a.GetSize() == b.GetSize()
        and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=1e-5)
        and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=tol_mm)
        and np.allclose(a.GetDirection(), b.GetDirection(), atol=1e-6)
    )


def grid_json(image: sitk.Image) -> dict[str, Any]:
    """The grid for a reader: size, spacing and origin, rounded."""
    return {
        "size_xyz": list(image.GetSize()),
        "spacing_xyz_mm": [round(v, 6) for v in image.GetSpacing()],
        "origin_xyz_mm": [round(v, 4) for v in image.GetOrigin()],
    }


def exact_grid_json(image: sitk.Image) -> dict[str, Any]:
    """The grid with every digit and the direction, so that :func:`grid_from_json` rebuilds it exactly."""
    return {
        "size_xyz": list(image.GetSize()),
        "spacing_xyz_mm": list(image.GetSpacing()),
        "origin_xyz_mm": list(image.GetOrigin()),
        "direction": list(image.GetDirection()),
    }


def grid_from_json(grid: dict[str, Any]) -> sitk.Image:
    """An empty float32 image on the grid that :func:`exact_grid_json` described."""
    image = sitk.Image([int(v) for v in grid["size_xyz"]], sitk.sitkFloat32)
    image.SetSpacing([float(v) for v in grid["spacing_xyz_mm"]])
    image.SetOrigin([float(v) for v in grid["origin_xyz_mm"]])
    image.SetDirection([float(v) for v in grid["direction"]])
    return image


def extent(image: sitk.Image) -> str:
    """Where the image lies in scanner coordinates, for messages: "x a..b, y a..b, z a..b mm"."""
    lo, hi = physical_bounds(image)
    return ", ".join(f"{ax} {a:.0f}..{b:.0f}" for ax, a, b in zip("xyz", lo, hi, strict=True)) + " mm"


def write_volume(image: sitk.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), useCompression=True)
