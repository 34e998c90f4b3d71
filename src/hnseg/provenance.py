"""What a result was made with: code fingerprints for rule params, versions for the report.

Snakemake reruns a job when its params change, but not when a Python module that its script imports changes.
Each rule therefore carries `code_hash("hnseg.<stage>")` in its params: editing a stage's modules reruns that
stage (and what follows), and nothing else.
"""

from __future__ import annotations

import hashlib
import importlib.util
from functools import cache
from pathlib import Path


@cache
def code_hash(*modules: str) -> str:
    """Short SHA-256 over the source of the given modules or packages (every .py file below a package)."""
    digest = hashlib.sha256()
    for name in sorted(modules):
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise ModuleNotFoundError(f"cannot fingerprint {name!r}: module not found")
        origin = Path(spec.origin)
        files = sorted(origin.parent.rglob("*.py")) if origin.name == "__init__.py" else [origin]
        for path in files:
            digest.update(str(path.relative_to(origin.parent)).encode() + b"\0")
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]
