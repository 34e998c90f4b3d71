"""Stage records, the cohort table and the methods that can run (hnseg.cohort)."""

import json

import pytest

from hnseg import cohort
from hnseg.errors import InputError


def write(path, text="x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_a_successful_stage_records_ok_with_its_outputs(tmp_path):
    out = tmp_path / "P1" / "vol.nii.gz"

    def stage(path):
        write(path)
        return {"detail": 1}

    record = cohort.run_patient_stage(
        tmp_path / "P1" / "r.json", tmp_path / "r.log", "P1", "import_ct", stage, out, outputs=[out]
    )
    assert record == {"detail": 1, "patient": "P1", "stage": "import_ct", "status": "ok", "outputs": [str(out)]}
    assert json.loads((tmp_path / "P1" / "r.json").read_text()) == record


def test_a_refused_patient_gets_a_failed_record_and_no_stale_volume(tmp_path):
    out = tmp_path / "P1" / "vol.nii.gz"
    write(out, "from an earlier run")

    def stage():
        write(out, "half written")
        raise InputError("patient P1, CT series 2: a slice is missing at z = 12 mm; set import.on_missing_slice")

    record = cohort.run_patient_stage(tmp_path / "r.json", tmp_path / "r.log", "P1", "import_ct", stage, outputs=[out])
    assert record["status"] == "failed" and "slice is missing" in record["reason"]
    assert not out.exists()
    assert "slice is missing" in (tmp_path / "r.log").read_text()


def test_a_stage_whose_requirement_failed_is_not_run(tmp_path):
    upstream = tmp_path / "import.json"
    upstream.write_text(json.dumps({"stage": "import_mri", "status": "failed", "reason": "no T1w and no T2w"}))
    ran = []
    record = cohort.run_patient_stage(
        tmp_path / "mri.json",
        tmp_path / "r.log",
        "P1",
        "register_mri",
        ran.append,
        1,
        requires={"import_mri": upstream},
    )
    assert not ran and record["status"] == "not_run"
    assert "import_mri failed: no T1w and no T2w" in record["reason"]


def test_a_bug_is_not_recorded_as_bad_data(tmp_path):
    def stage():
        raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        cohort.run_patient_stage(tmp_path / "r.json", tmp_path / "r.log", "P1", "import_ct", stage)
    assert not (tmp_path / "r.json").exists()


def records(**failed):
    """Stage records of one patient; failed maps stage -> reason."""
    return {
        s: {"stage": s, "status": "failed" if s in failed else "ok", "reason": failed.get(s, "")} for s in cohort.STAGES
    }


def test_cohort_rows_say_which_branches_and_why():
    subsets = {"A": "train", "B": "test", "C": "val"}
    recs = {"A": records(), "B": records(import_mri="no T1w and no T2w"), "C": records(import_ct="no RTSTRUCT")}
    rows = {r.patient: r for r in cohort.cohort_rows(subsets, recs, ["ct", "multimodal", "nnunet"])}
    assert rows["A"].branches == ("ct", "multimodal", "nnunet") and rows["A"].reason == ""
    assert rows["B"].branches == ("ct",)
    assert rows["B"].reason == "no multimodal, nnunet: import_mri failed: no T1w and no T2w"
    assert rows["C"].branches == () and rows["C"].reason.startswith("no ct, multimodal, nnunet: import_ct failed")


def test_methods_without_patients_do_not_run_and_say_why():
    rows = [
        cohort.CohortRow("A", "train", ("ct",), ""),
        cohort.CohortRow("B", "val", ("ct",), ""),
        cohort.CohortRow("C", "test", ("ct",), ""),
    ]
    methods = ["litemedsam_zeroshot_ct", "litemedsam_finetuned_ct", "litemedsam_zeroshot_multimodal", "nnunet_box"]
    plans = {p.method: p for p in cohort.method_plans(rows, methods, ["val", "test"])}
    assert plans["litemedsam_zeroshot_ct"].runs and plans["litemedsam_zeroshot_ct"].n_evaluated == 2
    assert plans["litemedsam_finetuned_ct"].runs
    assert not plans["litemedsam_zeroshot_multimodal"].runs
    assert plans["nnunet_box"].reason == (
        "no val/test patient, no train patient, no val patient in the nnunet branch (see results/cohort.tsv)"
    )


def test_build_cohort_writes_both_tables_and_can_refuse_exclusions(tmp_path):
    paths = {}
    for patient, recs in {"A": records(), "B": records(register_mri="MR does not overlap the CT")}.items():
        paths[patient] = []
        for stage, record in recs.items():
            path = tmp_path / patient / f"{stage}.json"
            write(path, json.dumps({**record, "patient": patient}))
            paths[patient].append(path)
    args = ({"A": "train", "B": "test"}, paths, ["ct", "multimodal"], ["litemedsam_zeroshot_ct"], ["test"])
    rows = cohort.build_cohort(*args, tmp_path / "cohort.tsv", tmp_path / "methods.tsv")
    assert cohort.read_cohort(tmp_path / "cohort.tsv") == rows
    assert [p.runs for p in cohort.read_method_plans(tmp_path / "methods.tsv")] == [True]
    assert cohort.members(rows, "multimodal", ["train", "test"]) == ["A"]
    assert "test: 1 of 1 patients left out of a branch\n  B: no multimodal" in "\n".join(
        cohort.exclusion_summary(rows, ["ct", "multimodal"])
    )
    with pytest.raises(InputError, match="B: no multimodal: register_mri failed: MR does not overlap"):
        cohort.build_cohort(*args, tmp_path / "c2.tsv", tmp_path / "m2.tsv", fail_on_exclusion=True)
