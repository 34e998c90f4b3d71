"""Config and patients-sheet validation: the shipped configs are valid; bad ones name the key and the fix. Also the
project's own test configuration: the README's test command (`make test`, which CI runs) runs every test."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hnseg.config import deep_merge, load_config, read_patients_sheet, validate_config
from hnseg.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "config" / "config.yaml"
DEMO = ROOT / "config" / "demo.yaml"


def paper_config():
    return yaml.safe_load(PAPER.read_text())


def test_shipped_configs_are_valid_and_hold_the_papers_protocol():
    paper = load_config(PAPER)
    assert paper["split"]["ratio"] == [470, 94, 97]
    assert paper["fusion"]["ct_window"] == {"level": 40, "width": 400}
    assert paper["fusion"]["pet_suv_range"] == [0.0, 6.0]
    assert paper["fusion"]["mri_percentiles"] == [0.0, 99.5]
    assert paper["fusion"]["model_size"] == 256
    assert paper["prompts"]["margin_mm"] == [0.0, 20.0]
    ft = paper["litemedsam"]["finetune"]
    assert (ft["max_epochs"], ft["batch_size"], ft["lr"], ft["weight_decay"]) == (20, 8, 3e-4, 0.01)
    assert ft["plateau"] == {"factor": 0.9, "patience": 5}
    assert paper["nnunet"]["epochs"] == 1000 and paper["nnunet"]["configuration"] == "3d_fullres"
    demo = load_config(PAPER, DEMO)
    assert demo["synthetic"]["enabled"] is True
    # layering keeps the paper's numbers the demo does not override
    assert demo["fusion"] == paper["fusion"]
    assert demo["litemedsam"]["finetune"]["lr"] == 3e-4


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (("fusion", "kinds"), ["ct", "petonly"], r"fusion\.kinds\[1\].*'petonly'.*allowed values: 'ct', 'multimodal'"),
        (("synthetic", "size"), "huge", r"synthetic\.size.*'huge'.*'demo', 'tiny', 'realistic'"),
        (("split", "ratio"), [470, 94], r"split\.ratio"),
        (("fusion", "ct_window", "width"), 0, r"fusion\.ct_window\.width"),
        (("fusion", "ct_windw"), {}, r"'ct_windw'.*known keys here: ct_window"),
        # LiteMedSAM's encoder takes 256 x 256 only: any other model size would fail later, inside a job
        (("fusion", "model_size"), 512, r"fusion\.model_size.*512 is not allowed; allowed values: 256"),
        (("fusion", "model_size"), 1024, r"fusion\.model_size.*1024 is not allowed; allowed values: 256"),
        (("prompts", "target_unit"), "blob", r"prompts\.target_unit.*'blob'.*'instance_3d', 'object_2d'"),
        (("import", "contour_plane_tolerance_mm"), -0.5, r"import\.contour_plane_tolerance_mm"),
    ],
)
def test_bad_config_names_the_key(path, value, expected):
    config = paper_config()
    node = config
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(ConfigError, match=expected):
        validate_config(config)


def test_deep_merge_layers_nested_keys():
    merged = deep_merge({"a": {"b": 1, "c": 2}, "d": 3}, {"a": {"c": 5}})
    assert merged == {"a": {"b": 1, "c": 5}, "d": 3}


def test_missing_sheet_says_how_to_make_one(tmp_path):
    with pytest.raises(ConfigError, match=r"no patients sheet.*config/README.md.*config/demo.yaml"):
        read_patients_sheet(tmp_path / "patients.tsv")


def test_sheet_rows_are_validated(tmp_path):
    sheet = tmp_path / "patients.tsv"
    sheet.write_text("patient\tdicom_dir\tweight_kg\nHN001\t/data/a\t72.5\nHN002\t/data/b\t\n")
    rows = read_patients_sheet(sheet)
    assert rows[0]["weight_kg"] == 72.5 and rows[1]["weight_kg"] is None
    sheet.write_text("patient\tdicom_dir\nHN 001\t/data/a\n")
    with pytest.raises(ConfigError, match=r"line 2, column 'patient'"):
        read_patients_sheet(sheet)
    sheet.write_text("patient\tdicom_dir\nHN001\t/a\nHN001\t/b\n")
    with pytest.raises(ConfigError, match="repeats line 2"):
        read_patients_sheet(sheet)
    sheet.write_text("patient\tdicom_dir\tweight_kg\nHN001\t/a\t-3\n")
    with pytest.raises(ConfigError, match="weight_kg"):
        read_patients_sheet(sheet)
    sheet.write_text("patient\tdicom_dir\nHN001\t/a\n")
    with pytest.raises(ConfigError, match=r"stratify_by.*'centre'"):
        read_patients_sheet(sheet, stratify_by="centre")


def test_import_defaults_are_the_shipped_configs():
    # `hnseg import` without --config uses ImportOptions(); it must import exactly as the workflow does
    from hnseg.dicom.importer import ImportOptions, options_from_params

    assert options_from_params(load_config(PAPER)["import"]) == ImportOptions()
    assert options_from_params(load_config(PAPER, DEMO)["import"]) == ImportOptions()


def test_the_readme_test_command_runs_the_slow_tests_and_test_quick_does_not():
    # `make test` runs plain `pytest`: the pyproject options must not deselect the tests marked slow
    collected = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/test_messy_import.py",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    assert "deselected" not in collected
    assert "test_each_flag_gives_the_same_bytes_twice[" in collected  # a test marked slow
    make = {
        target: subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True, check=True).stdout
        for target in ("test", "test-quick")
    }
    pytest_lines = {
        t: [ln.split("python -m ")[-1] for ln in out.splitlines() if "pytest" in ln] for t, out in make.items()
    }
    # every test, on two workers (--durations only lists the slowest at the end), and the quick subset
    assert pytest_lines == {
        "test": ["pytest -n 2 --dist loadfile --no-loadscope-reorder --durations=25"],
        "test-quick": ['pytest -m "not slow"'],
    }
