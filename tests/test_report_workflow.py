"""The report of a real workflow run (the shared `complete_run`: six patients, two of them left out of branches):
rule report writes every declared file from the run's results, its page opens in Chromium, and `snakemake --report`
builds Snakemake's own report of the run."""

from __future__ import annotations

import html
import zipfile

import pandas as pd
import pytest
from test_report import Tables, body_rows, mean_sd_text, without_note
from test_report_browser import check_page, open_in_chromium

from hnseg.report.build import OUTPUTS
from hnseg.report.methods import LABELS


@pytest.fixture(scope="module")
def workflow_report(complete_run):
    """The run's report folder (built here if `rule all` has not built it already)."""
    complete_run.run("results/report/index.html")
    return complete_run.workdir / "results" / "report"


def test_rule_report_writes_every_file_from_the_run(workflow_report, complete_run):
    for name in OUTPUTS:
        assert (workflow_report / name).is_file(), name
    results = complete_run.workdir / "results"
    summary = pd.read_csv(results / "metrics" / "summary.csv").set_index(["method", "subset", "target"])
    page = Tables((workflow_report / "index.html").read_text())
    shown = {(without_note(r["method"]), r["target"]): r for r in body_rows(page, "table-main-test")}
    for (method, subset, target), row in summary.iterrows():
        if subset == "test":
            cell = shown[(LABELS[method], target)]
            assert cell["n"] == str(int(row["n"])) and cell["dsc_mean_sd"] == mean_sd_text(
                row["dsc_mean"], row["dsc_sd"], 3
            )
    # the patient the cohort left out of everything is named with the reason, and nowhere as a case
    cohort = pd.read_csv(results / "cohort.tsv", sep="\t", keep_default_na=False)
    left_out = pd.read_csv(workflow_report / "tables" / "cohort_left_out.csv", keep_default_na=False)
    assert set(left_out["patient"]) == {
        p for p, b in zip(cohort["patient"], cohort["branches"], strict=True) if b != "ct,multimodal,nnunet"
    }
    text = html.unescape((workflow_report / "index.html").read_text())
    for row in left_out.to_dict("records"):
        assert row["reason"] in text


def test_the_run_report_opens_in_chromium(workflow_report, tmp_path):
    result = open_in_chromium(workflow_report / "index.html", tmp_path / "screenshot.png", tmp_path / "profile")
    check_page(result)


def test_snakemake_report_builds(complete_run, tmp_path):
    archive = tmp_path / "snakemake_report.zip"
    complete_run.run("--report", str(archive))
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
    for name in ("index.html", "figure1_test.png", "figure2_case.png", "main_test.csv", "claims.csv"):
        assert any(n.endswith(name) for n in names), (name, names[:20])
