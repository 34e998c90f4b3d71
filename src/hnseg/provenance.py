"""What a result was made with: the code a rule runs, fingerprinted for its params.

Snakemake reruns a job when its script changes, but not when a Python module that the script imports changes.
Each rule therefore carries `import_closure_hash(script)` in its params: a digest of the script and of every
hnseg module it imports, followed transitively through their own imports (importing `hnseg.a.b` also runs the
package files `hnseg/__init__.py` and `hnseg/a/__init__.py`, so they belong to the closure too). Editing a module
reruns exactly the rules whose scripts reach it, and nothing else: the registration QC picture never retrains a
model, inference-only code never retrains LiteMedSAM.

The closure is found by reading source (the `ast` of every file), never by importing it: a Snakefile parse must
stay cheap, and importing would pull in torch or ANTs. Imports inside functions count like any other.
"""

from __future__ import annotations

import ast
import hashlib
from functools import cache
from pathlib import Path

PACKAGE = "hnseg"
PACKAGE_DIR = Path(__file__).resolve().parent


def module_file(name: str) -> Path | None:
    """The source file of an hnseg module or package (`hnseg.a.b`), None when there is no such module."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    base = PACKAGE_DIR.joinpath(*parts[1:])
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _package_of(name: str, path: Path) -> str:
    """The package a module's relative imports resolve against."""
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def imported_modules(path: Path, name: str | None = None) -> set[str]:
    """hnseg modules that the file at `path` imports directly (with their parent packages).

    `name` is the file's own module name (for relative imports); None for a script outside the package.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if name is None:
                    raise ValueError(f"{path}: a relative import outside the hnseg package")
                anchor = _package_of(name, path).split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            # `from hnseg.a import b` imports the submodule hnseg.a.b when b is one
            found.update(f"{base}.{alias.name}" for alias in node.names if module_file(f"{base}.{alias.name}"))
    modules: set[str] = set()
    for module in found:
        parts = module.split(".")
        if parts[0] != PACKAGE:
            continue
        modules.update(".".join(parts[:i]) for i in range(1, len(parts) + 1) if module_file(".".join(parts[:i])))
    return modules


@cache
def _module_imports(module: str) -> frozenset[str]:
    """imported_modules of a package module, parsed once per process (many scripts share modules)."""
    return frozenset(imported_modules(module_file(module), module))


@cache
def import_closure(script: str | Path) -> tuple[str, ...]:
    """Every hnseg module that running `script` imports, transitively, sorted."""
    seen: set[str] = set()
    todo = sorted(imported_modules(Path(script)))
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        todo.extend(_module_imports(module) - seen)
    return tuple(sorted(seen))


@cache
def import_closure_hash(script: str | Path) -> str:
    """Short SHA-256 over `script` and the source of every hnseg module in its import closure."""
    script = Path(script)
    digest = hashlib.sha256(script.read_bytes())
    for module in import_closure(script):
        digest.update(b"\0" + module.encode() + b"\0")
        digest.update(module_file(module).read_bytes())
    return digest.hexdigest()[:16]
