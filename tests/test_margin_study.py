"""Margin study (issue 16): boxes per margin and rule, the summary with bootstrap intervals, and the study run on a
copy of the complete run (the trained models reused) with its section in the report."""

import json

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from hnseg.margin_study import (
    bootstrap_mean_ci,
    conditions,
    margin_name,
    margin_range,
    read_study_scores,
    summarize_study,
    write_study,
)
from hnseg.metrics import SCORE_COLUMNS, write_rows
from hnseg.prompts import make_prompts, tight_box


def labels_volume():
    labels = np.zeros((6, 80, 90), np.uint8)
    labels[1:4, 20:40, 25:50] = 1
    labels[2:5, 50:60, 70:88] = 2  # reaches near the image's right edge: clipped boxes
    return labels


def test_conditions_and_ranges():
    assert conditions([10, 0, 5.0, 30]) == [
        ("exact", "0"), ("exact", "5"), ("exact", "10"), ("exact", "30"),
        ("random", "5"), ("random", "10"), ("random", "30"),
    ]  # fmt: skip
    assert conditions([0, 2.5], ["random"]) == [("random", "2.5")]
    assert margin_range("exact", 5) == (5.0, 5.0) and margin_range("random", 5) == (0.0, 5.0)
    assert margin_name(20.0) == "20" and margin_name(2.5) == "2.5"
    with pytest.raises(ValueError, match="box rule"):
        margin_range("sloppy", 5)
    with pytest.raises(ValueError, match="unknown box rules"):
        conditions([5], ["exact", "sloppy"])
    with pytest.raises(ValueError, match=">= 0"):
        margin_name(-1)


def test_exact_rule_pushes_every_side_out_by_the_margin_and_random_scales_the_same_draws():
    labels, spacing = labels_volume(), (0.8, 1.25, 3.0)
    exact = make_prompts(labels, spacing, "P1", 2024, margin_mm=margin_range("exact", 10))
    for p in exact:
        x0, y0, x1, y1 = tight_box(labels[p.slice] == {"GTV-T": 1, "GTV-N": 2}[p.target])
        assert p.tight == (x0, y0, x1, y1)
        assert p.box == (max(x0 - 12, 0), max(y0 - 8, 0), min(x1 + 12, 89), min(y1 + 8, 79))  # floor(10 / spacing)
    assert any(p.box[2] == 89 for p in exact)  # clipped to the image
    tight = make_prompts(labels, spacing, "P1", 2024, margin_mm=margin_range("exact", 0))
    assert all(p.box == p.tight for p in tight)
    ten = make_prompts(labels, spacing, "P1", 2024, margin_mm=margin_range("random", 10))
    twenty = make_prompts(labels, spacing, "P1", 2024, margin_mm=margin_range("random", 20))
    assert all(0 <= m <= 10 for p in ten for m in p.margins_mm)
    assert np.allclose([p.margins_mm for p in twenty], 2 * np.array([p.margins_mm for p in ten]))
    assert len({p.margins_mm for p in ten}) == len(ten)  # every side, target and slice its own draw


def _table(path, method, values):
    rows = []
    for patient, (dsc_t, hd_t) in values.items():
        for target, dsc, hd in (("GTV-T", dsc_t, hd_t), ("GTV-N", np.nan if dsc_t < 0.2 else 0.5, 3.0)):
            status = "both_empty" if np.isnan(dsc) else "ok"
            rows.append({"method": method, "patient": patient, "subset": "test", "target": target, "dsc": dsc,
                         "hd95_mm": np.nan if np.isnan(dsc) else hd, "nsd": dsc, "volume_gt_ml": 1.0, "volume_pred_ml": 1.0,
                         "status": status, "hd95_worst_case": False})  # fmt: skip
    write_rows(rows, path, SCORE_COLUMNS)
    return str(path)


def test_summary_means_intervals_and_the_shared_tight_box(tmp_path):
    tables = []
    for rule, margin, dscs in (("exact", "0", [0.9, 0.8, 0.85, 0.1]), ("exact", "10", [0.7, 0.6, 0.8, 0.75])):
        values = {f"P{i}": (d, 10 * (1 - d)) for i, d in enumerate(dscs)}
        path = _table(tmp_path / f"{rule}_{margin}.csv", "litemedsam_zeroshot_ct", values)
        tables.append({"rule": rule, "margin": margin, "method": "litemedsam_zeroshot_ct", "path": path})
    scores = read_study_scores(tables, [0, 10], ["exact", "random"])
    zero = scores[scores["margin_mm"] == 0]
    assert set(zero["rule"]) == {"exact", "random"}  # the tight box counts for both rules
    assert np.array_equal(zero[zero.rule == "exact"]["dsc"], zero[zero.rule == "random"]["dsc"], equal_nan=True)
    summary = summarize_study(scores, 2000, 7, 0.95)
    row = summary[(summary.rule == "exact") & (summary.margin_mm == 0) & (summary.target == "GTV-T")].iloc[0]
    assert row["n"] == 4 and row["dsc_mean"] == pytest.approx(np.mean([0.9, 0.8, 0.85, 0.1]))
    assert row["dsc_ci_low"] < row["dsc_mean"] < row["dsc_ci_high"]
    assert row["dsc_ci_low"] >= 0.1 and row["dsc_ci_high"] <= 0.9
    node = summary[(summary.rule == "exact") & (summary.margin_mm == 0) & (summary.target == "GTV-N")].iloc[0]
    assert (node["n"], node["n_excluded"]) == (3, 1)  # both masks empty: excluded and counted
    assert bootstrap_mean_ci([0.9, 0.8, 0.85, 0.1], 2000, 7) == (row["dsc_ci_low"], row["dsc_ci_high"])
    assert bootstrap_mean_ci([0.9, 0.8, 0.85, 0.1], 2000, 8) != (row["dsc_ci_low"], row["dsc_ci_high"])
    assert np.isnan(bootstrap_mean_ci([], 100, 7)).all()  # no interval without patients
    out = {
        k: tmp_path / f"study.{k if k in ('png', 'svg') else k + '.csv'}" for k in ("scores", "summary", "png", "svg")
    }
    written = write_study(tables, [0, 10], ["exact", "random"], out, resamples=500, seed=7, level=0.9)
    assert all(p.stat().st_size > 0 for p in out.values())
    assert len(written) == len(pd.read_csv(out["summary"])) == 2 * 3  # targets x (exact 0, exact 10, random 0)
    svg = out["svg"].read_text()
    assert (
        "line:litemedsam_zeroshot_ct:GTV-T:dsc:exact" in svg and "line:litemedsam_zeroshot_ct:GTV-T:dsc:random" in svg
    )


STUDY_CONFIG = """
studies:
  margins:
    margins_mm: [10]
    rules: [exact, random]
report:
  bootstrap_resamples: 500
"""


def test_margin_study_on_the_complete_run(complete_run, tmp_path):
    copy = complete_run.copy(tmp_path / "run")
    config = tmp_path / "study.yaml"
    config.write_text(STUDY_CONFIG)
    result = complete_run.run("margin_study", extra_configs=[config], workdir=copy)
    log = result.stdout + result.stderr
    for retrained in ("nnunet_train", "finetune_litemedsam", "embed_slices", "nnunet_plan"):
        assert f"rule {retrained}:" not in log  # the trained models and the embedding cache are reused
    study = copy / "results/studies/margins"
    methods = pd.read_csv(copy / "results/methods.tsv", sep="\t")
    ran = methods[methods["runs"] == "yes"]["method"]
    box_methods = sorted(m for m in ran if m.startswith("litemedsam_") or m == "nnunet_box")
    assert "nnunet_box" in box_methods and len(box_methods) == 5

    scores = pd.read_csv(study / "scores.csv")
    summary = pd.read_csv(study / "summary.csv")
    assert sorted(scores["method"].unique()) == box_methods
    assert set(zip(scores["rule"], scores["margin_mm"], strict=True)) == {("exact", 10.0), ("random", 10.0)}
    # every table is rule evaluate's, on the patients the main study scores each method on
    for method in box_methods:
        main = pd.read_csv(copy / f"results/metrics/{method}.csv")
        table = pd.read_csv(study / f"exact_10/metrics/{method}.csv")
        assert list(table.columns) == list(main.columns)
        assert sorted(zip(table["patient"], table["target"], strict=True)) == sorted(
            zip(main["patient"], main["target"], strict=True)
        )
    # the summary is the mean of the scores, inside its interval
    for row in summary.to_dict("records"):
        cell = scores[
            (scores["subset"] == row["subset"]) & (scores["method"] == row["method"])
            & (scores["target"] == row["target"]) & (scores["rule"] == row["rule"])
            & (scores["margin_mm"] == row["margin_mm"])
        ].dropna(subset=["dsc"])  # fmt: skip
        assert row["n"] == len(cell)
        assert row["dsc_mean"] == pytest.approx(cell["dsc"].mean())
        assert row["dsc_ci_low"] - 1e-9 <= row["dsc_mean"] <= row["dsc_ci_high"] + 1e-9
    # the study's boxes: the exact rule pushed every side out by floor(10 mm / spacing), the prompts' targets unchanged
    # an evaluated patient of every method (nnU-Net's, the smallest branch: HN05 has no MR)
    patient = min(p.name.removesuffix(".nii.gz") for p in (study / "exact_10/predictions/nnunet_box").glob("*.nii.gz"))
    main_prompts = json.loads((copy / f"results/prompts/{patient}.json").read_text())
    exact = json.loads((study / f"exact_10/prompts/{patient}.json").read_text())
    sx, sy, _ = exact["spacing_xyz_mm"]
    height, width = exact["ct_shape_zyx"][1:]
    for main_slice, study_slice in zip(main_prompts["slices"], exact["slices"], strict=True):
        for a, b in zip(main_slice["prompts"], study_slice["prompts"], strict=True):
            x0, y0, x1, y1 = a["tight_box"]
            assert b["tight_box"] == a["tight_box"]
            assert b["box"] == [max(x0 - int(10 // sx), 0), max(y0 - int(10 // sy), 0),
                                min(x1 + int(10 // sx), width - 1), min(y1 + int(10 // sy), height - 1)]  # fmt: skip
    # LiteMedSAM decoded the cached embeddings; nnU-Net predicted from the trained model
    timings = json.loads((study / "exact_10/predictions/litemedsam_zeroshot_ct/timings.json").read_text())
    assert timings["embeddings_from"] == ["embed_slices"]
    prediction = sitk.ReadImage(str(study / f"exact_10/predictions/nnunet_box/{patient}.nii.gz"))
    reference = sitk.ReadImage(str(copy / f"results/imported/{patient}/labels.nii.gz"))
    assert prediction.GetSize() == reference.GetSize()

    # the report gains the section; the main study is untouched (only the report reruns)
    planned = complete_run.run("-n", extra_configs=[config], workdir=copy).stdout
    assert "rule report:" in planned and "rule evaluate:" not in planned and "rule predict_litemedsam:" not in planned
    complete_run.run(extra_configs=[config], workdir=copy)
    html = (copy / "results/report/index.html").read_text()
    assert 'id="prompt-studies"' in html and 'id="figure-margin-study"' in html
    table = pd.read_csv(copy / "results/report/tables/margin_study.csv")
    shown = summary[summary["subset"] == "test"]
    assert len(table) == len(shown) and set(table["method"]) == set(box_methods)
    merged = table.merge(shown, on=["method", "target", "rule", "margin_mm"], suffixes=("", "_study"))
    assert len(merged) == len(table) and np.allclose(merged["dsc_mean"], merged["dsc_mean_study"], equal_nan=True)
