"""A cohort of CT and RTSTRUCT only, as a new user may bring: the run ends with the methods that need no PET or MR
scored (LiteMedSAM on the CT-only fusion, nnU-Net on the CT alone: the volumes every training patient has), the
summary and the report, and says which methods did not run and why. The run (tests/conftest.py, `ct_only_run`) is
shared with tests/test_litemedsam_workflow.py."""

import csv
import json

from workflow_run import planned_jobs

CT_METHODS = {
    "litemedsam_zeroshot_ct",
    "litemedsam_finetuned_ct",
    "nnunet_nobox",
    "nnunet_box",
    "nnunet_nobox_boxmasked",
}


def test_the_methods_that_need_only_the_ct_run_and_the_others_say_why_not(ct_only_run):
    results = ct_only_run.workdir / "results"
    with open(results / "methods.tsv", newline="") as fh:
        plans = {row["method"]: row for row in csv.DictReader(fh, delimiter="\t")}
    runs = {m for m, row in plans.items() if row["runs"] == "yes"}
    assert runs == CT_METHODS
    assert {m: plans[m]["inputs"] for m in runs} == dict.fromkeys(runs, "ct")
    # no multimodal patient at all; the fine-tuned method also needs train and val patients
    assert plans["litemedsam_zeroshot_multimodal"]["reason"].startswith("no val/test patient")
    assert plans["litemedsam_finetuned_multimodal"]["reason"].startswith(
        "no val/test patient, no train patient, no val"
    )
    with open(results / "metrics" / "summary.csv", newline="") as fh:
        summarised = {row["method"] for row in csv.DictReader(fh)}
    assert summarised == runs
    assert "litemedsam_zeroshot_multimodal did not run: no val/test patient" in ct_only_run.stdout
    assert not (results / "slices" / "multimodal").exists()  # nothing of the multimodal branch was attempted
    # nnU-Net's datasets hold the CT channel (and the box channel), and say why
    for variant, channels in (("NoBox", {"0": "CT"}), ("Box", {"0": "CT", "1": "noNorm"})):
        dataset = json.loads(
            next((results / "nnunet" / "raw").glob(f"Dataset*_HNSeg{variant}/dataset.json")).read_text()
        )
        assert dataset["channel_names"] == channels, variant
        assert dataset["modalities"].endswith(": CT"), variant


def test_the_report_names_the_methods_that_did_not_run(ct_only_run):
    html = (ct_only_run.workdir / "results" / "report" / "index.html").read_text()
    assert "litemedsam_finetuned_multimodal" in html and "did not run" in html


def test_a_ct_only_run_has_nothing_left_to_do(ct_only_run):
    assert planned_jobs(ct_only_run.run("-n").stdout) == {}
