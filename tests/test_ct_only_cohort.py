"""A cohort of CT and RTSTRUCT only, as a new user may bring: the run ends with the CT-only methods scored, the
summary and the report, and says which methods did not run and why."""

import csv
import shutil

import pydicom
import pytest
from workflow_run import DEMO, PAPER, SEED, SETTINGS, CompleteRun, planned_jobs

from hnseg.synthetic import generate_patient

pytestmark = pytest.mark.slow  # a workflow run of three patients

SPLIT = {"CT01": "train", "CT02": "val", "CT03": "test"}


def keep_ct_and_rtstruct(dicom_dir):
    for series in sorted({path.parent for path in dicom_dir.rglob("*") if path.is_file()}):
        modality = pydicom.dcmread(next(p for p in series.iterdir() if p.is_file()), stop_before_pixels=True).Modality
        if modality not in ("CT", "RTSTRUCT"):
            shutil.rmtree(series)


@pytest.fixture(scope="module")
def ct_only_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("ct_only")
    rows = ["patient\tdicom_dir"]
    for patient in SPLIT:
        dicom = workdir / "cohort" / "dicom" / patient
        generate_patient(patient, SEED, dicom, workdir / "cohort" / "truth" / patient)
        keep_ct_and_rtstruct(dicom)
        rows.append(f"{patient}\t{dicom}")
    (workdir / "patients.tsv").write_text("\n".join(rows) + "\n")
    (workdir / "split.tsv").write_text("patient\tsubset\n" + "".join(f"{p}\t{s}\n" for p, s in SPLIT.items()))
    config = workdir / "ct_only.yaml"
    config.write_text(
        f"patients: {workdir / 'patients.tsv'}\nsynthetic:\n  enabled: false\n"
        f"split:\n  frozen: {workdir / 'split.tsv'}\n{SETTINGS}"
    )
    run = CompleteRun(workdir, [str(PAPER), str(DEMO), str(config)])
    result = run.run()
    run.stdout, run.stderr = result.stdout, result.stderr
    return run


def test_the_ct_only_methods_run_and_the_others_say_why_not(ct_only_run):
    results = ct_only_run.workdir / "results"
    with open(results / "methods.tsv", newline="") as fh:
        plans = {row["method"]: row for row in csv.DictReader(fh, delimiter="\t")}
    runs = {m for m, row in plans.items() if row["runs"] == "yes"}
    assert runs == {"litemedsam_zeroshot_ct", "litemedsam_finetuned_ct"}
    for method in set(plans) - runs:  # no multimodal or nnunet patient at all; the trained ones also need train/val
        assert plans[method]["reason"].startswith("no val/test patient"), method
        if method != "litemedsam_zeroshot_multimodal":
            assert "no train patient, no val patient" in plans[method]["reason"], method
    with open(results / "metrics" / "summary.csv", newline="") as fh:
        summarised = {row["method"] for row in csv.DictReader(fh)}
    assert summarised == runs
    assert "nnunet_box did not run: no val/test patient" in ct_only_run.stdout
    # nothing of the multimodal branch or nnU-Net was attempted
    assert not (results / "slices" / "multimodal").exists() and not (results / "nnunet").exists()


def test_the_report_names_the_methods_that_did_not_run(ct_only_run):
    html = (ct_only_run.workdir / "results" / "report" / "index.html").read_text()
    assert "nnunet_box" in html and "did not run" in html


def test_a_ct_only_run_has_nothing_left_to_do(ct_only_run):
    assert planned_jobs(ct_only_run.run("-n").stdout) == {}
