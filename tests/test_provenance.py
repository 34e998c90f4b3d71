"""Code triggers: the import closure of a workflow script, read from source."""

from pathlib import Path

from hnseg.provenance import import_closure, import_closure_hash

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
        provenance._module_imports.cache_clear()
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
