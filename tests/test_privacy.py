"""No identifier leaves the DICOM folder: the workflow, run for real on synthetic patients whose folders are named
after them (as PACS exports often are), including patients whose import is refused, writes the pseudonymous id only.

Every file the workflow writes (volumes, records, job logs, benchmarks) and hnseg's own lines on the terminal are
searched for the patients' names, IDs, birth dates, accession numbers, the tails of their series UIDs and their
folders' names. Snakemake's own console output and its .snakemake metadata echo the sheet's paths: outside this test.
`hnseg import` on the same folder writes what the workflow writes.
"""

import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from hnseg.synthetic import generate_patient
from hnseg.synthetic.messy import make_messy_patient

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "config" / "config.yaml"

# sheet id -> (generator id, messy flags, expected status of import_ct, import_pet, import_mri)
PATIENTS = {
    "HNP01": ("SYN001", [], ("ok", "ok", "ok")),
    "HNP02": ("SYN002", ["mr_missing", "pet_weight_missing"], ("ok", "failed", "failed")),
    "HNP03": ("SYN003", ["no_gtv_t", "utf8_charset"], ("failed", "ok", "ok")),
}
RECORDS = {"import_ct": "import.json", "import_pet": "pet.json", "import_mri": "mri.json"}


def identifiers(truth: Path, notes: dict) -> list[str]:
    phi = json.loads((truth / "phi.json").read_text())
    names = [phi["PatientName"], *phi["PatientName"].split("^")]
    if "utf8_charset" in notes:  # the variant writes another name into the headers
        names += [notes["utf8_charset"]["patient_name"], *notes["utf8_charset"]["patient_name"].split("^")]
    series_uids = list(phi["uids"]["series"].values())
    return [
        *names,
        phi["PatientID"],
        phi["PatientBirthDate"],
        *phi["AccessionNumbers"],
        *phi["uids"]["studies"].values(),
        *series_uids,
        *(uid[-8:] for uid in series_uids),  # the tails messages once carried
    ]


def export_folder(pacs: Path, truth: Path) -> Path:
    phi = json.loads((truth / "phi.json").read_text())
    family, given = phi["PatientName"].split("^")
    return pacs / f"{family.upper()}_{given}_{phi['PatientID']}_{phi['PatientBirthDate']}"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The import stages and the split of three patients, run by Snakemake; returns (workdir, console, patients)."""
    workdir = tmp_path_factory.mktemp("privacy")
    pacs, truth_root = workdir / "pacs", workdir / "truth"
    patients = {}
    for pid, (generator_id, flags, _) in PATIENTS.items():
        generated, truth = pacs / pid, truth_root / pid
        if flags:
            notes = make_messy_patient(generator_id, 2024, generated, truth, flags)["notes"]
        else:
            generate_patient(generator_id, 2024, generated, truth, size="demo")
            notes = {}
        folder = export_folder(pacs, truth)
        generated.rename(folder)
        patients[pid] = {"folder": folder, "truth": truth, "needles": [*identifiers(truth, notes), folder.name]}
    sheet = workdir / "patients.tsv"
    sheet.write_text("patient\tdicom_dir\n" + "".join(f"{p}\t{v['folder']}\n" for p, v in patients.items()))
    config = workdir / "privacy.yaml"
    config.write_text(f"patients: {sheet}\nsplit:\n  ratio: [1, 1, 1]\n")
    targets = ["results/split.tsv", *(f"results/imported/{p}/{r}" for p in PATIENTS for r in RECORDS.values())]
    cmd = [
        sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(workdir),
        "--workflow-profile", str(ROOT / "profiles" / "default"), "--cores", "2",
        *targets, "--configfile", str(PAPER), str(config),
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    assert result.returncode == 0, result.stdout + result.stderr  # refused patients are recorded, not failed jobs
    return workdir, result.stdout + result.stderr, patients


def written_by_the_workflow(workdir: Path) -> list[Path]:
    """Everything under the working directory except the inputs (DICOM, truth, sheet, config) and .snakemake."""
    inputs = {"pacs", "truth", "patients.tsv", "privacy.yaml", ".snakemake"}
    return [p for p in workdir.rglob("*") if p.is_file() and p.relative_to(workdir).parts[0] not in inputs]


def test_refused_patients_are_recorded_naming_the_pseudonymous_id(run):
    workdir, _, _ = run
    for pid, (_, _, statuses) in PATIENTS.items():
        for (stage, name), status in zip(RECORDS.items(), statuses, strict=True):
            record = json.loads((workdir / "results" / "imported" / pid / name).read_text())
            assert (record["patient"], record["stage"], record["status"]) == (pid, stage, status)
            if status == "failed":
                assert record["reason"].startswith(f"patient {pid}"), record["reason"]
                assert record["reason"] in (workdir / "logs" / stage / f"{pid}.log").read_text()


def test_no_identifier_in_any_output_log_or_message(run):
    workdir, console, patients = run
    files = written_by_the_workflow(workdir)
    assert {p.parts[-3] for p in files if p.suffix == ".log"} >= {"logs"}  # the job logs are searched
    assert len([p for p in files if p.name.endswith(".nii.gz")]) == 5 + 2 + 3  # the volumes too
    hnseg_lines = "\n".join(ln for ln in console.splitlines() if ln.startswith(("hnseg", "ERROR")))
    assert "HNP02" in hnseg_lines and "HNP03" in hnseg_lines  # the refusals reach the terminal
    for pid, patient in patients.items():
        for path in files:
            data = path.read_bytes()
            if path.name.endswith(".gz"):
                data = gzip.decompress(data)
            for needle in patient["needles"]:
                assert needle.encode() not in data, f"{pid}: {needle!r} in {path.relative_to(workdir)}"
        for needle in patient["needles"]:
            assert needle not in hnseg_lines, f"{pid}: {needle!r} in hnseg's terminal output"


def test_cli_import_writes_what_the_workflow_writes(run, tmp_path):
    workdir, _, patients = run
    for pid in ("HNP01", "HNP02"):
        out = tmp_path / pid
        result = subprocess.run(
            [sys.executable, "-m", "hnseg.cli", "import", str(patients[pid]["folder"]), str(out), "--patient", pid],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == (0 if pid == "HNP01" else 2), result.stderr
        ours = workdir / "results" / "imported" / pid
        for name in RECORDS.values():
            from_cli, from_workflow = json.loads((out / name).read_text()), json.loads((ours / name).read_text())
            paths = from_cli.pop("outputs", []), from_workflow.pop("outputs", [])
            assert [Path(p).name for p in paths[0]] == [Path(p).name for p in paths[1]]
            assert from_cli == from_workflow
        volumes = sorted(p.name for p in ours.glob("*.nii.gz"))
        assert sorted(p.name for p in out.glob("*.nii.gz")) == volumes and volumes
        for name in volumes:
            a, b = sitk.ReadImage(str(out / name)), sitk.ReadImage(str(ours / name))
            assert np.array_equal(sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(b))
            assert (a.GetOrigin(), a.GetSpacing(), a.GetDirection()) == (
                b.GetOrigin(),
                b.GetSpacing(),
                b.GetDirection(),
            )
            assert a.GetPixelID() == b.GetPixelID()
