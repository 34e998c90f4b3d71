"""The `hnseg` command: its help lists every command; `hnseg import` imports one patient's folder under the id it
is given, never under the folder's name (a folder named after the patient, as PACS exports often are)."""

import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from hnseg.cli import build_parser
from hnseg.synthetic import generate_patient
from hnseg.synthetic.messy import make_messy_patient

HNSEG = [sys.executable, "-m", "hnseg.cli"]
COMMANDS = {"check-env", "synth", "split", "import", "cohort", "predict", "export"}


def hnseg(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*HNSEG, *map(str, args)], capture_output=True, text=True, timeout=300, check=False)


def identifiers(truth: Path, folder: Path) -> list[str]:
    """What must never appear in hnseg's outputs and messages: names, IDs, birth date, accessions, folder name."""
    phi = json.loads((truth / "phi.json").read_text())
    family, given = phi["PatientName"].split("^")
    return [
        phi["PatientName"],
        family,
        given,
        phi["PatientID"],
        phi["PatientBirthDate"],
        *phi["AccessionNumbers"],
        folder.name,
    ]


def named_after_the_patient(root: Path, truth: Path, generated: Path) -> Path:
    """Rename a generated DICOM folder the way a PACS export names it: NAME_GIVEN_MRN_BIRTHDATE."""
    phi = json.loads((truth / "phi.json").read_text())
    family, given = phi["PatientName"].split("^")
    folder = root / f"{family.upper()}_{given}_{phi['PatientID']}_{phi['PatientBirthDate']}"
    generated.rename(folder)
    return folder


def leaks(paths, needles) -> list[tuple[str, str]]:
    found = []
    for path in paths:
        data = path.read_bytes()
        if path.suffix == ".gz":
            data = gzip.decompress(data)
        found += [(path.name, n) for n in needles if n.encode() in data]
    return found


def test_help_lists_every_command_with_what_it_does():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert set(sub.choices) == COMMANDS
    result = hnseg("--help")
    assert result.returncode == 0
    for action in sub._choices_actions:
        # each command on a line of its own in the list, its help text beside it or on the next line
        assert f"    {action.dest}" in result.stdout and " ".join(action.help.split()) in " ".join(
            result.stdout.split()
        )
    assert "--patient" in hnseg("import", "--help").stdout
    assert "--aet" in hnseg("export", "send", "--help").stdout


@pytest.fixture(scope="module")
def pacs(tmp_path_factory):
    """Two patients in folders named after them: a clean one, and one whose export lacks the MR."""
    root = tmp_path_factory.mktemp("pacs")
    generate_patient("SYN001", 2024, root / "a", root / "truth_a", size="demo")
    clean = named_after_the_patient(root, root / "truth_a", root / "a")
    make_messy_patient("SYN002", 2024, root / "b", root / "truth_b", ["mr_missing"])
    no_mr = named_after_the_patient(root, root / "truth_b", root / "b")
    return root, clean, no_mr


def test_import_writes_the_volumes_and_records_under_the_given_id(pacs, tmp_path):
    root, folder, _ = pacs
    out = tmp_path / "HN042"
    result = hnseg("import", folder, out, "--patient", "HN042")
    assert result.returncode == 0, result.stderr
    for name in ("ct", "labels", "pet", "t1", "t2"):
        assert (out / f"{name}.nii.gz").is_file()
    for name, stage in (("import.json", "import_ct"), ("pet.json", "import_pet"), ("mri.json", "import_mri")):
        record = json.loads((out / name).read_text())
        assert (record["patient"], record["stage"], record["status"]) == ("HN042", stage, "ok")
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "labels.nii.gz")))
    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(root / "truth_a" / "labels.nii.gz")))
    assert np.array_equal(labels, truth)
    assert "HN042: import_ct ok" in result.stdout and "3 of 3 import stages ok" in result.stdout
    needles = identifiers(root / "truth_a", folder)
    assert leaks([p for p in out.rglob("*") if p.is_file()], needles) == []
    assert not [n for n in needles if n in result.stdout + result.stderr]


def test_import_records_a_refused_stage_and_goes_on(pacs, tmp_path):
    root, _, folder = pacs
    out = tmp_path / "HN043"
    result = hnseg("import", folder, out, "--patient", "HN043")
    assert result.returncode == 2
    mri = json.loads((out / "mri.json").read_text())
    assert mri["status"] == "failed" and mri["reason"].startswith("patient HN043: no T1w and no T2w MR series")
    assert json.loads((out / "import.json").read_text())["status"] == "ok"
    assert json.loads((out / "pet.json").read_text())["status"] == "ok"
    assert not (out / "t1.nii.gz").exists()
    assert "HN043: import_mri failed" in result.stdout and "2 of 3 import stages ok" in result.stdout
    assert "patient HN043, import_mri failed: patient HN043: no T1w" in result.stderr  # the terminal, not a log
    assert "no T1w and no T2w" in (out / "logs" / "import_mri.log").read_text()
    needles = identifiers(root / "truth_b", folder)
    assert leaks([p for p in out.rglob("*") if p.is_file()], needles) == []
    assert not [n for n in needles if n in result.stdout + result.stderr]


def test_import_refuses_a_bad_id_or_folder_without_naming_the_folder(pacs, tmp_path):
    root, folder, _ = pacs
    result = hnseg("import", folder, tmp_path / "out", "--patient", "Tremblay Jean")
    assert result.returncode == 2 and "is not a valid pseudonymous id" in result.stderr
    assert not (tmp_path / "out").exists()
    missing = root / "DOE_JOHN_MRN0000001_19500101"
    result = hnseg("import", missing, tmp_path / "out", "--patient", "HN044")
    assert result.returncode == 2 and "patient HN044: the DICOM folder given does not exist" in result.stderr
    assert "DOE" not in result.stderr
    result = hnseg("import", folder, tmp_path / "out")  # the id is never derived from the folder
    assert result.returncode == 2 and "--patient" in result.stderr
