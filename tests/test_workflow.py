"""The Snakemake workflow, run for real: parse-time checks, and the shared complete run (conftest.complete_run) of six
patients of which one has no MR and one a broken CT."""

import csv
import json

import pytest
from workflow_run import DEMO, PAPER, planned_jobs, snakemake

from hnseg.metrics import read_scores


def test_demo_dry_run_plans_the_cohort_and_the_split(tmp_path):
    result = snakemake(tmp_path, "-n", "--configfile", str(PAPER), str(DEMO))
    jobs = planned_jobs(result.stdout)
    assert jobs["synthesize_patient"] == 12
    assert jobs["synthesize_cohort"] == 1 and jobs["split_cohort"] == 1
    # from nothing, the plan ends at the cohort checkpoint: import and registration of everyone
    assert jobs["import_ct"] == jobs["register_mri"] == 12 and jobs["cohort"] == 1


def test_bad_config_stops_the_run_naming_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("fusion:\n  kinds: [ct, petonly]\n")
    result = snakemake(tmp_path, "-n", "--configfile", str(PAPER), str(DEMO), str(bad), check=False)
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert "fusion.kinds[1]" in out and "'petonly'" in out and "'multimodal'" in out


def test_missing_sheet_says_how_to_make_one(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"patients: {tmp_path / 'nowhere.tsv'}\n")
    result = snakemake(tmp_path, "-n", "--configfile", str(PAPER), str(cfg), check=False)
    assert result.returncode != 0
    assert "no patients sheet" in result.stdout + result.stderr
    assert "config/demo.yaml" in result.stdout + result.stderr


def test_user_sheet_is_split_and_recorded(tmp_path):
    sheet = tmp_path / "patients.tsv"
    ids = [f"HN{i:03d}" for i in range(30)]
    sheet.write_text("patient\tdicom_dir\n" + "".join(f"{p}\t/data/{p}\n" for p in ids))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"patients: {sheet}\n")
    snakemake(tmp_path, "results/split.tsv", "--configfile", str(PAPER), str(cfg))
    rows = (tmp_path / "results" / "split.tsv").read_text().splitlines()
    assert rows[0] == "patient\tsubset\tassigned_by" and len(rows) == 31
    subsets = [r.split("\t")[1] for r in rows[1:]]
    assert (subsets.count("train"), subsets.count("val"), subsets.count("test")) == (21, 4, 5)


def read_tsv(path):
    with open(path, newline="") as fh:
        return {row[next(iter(row))]: row for row in csv.DictReader(fh, delimiter="\t")}


def test_bad_patients_are_left_out_of_what_needs_them_and_the_run_ends(complete_run):
    results = complete_run.workdir / "results"
    cohort = read_tsv(results / "cohort.tsv")
    assert {p: (r["subset"], r["branches"]) for p, r in cohort.items()} == {
        "HN01": ("train", "ct,multimodal,nnunet"),
        "HN02": ("train", "ct,multimodal,nnunet"),
        "HN03": ("val", "ct,multimodal,nnunet"),
        "HN04": ("test", "ct,multimodal,nnunet"),
        "HN05": ("test", "ct"),
        "HN06": ("train", ""),
    }
    assert cohort["HN05"]["reason"].startswith("no multimodal, nnunet: import_mri failed: patient HN05: no T1w")
    assert "import_ct failed: patient HN06" in cohort["HN06"]["reason"] and "missing slice" in cohort["HN06"]["reason"]
    methods = read_tsv(results / "methods.tsv")
    assert all(m["runs"] == "yes" for m in methods.values())
    # every method is scored on its branch's evaluated patients: the patient without MR by the CT-only methods only
    for method in methods:
        patients = {r["patient"] for r in read_scores(results / "metrics" / f"{method}.csv")}
        assert patients == ({"HN03", "HN04", "HN05"} if method.endswith("_ct") else {"HN03", "HN04"}), method
    assert (results / "metrics" / "summary.csv").is_file()
    # the end of the run says who was left out, per subset
    assert "test: 1 of 2 patients left out of a branch" in complete_run.stdout
    assert "train: 1 of 3 patients left out of a branch" in complete_run.stdout


def test_stage_records_say_what_happened(complete_run):
    imported = complete_run.workdir / "results" / "imported"
    record = json.loads((imported / "HN06" / "import.json").read_text())
    assert record["status"] == "failed" and not (imported / "HN06" / "ct.nii.gz").exists()
    assert json.loads((imported / "HN05" / "mri.json").read_text())["status"] == "failed"
    registered = json.loads((complete_run.workdir / "results" / "registered" / "HN05" / "mri.json").read_text())
    assert registered["status"] == "not_run" and "import_mri" in registered["reason"]
    log = (complete_run.workdir / "logs" / "import_ct" / "HN06.log").read_text()
    assert "patient HN06" in log and "missing slice" in log


def test_fail_on_exclusion_turns_an_exclusion_into_a_failed_run(complete_run, tmp_path):
    strict = tmp_path / "strict.yaml"
    strict.write_text("cohort:\n  fail_on_exclusion: true\n")
    workdir = complete_run.copy(tmp_path / "run")
    result = complete_run.run(
        "results/cohort.tsv", "--forcerun", "cohort", extra_configs=[strict], workdir=workdir, check=False
    )
    assert result.returncode != 0
    log = (workdir / "logs" / "cohort.log").read_text()
    assert "2 patient(s) left out and cohort.fail_on_exclusion is true" in log and "HN06" in log


def test_zero_shot_litemedsam_finds_the_test_tumour(complete_run):
    rows = read_scores(complete_run.workdir / "results" / "metrics" / "litemedsam_zeroshot_ct.csv")
    tumour = next(r for r in rows if (r["patient"], r["target"]) == ("HN04", "GTV-T"))
    # the official checkpoint, prompted by boxes around a synthetic tumour, finds most of it in 3D
    assert tumour["status"] == "ok" and 0.4 < tumour["dsc"] <= 1.0 and 0 < tumour["hd95_mm"] < 30
    timings = complete_run.workdir / "results" / "predictions" / "litemedsam_zeroshot_ct" / "timings.json"
    assert json.loads(timings.read_text())["fusion"] == "ct"


def test_registration_qc_of_every_registered_patient(complete_run):
    for patient in ("HN01", "HN02", "HN03", "HN04"):
        folder = complete_run.workdir / "results" / "registered" / patient
        qc = json.loads((folder / "qc.json").read_text())
        assert qc["status"] == "ok" and not qc["flags"], patient
        assert (folder / "qc.png").is_file()
    assert not (complete_run.workdir / "results" / "registered" / "HN05" / "qc.json").exists()


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("prompts:\n  margin_mm: [0.0, 10.0]\n", {"make_prompts", "preview_slices", "predict_litemedsam"}),
        ("evaluate:\n  nsd_tolerance_mm: 3.0\n", {"evaluate", "summarize_metrics", "report"}),
    ],
    ids=["prompt margin", "NSD tolerance"],
)
def test_more_reruns(complete_run, tmp_path, override, expected):
    changed = tmp_path / "changed.yaml"
    changed.write_text(override)
    jobs = planned_jobs(complete_run.run("-n", extra_configs=[changed]).stdout)
    jobs.pop("all", None)
    assert expected <= set(jobs), jobs
    assert not set(jobs) & {"import_ct", "register_mri", "fuse_slices"}
