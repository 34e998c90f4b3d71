"""The Snakemake workflow, run for real in a temporary working directory."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "config" / "config.yaml"
DEMO = ROOT / "config" / "demo.yaml"


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(workdir),
        "--workflow-profile", str(ROOT / "profiles" / "default"), "--cores", "2", *args,
    ]  # fmt: skip
    result = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=900)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def planned_jobs(dry_run_output: str) -> dict[str, int]:
    """Rule -> count from the job table a dry run prints."""
    jobs: dict[str, int] = {}
    lines = dry_run_output.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("job") and "count" in ln)
    for line in lines[start + 2 :]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        if parts[0] != "total":
            jobs[parts[0]] = int(parts[1])
    return jobs


def test_demo_dry_run_plans_the_cohort_and_the_split(tmp_path):
    result = snakemake(tmp_path, "-n", "--configfile", str(PAPER), str(DEMO))
    jobs = planned_jobs(result.stdout)
    assert jobs["synthesize_patient"] == 12
    assert jobs["synthesize_cohort"] == 1 and jobs["split_cohort"] == 1


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


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory):
    """The demo workflow run for real on 2 synthetic patients."""
    workdir = tmp_path_factory.mktemp("demo")
    small = workdir / "small.yaml"
    small.write_text("synthetic:\n  n_patients: 2\n")
    # The fused slices of both fusions (so registration too), and the zero-shot CT method predicted and scored on the
    # test patient (SYN001; SYN002 is train). Fine-tuning has its own tests: on two CPU cores it would take most of
    # the CI budget here. Targets go before --configfile, which takes several values.
    targets = ["results/split.tsv", "resources/synthetic/patients.tsv", "results/metrics/litemedsam_zeroshot_ct.csv"]
    targets += [f"results/slices/{f}/{p}.png" for f in ("ct", "multimodal") for p in ("SYN001", "SYN002")]
    targets += [f"results/imported/{p}/{m}.nii.gz" for p in ("SYN001", "SYN002") for m in ("pet", "t1", "t2")]
    configs = [*targets, "--configfile", str(PAPER), str(DEMO), str(small)]
    snakemake(workdir, *configs)
    return workdir, configs


def test_demo_runs_end_to_end(small_demo):
    workdir, configs = small_demo
    for p in ("SYN001", "SYN002"):
        files = [f for f in (workdir / "resources" / "synthetic" / "dicom" / p).rglob("*") if f.is_file()]
        assert len(files) > 50
        assert (workdir / "logs" / "synthesize_patient" / f"{p}.log").is_file()
    sheet = (workdir / "resources" / "synthetic" / "patients.tsv").read_text()
    assert "SYN001\tresources/synthetic/dicom/SYN001" in sheet
    assert len((workdir / "results" / "split.tsv").read_text().splitlines()) == 3
    # a second run has nothing to do
    assert "Nothing to be done" in snakemake(workdir, "-n", *configs).stdout


def test_changing_the_split_seed_reruns_the_split_and_the_scoring_only(small_demo, tmp_path):
    workdir, configs = small_demo
    reseed = tmp_path / "reseed.yaml"
    reseed.write_text("split:\n  seed: 7\n")  # SYN002 becomes the test patient: predicted and scored anew
    jobs = planned_jobs(snakemake(workdir, "-n", *configs, str(reseed)).stdout)
    assert jobs == {"split_cohort": 1, "predict_litemedsam": 1, "evaluate": 1}


def test_demo_imports_every_patient(small_demo):
    workdir, _ = small_demo
    for p in ("SYN001", "SYN002"):
        folder = workdir / "results" / "imported" / p
        for name in ("ct.nii.gz", "labels.nii.gz", "pet.nii.gz", "t1.nii.gz", "t2.nii.gz", "import.json"):
            assert (folder / name).is_file(), f"{p}: {name} missing"


def test_a_refused_patient_does_not_stop_the_others(small_demo, tmp_path):
    demo_dir, _ = small_demo
    source = demo_dir / "resources" / "synthetic" / "dicom"
    bad = tmp_path / "BAD001"
    # the CT and PET of a patient, without RTSTRUCT and MR: import_ct and import_mri must refuse, import_pet goes on
    for series in source.joinpath("SYN002").glob("*/*"):
        modality = pydicom.dcmread(next(series.iterdir()), stop_before_pixels=True).Modality
        if modality in ("CT", "PT"):
            shutil.copytree(series, bad / series.parent.name / series.name)
    sheet = tmp_path / "patients.tsv"
    sheet.write_text(f"patient\tdicom_dir\nGOOD001\t{source / 'SYN001'}\nBAD001\t{bad}\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"patients: {sheet}\nsplit:\n  ratio: [1, 0, 1]\n")
    targets = [f"results/imported/{p}/{m}.nii.gz" for p in ("GOOD001", "BAD001") for m in ("ct", "pet", "t1")]
    result = snakemake(tmp_path, *targets, "--configfile", str(PAPER), str(cfg), check=False)
    assert result.returncode != 0
    imported = tmp_path / "results" / "imported"
    assert all((imported / "GOOD001" / f).is_file() for f in ("ct.nii.gz", "labels.nii.gz", "pet.nii.gz", "t1.nii.gz"))
    assert (imported / "BAD001" / "pet.nii.gz").is_file()
    assert not (imported / "BAD001" / "ct.nii.gz").exists()
    ct_log = (tmp_path / "logs" / "import_ct" / "BAD001.log").read_text()
    assert "patient BAD001" in ct_log and "no RTSTRUCT" in ct_log and str(bad) in ct_log
    mri_log = (tmp_path / "logs" / "import_mri" / "BAD001.log").read_text()
    assert "no T1w and no T2w" in mri_log and "CT-only methods go on" in mri_log


def rerun_plan(small_demo, tmp_path, override: str) -> dict[str, int]:
    workdir, configs = small_demo
    changed = tmp_path / "changed.yaml"
    changed.write_text(override)
    return planned_jobs(snakemake(workdir, "-n", *configs, str(changed)).stdout)


def test_changing_the_ct_window_reruns_only_fusion_and_what_follows(small_demo, tmp_path):
    jobs = rerun_plan(small_demo, tmp_path, "fusion:\n  ct_window:\n    level: 50\n    width: 400\n")
    assert set(jobs) == {"fuse_slices", "preview_slices", "predict_litemedsam", "evaluate"}
    assert jobs["fuse_slices"] == jobs["preview_slices"]  # one per patient and fusion
    assert jobs["predict_litemedsam"] == jobs["evaluate"] == 1


def test_changing_the_prompt_margin_reruns_only_prompts_and_what_follows(small_demo, tmp_path):
    jobs = rerun_plan(small_demo, tmp_path, "prompts:\n  margin_mm: [0.0, 10.0]\n")
    assert set(jobs) == {"make_prompts", "preview_slices", "predict_litemedsam", "evaluate"}
    assert jobs["make_prompts"] == 2


def test_changing_a_registration_number_reruns_only_registration_and_what_follows(small_demo, tmp_path):
    jobs = rerun_plan(small_demo, tmp_path, "registration:\n  syn:\n    gradient_step: 0.25\n")
    assert set(jobs) == {"register_mri", "fuse_slices", "preview_slices"}
    assert jobs["register_mri"] == 2 and jobs["fuse_slices"] == 2  # the multimodal shards only


def test_changing_the_nsd_tolerance_rescores_without_predicting_again(small_demo, tmp_path):
    jobs = rerun_plan(small_demo, tmp_path, "evaluate:\n  nsd_tolerance_mm: 3.0\n")
    assert jobs == {"evaluate": 1}


def test_demo_predicts_and_scores_the_test_patient(small_demo):
    from hnseg.metrics import read_scores

    workdir, _ = small_demo
    rows = read_scores(workdir / "results" / "metrics" / "litemedsam_zeroshot_ct.csv")
    assert [(r["patient"], r["subset"], r["target"]) for r in rows] == [
        ("SYN001", "test", "GTV-T"),
        ("SYN001", "test", "GTV-N"),
    ]
    tumour = rows[0]
    # the official checkpoint, prompted by boxes around a synthetic tumour, finds most of it in 3D
    assert tumour["status"] == "ok" and 0.4 < tumour["dsc"] <= 1.0 and 0 < tumour["hd95_mm"] < 30
    timings = json.loads((workdir / "results" / "predictions" / "litemedsam_zeroshot_ct" / "timings.json").read_text())
    assert timings["variant"] == "zeroshot" and timings["fusion"] == "ct"


def test_demo_registers_every_patient_with_qc(small_demo):

    workdir, _ = small_demo
    for p in ("SYN001", "SYN002"):
        qc = json.loads((workdir / "results" / "registered" / p / "qc.json").read_text())
        assert qc["status"] == "ok" and not qc["flags"]
        for mr in ("t1", "t2"):
            tre = qc["mr"][mr]["truth"]["tre"]
            assert tre["syn"]["mean_mm"] < tre["rigid"]["mean_mm"] < tre["before"]["mean_mm"]
            assert tre["syn"]["mean_mm"] < 2.0
        assert (workdir / "results" / "slices" / "multimodal" / f"{p}.npz").is_file()
