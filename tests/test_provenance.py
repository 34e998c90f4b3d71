"""Code triggers: the import closure of a workflow script, read from source."""

from pathlib import Path

from hnseg.provenance import code_of, import_closure, import_closure_hash, imported_modules

ROOT = Path(__file__).resolve().parents[1]


def test_closure_follows_imports_transitively_and_includes_parent_packages(tmp_path):
    script = tmp_path / "s.py"
    script.write_text("from hnseg.metrics import dsc\n")
    closure = import_closure(script)
    assert {"hnseg", "hnseg.metrics"} <= set(closure)
    # hnseg.metrics imports nothing that trains or registers
    assert not any(m.startswith(("hnseg.sam", "hnseg.registration", "hnseg.nnunet")) for m in closure)


def test_imports_inside_functions_and_submodule_imports_count(tmp_path):
    script = tmp_path / "s.py"
    script.write_text("def f():\n    from hnseg.sam import weights\n    return weights\n")
    closure = import_closure(script)
    assert "hnseg.sam.weights" in closure and "hnseg.sam" in closure


def test_hash_changes_with_a_module_in_the_closure_only(tmp_path, monkeypatch):
    from hnseg import provenance

    package = tmp_path / "hnseg"
    (package / "a").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "a" / "__init__.py").write_text("")
    (package / "a" / "used.py").write_text("from . import helper\nX = 1\n")
    (package / "a" / "helper.py").write_text("Y = 1\n")
    (package / "a" / "unused.py").write_text("Z = 1\n")
    monkeypatch.setattr(provenance, "PACKAGE_DIR", package)
    script = tmp_path / "s.py"
    script.write_text("from hnseg.a.used import X\n")

    def digest():
        provenance.import_closure.cache_clear()
        provenance._module_facts.cache_clear()
        provenance.import_closure_hash.cache_clear()
        return import_closure_hash(script)

    assert import_closure(script) == ("hnseg", "hnseg.a", "hnseg.a.helper", "hnseg.a.used")
    before = digest()
    (package / "a" / "unused.py").write_text("Z = 2\n")
    assert digest() == before
    (package / "a" / "helper.py").write_text("Y = 2\n")  # reached through a relative import
    assert digest() != before


def test_every_workflow_script_resolves():
    for script in sorted((ROOT / "workflow" / "scripts").glob("*.py")):
        assert "hnseg" in import_closure(script), script.name


def test_imports_are_found_in_every_kind_of_statement(tmp_path):
    script = tmp_path / "s.py"
    script.write_text(
        "try:\n    import hnseg.metrics\nexcept ImportError:\n    from hnseg import errors\nelse:\n    pass\n"
        "finally:\n    from hnseg import runlog\n"
        "with open(__file__):\n    import hnseg.config\n"
        "for _ in ():\n    pass\nelse:\n    import hnseg.cohort\n"
        "class Stage:\n    def run(self):\n        if True:\n            from hnseg.sam import weights\n"
        "match 1:\n    case 1:\n        import hnseg.fusion\n"
        "f = lambda: __import__('hnseg.split')\n"  # a call, not an import statement: not followed
    )
    assert imported_modules(script) == {
        "hnseg", "hnseg.metrics", "hnseg.errors", "hnseg.runlog", "hnseg.config", "hnseg.cohort", "hnseg.sam",
        "hnseg.sam.weights", "hnseg.fusion",
    }  # fmt: skip


CODE = '''"""A module."""

import math


def area(r):
    """The area."""
    # pi r squared
    return math.pi * r**2


class Shape:
    """A shape."""

    def scaled(self, k):
        """Scaled by k."""
        assert k > 0
        return k
'''


def test_code_of_ignores_comments_docstrings_and_layout_but_not_code(tmp_path):
    path = tmp_path / "m.py"

    def code(source):
        path.write_text(source)
        return code_of(path)

    original = code(CODE)
    tidied = (
        CODE.replace('"""A module."""', '"""A module, reworded."""\n# a new comment')
        .replace('"""The area."""', '"""The area of a disc\n\n    of radius r."""')
        .replace("    # pi r squared\n", "")
        .replace("return math.pi * r**2", "return (\n        math.pi * r ** 2  # formatted by hand\n    )")
        .replace('        """Scaled by k."""\n', "")
        + "\n\n\n"
    )
    assert code(tidied) == original
    for change in (
        ("return math.pi * r**2", "return math.pi * r**3"),
        ("assert k > 0", "assert k >= 0"),
        ("import math", "import math as m\nmath = m"),
        ('"""Scaled by k."""', '"""Scaled by k."""\n        k = abs(k)'),
        ("return k", "return 'k'"),
    ):
        assert code(CODE.replace(*change)) != original, change
    # a string that is not the first statement of its body is code, not a docstring
    assert code(CODE.replace("import math", "import math\n\n'a string'")) != original
