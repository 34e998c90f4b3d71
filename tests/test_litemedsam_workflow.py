"""LiteMedSAM through Snakemake for real, on the shared CT-only run (tests/conftest.py, `ct_only_run`: one patient
per subset, CT and RTSTRUCT only, so the CT-only branch runs for all three): which jobs keep freed memory, and a
fine-tuning that survives a kill, a forced rerun and a change of its data (issues 12 and 13)."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import time
from pathlib import Path

import psutil
import torch
from workflow_run import snakemake

MODEL = Path("results/models/litemedsam/ct")


def history(path: Path) -> list[dict]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def without_seconds(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def best_epoch(rows: list[dict]) -> int:
    return int(min(rows, key=lambda r: float(r["val_dice_loss"]))["epoch"])


def test_only_the_jobs_that_run_litemedsam_keep_freed_memory(ct_only_run):
    records = [json.loads(line) for line in (ct_only_run.workdir / "processes.jsonl").read_text().splitlines()]
    by_pid: dict[int, list[dict]] = {}
    for record in records:
        by_pid.setdefault(record["pid"], []).append(record)
    jobs: dict[str, list[list[bool]]] = {}  # script -> per process, the settings at each start
    for starts in by_pid.values():
        scripts = [a for a in starts[-1]["argv"] if ".snakemake/scripts/" in a]
        if scripts:
            name = Path(scripts[0]).name.split(".")[-2]  # tmpXXXXXXXX.<script>.py
            jobs.setdefault(name, []).append([bool(s["malloc"]) for s in starts])
    # embeddings of the val and test patient, both predictions and the fine-tuning of the frozen encoder: started
    # plain, then re-executed themselves with the settings
    assert jobs["embed_litemedsam"] == [[False, True], [False, True]]
    assert jobs["predict_litemedsam"] == [[False, True], [False, True]]
    assert jobs["finetune_litemedsam"] == [[False, True]]
    # import, prompts and fusion never run the model
    for script in ("import_ct", "import_pet", "make_prompts", "fuse_slices"):
        assert jobs[script] and all(starts == [False] for starts in jobs[script]), script
    # nor does Snakemake itself set them for every job any more
    snakemake_processes = [s for s in by_pid.values() if s[0]["argv"][1:3] == ["-m", "snakemake"]]
    assert snakemake_processes and not any(s["malloc"] for starts in snakemake_processes for s in starts)
    timings = json.loads((ct_only_run.workdir / "results/predictions/litemedsam_finetuned_ct/timings.json").read_text())
    assert timings["embeddings_from"] == ["embed_slices"] and sorted(timings["patients"]) == ["CT02", "CT03"]


def test_a_killed_finetuning_resumes_to_the_result_of_an_uninterrupted_one(ct_only_run, tmp_path):
    straight = history(ct_only_run.workdir / MODEL / "history.csv")
    best = best_epoch(straight)
    assert best < len(straight), "the settings must leave epochs after the best one (lr)"
    workdir = ct_only_run.copy(tmp_path / "killed")
    for name in ("best.pth", "history.csv", "last.pth"):
        (workdir / MODEL / name).unlink()
    run = subprocess.Popen(ct_only_run.command(workdir, str(MODEL / "best.pth")), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    last, killed = workdir / MODEL / "last.pth", None
    deadline = time.monotonic() + 600
    while killed is None and run.poll() is None and time.monotonic() < deadline:
        if last.is_file() and torch.load(last, weights_only=True)["epoch"] >= best:
            jobs = [
                p
                for p in psutil.Process(run.pid).children(recursive=True)
                if "finetune_litemedsam" in " ".join(p.cmdline())
            ]
            for job in jobs:
                job.send_signal(signal.SIGKILL)
            killed = torch.load(last, weights_only=True)["epoch"]
        time.sleep(0.05)
    output = run.communicate(timeout=120)[0]
    assert killed is not None and run.returncode != 0, output
    assert killed < len(straight)  # killed before the end, right after the best epoch's checkpoint
    assert not (workdir / MODEL / "best.pth").exists() and last.is_file()

    snakemake(workdir, str(MODEL / "best.pth"), "--configfile", *ct_only_run.configs)
    log = (workdir / "logs/finetune_litemedsam/ct.log").read_text()
    assert f"resuming after epoch {killed}" in log
    assert (workdir / MODEL / "best.pth").read_bytes() == (ct_only_run.workdir / MODEL / "best.pth").read_bytes()
    assert without_seconds(history(workdir / MODEL / "history.csv")) == without_seconds(straight)


def test_a_forced_rerun_after_the_last_epoch_writes_the_outputs_again(ct_only_run, tmp_path):
    workdir = ct_only_run.copy(tmp_path / "forced")
    snakemake(workdir, "-f", str(MODEL / "best.pth"), "--configfile", *ct_only_run.configs)
    log = (workdir / "logs/finetune_litemedsam/ct.log").read_text()
    assert "resuming after epoch 3" in log and "epoch 3:" not in log  # nothing left to train
    assert (workdir / MODEL / "best.pth").read_bytes() == (ct_only_run.workdir / MODEL / "best.pth").read_bytes()
    assert (workdir / MODEL / "history.csv").read_text() == (ct_only_run.workdir / MODEL / "history.csv").read_text()


def test_after_a_change_of_the_ct_window_the_finetuning_starts_from_the_official_weights(ct_only_run, tmp_path):
    workdir = ct_only_run.copy(tmp_path / "window")
    window = tmp_path / "window.yaml"
    window.write_text("fusion:\n  ct_window:\n    level: 60\n    width: 400\n")
    snakemake(workdir, str(MODEL / "best.pth"), "--configfile", *ct_only_run.configs, str(window))
    log = (workdir / "logs/finetune_litemedsam/ct.log").read_text()
    assert "belongs to a run with other settings or data: starting from the official weights" in log
    assert "resuming" not in log
    rows = history(workdir / MODEL / "history.csv")
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert without_seconds(rows) != without_seconds(history(ct_only_run.workdir / MODEL / "history.csv"))


def test_with_a_trained_encoder_the_finetuned_prediction_encodes_its_own_slices(ct_only_run, tmp_path):
    trained = tmp_path / "trained.yaml"
    trained.write_text("litemedsam:\n  finetune:\n    train_encoder: true\n")
    targets = [str(MODEL / "best.pth"), "results/predictions/litemedsam_finetuned_ct"]
    dry = snakemake(ct_only_run.workdir, "-n", *targets, "--configfile", *ct_only_run.configs, str(trained)).stdout
    jobs = {}
    for block in dry.split("\n\n"):
        lines = dict(
            line.strip().split(": ", 1) for line in block.splitlines() if line.startswith("    ") and ": " in line
        )
        rule = next((line.split()[1].rstrip(":") for line in block.splitlines() if line.startswith("rule ")), None)
        if rule in ("finetune_litemedsam", "predict_litemedsam"):
            jobs[rule] = lines["input"].split(", ")
    assert "results/slices/ct/CT02.npz" in jobs["predict_litemedsam"]
    assert not [f for f in jobs["predict_litemedsam"] if f.startswith("results/embeddings/")]
    assert not [f for f in jobs["finetune_litemedsam"] if f.startswith("results/embeddings/")]
    assert "embed_slices" not in dry  # nothing to embed: the official embeddings are only for zero-shot
