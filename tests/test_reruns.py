"""Reruns only where the science changed: the README's rerun table, asserted by dry runs after a complete run.

Each row changes one thing (a config number, or one module of the package) and asks Snakemake what it would rerun.
Module edits are made in a copy of the package that the dry run imports first (PYTHONPATH), or bind-mounted over the
module for the dry run alone, so the repository is never touched. Rows that change import or registration first run
the stages up to the cohort checkpoint for real (in a copy of the complete run): what comes after the checkpoint is
only planned once it has run.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from workflow_run import ROOT, planned_jobs

LITEMEDSAM_PREDICTION = {"embed_slices", "predict_litemedsam"}
NNUNET_MODELS = {"nnunet_train", "nnunet_predict", "nnunet_boxmask"}
SCORES = {"evaluate", "summarize_metrics", "report"}

# edit -> (config override or module to edit, rules that rerun)
TABLE = {
    "CT window level": (
        "fusion:\n  ct_window:\n    level: 50\n    width: 400\n",
        {"fuse_slices", "preview_slices", "finetune_litemedsam"} | LITEMEDSAM_PREDICTION | SCORES,
    ),
    "the registration QC module": ("hnseg/registration/qc.py", {"registration_qc", "report"}),
    "a LiteMedSAM inference-only module": ("hnseg/sam/infer.py", {"predict_litemedsam"} | SCORES),
    # the evaluated patients' nnU-Net images are a temp() folder: rebuilt for the new prediction, nothing else
    "nnU-Net epochs": ("nnunet:\n  epochs: 2\n", NNUNET_MODELS | {"nnunet_test_images"} | SCORES),
    "the metrics module": ("hnseg/metrics.py", SCORES),
    "the report module": ("hnseg/report/html.py", {"report"}),
}
# What each row must never rerun (the README's third column), checked on top of the exact sets above.
NEVER = {
    "CT window level": {"import_ct", "register_mri", "nnunet_plan", "nnunet_train"},
    "the registration QC module": {"register_mri", "finetune_litemedsam", "nnunet_train"},
    "a LiteMedSAM inference-only module": {"finetune_litemedsam"},
    "nnU-Net epochs": {"nnunet_plan", "nnunet_dataset", "finetune_litemedsam", "predict_litemedsam"},
    "the metrics module": {"predict_litemedsam", "nnunet_predict", "nnunet_boxmask"},
    "the report module": {"evaluate", "summarize_metrics"},
}


def add_a_statement(source: str) -> str:
    """A module's code changed as little as code can change: one statement more (a comment would not count, see
    test_a_comment_a_docstring_or_blank_lines_rerun_nothing)."""
    return source + "\n_EDITED_BY_THE_RERUN_TEST = True\n"


def edited_package(tmp_path: Path, module: str) -> dict[str, str]:
    """A copy of the hnseg package with one module's code changed (add_a_statement); the env that imports it."""
    copy = tmp_path / "repository"  # laid out like the repository: hnseg finds its schemas from src/hnseg
    shutil.copytree(ROOT / "src" / "hnseg", copy / "src" / "hnseg", ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "workflow").symlink_to(ROOT / "workflow")
    path = copy / "src" / module
    path.write_text(add_a_statement(path.read_text()))
    return {"PYTHONPATH": str(copy / "src")}


def plan(complete_run, tmp_path: Path, change: str) -> dict[str, int]:
    if change.endswith(".py"):
        result = complete_run.run("-n", env=edited_package(tmp_path, change))
    else:
        override = tmp_path / "changed.yaml"
        override.write_text(change)
        result = complete_run.run("-n", extra_configs=[override])
    jobs = planned_jobs(result.stdout)
    jobs.pop("all", None)
    return jobs


def tidy(source: str) -> str:
    """The module tidied, its code unchanged: its docstring reworded, comments added, blank lines at the end."""
    assert source.startswith('"""'), "the edit rewords the module's docstring"
    return (
        "# tidied by the rerun test\n" + source.replace('"""', '"""Reworded by the rerun test. ', 1) + "\n\n# end\n\n"
    )


def test_a_comment_a_docstring_or_blank_lines_rerun_nothing(complete_run, tmp_path):
    """The code trigger is the code (hnseg.provenance.code_of), not the file's bytes: tidying the metrics module, which
    every score imports, plans nothing; one statement more in it, the same way, reruns every score.

    The edited module stands in the repository's own place, as a user's edit would, for one dry run only: it is
    bind-mounted over `src/hnseg/metrics.py` in a mount namespace of the dry run's own (`unshare`; the tests run as
    root, on CI too). A copy of the package elsewhere would move the package's data file that the report reads, and
    rerun the report for that alone."""
    module = ROOT / "src" / "hnseg" / "metrics.py"
    original = module.read_text()

    def plan_with_metrics_module(edit: Callable[[str], str]) -> dict[str, int]:
        edited = tmp_path / f"metrics_{edit.__name__}.py"
        edited.write_text(edit(original))
        bind_and_run = 'mount --bind "$1" "$2" && shift 2 && exec "$@"'
        command = complete_run.command(complete_run.workdir, "-n")
        result = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", bind_and_run, "sh", edited, module, *command],
            check=False, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        return planned_jobs(result.stdout)

    assert plan_with_metrics_module(tidy) == {}
    changed = plan_with_metrics_module(add_a_statement)
    assert set(changed) == {"evaluate", "summarize_metrics", "report", "all"}, changed
    assert module.read_text() == original  # the repository's file, untouched


@pytest.mark.parametrize("row", list(TABLE))
def test_rerun_table(complete_run, tmp_path, row):
    change, reruns = TABLE[row]
    jobs = plan(complete_run, tmp_path, change)
    assert set(jobs) == reruns, f"{row}: planned {jobs}"
    assert not set(jobs) & NEVER[row]


def test_a_syn_number_reruns_registration_and_the_multimodal_branch_only(complete_run, tmp_path):
    workdir = complete_run.copy(tmp_path / "run")
    override = tmp_path / "syn.yaml"
    override.write_text("registration:\n  syn:\n    gradient_step: 0.25\n")
    before = planned_jobs(complete_run.run("-n", extra_configs=[override], workdir=workdir).stdout)
    before.pop("all", None)
    mr_patients = [p for p, s in complete_run.patients.items() if p not in ("HN05", "HN06")]
    # up to the checkpoint: registration of every patient (those without usable MR record not_run), then the cohort
    assert before == {"register_mri": len(complete_run.patients), "cohort": 1}
    complete_run.run("--until", "cohort", extra_configs=[override], workdir=workdir)
    after = planned_jobs(complete_run.run("-n", extra_configs=[override], workdir=workdir).stdout)
    after.pop("all", None)
    nnunet = {"nnunet_dataset", "nnunet_test_images", "nnunet_plan"} | NNUNET_MODELS
    assert set(after) == {"registration_qc", "fuse_slices", "preview_slices", "finetune_litemedsam"} | (
        LITEMEDSAM_PREDICTION | nnunet | SCORES
    )
    assert after["fuse_slices"] == after["registration_qc"] == len(mr_patients)  # the multimodal shards only
    assert after["finetune_litemedsam"] == 1 and after["predict_litemedsam"] == 2  # multimodal zero-shot, fine-tuned


def test_nothing_to_do_after_the_complete_run(complete_run):
    assert planned_jobs(complete_run.run("-n").stdout) == {}
