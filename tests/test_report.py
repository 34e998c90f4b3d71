"""The report (hnseg.report): tables, statistics, figures, case, timings, QC, cohort, provenance and the page.

A small study is written for real (tiny label volumes scored by hnseg.metrics exactly as the evaluate stage does,
fused shards, prompts, timings, QC records), then the report is built from it once per module.
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from hnseg.cohort import MethodPlan, method_branch, write_method_plans
from hnseg.fusion import read_shard, write_shard
from hnseg.metrics import SCORE_COLUMNS, SUMMARY_COLUMNS, evaluate_method, read_scores, summarize, write_rows
from hnseg.prompts import make_prompts, split_instances, write_prompts
from hnseg.report import case, cohort, figures, paper, provenance, qc, stats, tables, timings
from hnseg.report.build import OUTPUTS, ReportInputs, ReportOptions, build_report
from hnseg.report.methods import LABELS, METHODS
from hnseg.report.scores import read_metric_tables

# ------------------------------------------------------------------------------------------------ a small study

SHAPE = (10, 40, 40)  # z, y, x
SPACING_XYZ = (2.0, 2.0, 3.0)
TRAIN, VAL = ["R01", "R02"], ["V01", "V02"]
TEST = [f"T0{i}" for i in range(1, 8)]
# GTV-T width in x per patient: a one-voxel shift in x then gives GTV-T DSC (w - 1) / w.
GTVT_WIDTH = {
    "T01": 4,
    "T02": 5,
    "T03": 6,
    "T04": 8,
    "T05": 10,
    "T06": 12,
    "T07": 7,
    "V01": 6,
    "V02": 8,
    "R01": 6,
    "R02": 6,
}
NO_GTVN = {"T07", "V02"}  # T07's fine-tuned multimodal GTV-T DSC is the test median: the rule must pass it over
# (dx GTV-T, dx GTV-N, dy GTV-N) of each method's prediction against the reference
SHIFTS = {
    "litemedsam_zeroshot_ct": (3, 1, 1),
    "litemedsam_zeroshot_multimodal": (2, 1, 1),
    "litemedsam_finetuned_ct": (2, 0, 1),
    "litemedsam_finetuned_multimodal": (1, 1, 0),
    "nnunet_nobox": (4, 2, 2),
    "nnunet_box": (0, 0, 1),
}
EMPTY_PREDICTION = ("nnunet_nobox", "T03")  # scored worst case: DSC 0, HD95 the image diagonal
NO_ROWS = "nnunet_nobox_boxmasked"
NOT_RUN_REASON = "left out by this test (results/methods.tsv)"
CONFIG = {"split": {"seed": 11}, "prompts": {"seed": 2024}, "report": {"seed": 7, "bootstrap_resamples": 2000}}


def label_volume(patient: str, dx_t: int = 0, dx_n: int = 0, dy_n: int = 0) -> np.ndarray:
    labels = np.zeros(SHAPE, np.uint8)
    width = GTVT_WIDTH[patient]
    labels[3:7, 12:18, 8 + dx_t : 8 + dx_t + width] = 1
    if patient not in NO_GTVN:
        labels[4:6, 28 + dy_n : 32 + dy_n, 26 + dx_n : 30 + dx_n] = 2
    return labels


def write_nifti(array: np.ndarray, path: Path) -> Path:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(SPACING_XYZ)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), useCompression=True)
    return path


def fused_rgb(patient: str, fusion: str) -> np.ndarray:
    """A deterministic RGB volume that differs per patient and fusion (so the case figure's input is traceable)."""
    z, y, x = np.meshgrid(*(np.arange(n) for n in SHAPE), indexing="ij")
    base = int(hashlib.sha256(f"{patient}{fusion}".encode()).hexdigest()[:4], 16)
    channels = [(x * 5 + y * 3 + z * 7 + base + 40 * c) % 256 for c in range(3)]
    return np.stack(channels, axis=-1).astype(np.uint8)


def write_small_study(root: Path) -> ReportInputs:
    """Every input of the report for a study of 2 train, 2 val and 7 test patients; returns the inputs."""
    subset = {**dict.fromkeys(TRAIN, "train"), **dict.fromkeys(VAL, "val"), **dict.fromkeys(TEST, "test")}
    evaluated = VAL + TEST
    res = root / "results"
    refs = {p: write_nifti(label_volume(p), res / f"imported/{p}/labels.nii.gz") for p in subset}
    prompts, shards = {}, {"ct": {}, "multimodal": {}}
    for p in subset:
        labels = label_volume(p)
        prompts[p] = res / f"prompts/{p}.json"
        write_prompts(
            prompts[p],
            p,
            make_prompts(labels, SPACING_XYZ, p, 2024),
            shape_zyx=SHAPE,
            spacing_xyz=SPACING_XYZ,
            params={},
        )
        instances, _ = split_instances(labels)
        slices = [int(z) for z in np.flatnonzero(labels.any(axis=(1, 2)))]
        for fusion, files in shards.items():
            files[p] = res / f"slices/{fusion}/{p}.npz"
            write_shard(files[p], fused_rgb(p, fusion), instances, slices, spacing_xyz=SPACING_XYZ, meta={"patient": p})
    predictions, metrics = {}, {}
    (res / "metrics").mkdir(parents=True)
    for method, (dx_t, dx_n, dy_n) in SHIFTS.items():
        predictions[method] = {}
        for p in evaluated:
            pred = label_volume(p, dx_t, dx_n, dy_n)
            if (method, p) == EMPTY_PREDICTION:
                pred[:] = 0
            predictions[method][p] = write_nifti(pred, res / f"predictions/{method}/{p}.nii.gz")
        cases = [
            {"patient": p, "subset": subset[p], "prediction": predictions[method][p], "reference": refs[p]}
            for p in evaluated
        ]
        metrics[method] = res / f"metrics/{method}.csv"
        write_rows(evaluate_method(method, cases), metrics[method], SCORE_COLUMNS)
    metrics[NO_ROWS] = res / f"metrics/{NO_ROWS}.csv"
    write_rows([], metrics[NO_ROWS], SCORE_COLUMNS)
    summary = res / "metrics/summary.csv"
    write_rows(summarize(r for path in metrics.values() for r in read_scores(path)), summary, SUMMARY_COLUMNS)

    split = res / "split.tsv"
    split.write_text("patient\tsubset\tassigned_by\n" + "".join(f"{p}\t{s}\tranked\n" for p, s in subset.items()))
    methods_tsv = res / "methods.tsv"
    plans = [MethodPlan(m, method_branch(m)[0], True, 2, 2, 9, "") for m in SHIFTS]
    write_method_plans([*plans, MethodPlan(NO_ROWS, "nnunet", False, 2, 2, 9, NOT_RUN_REASON)], methods_tsv)
    cohort_tsv = res / "cohort.tsv"
    cohort_tsv.write_text(
        "patient\tsubset\tbranches\treason\n"
        + "".join(f"{p}\t{s}\tct,multimodal,nnunet\t\n" for p, s in subset.items() if p != "R02")
        + "R02\ttrain\tct\tno T1w series (import_mri): multimodal and nnU-Net need it\n"
    )

    histories = {}
    for fusion, losses in (("ct", [0.40, 0.31, 0.35]), ("multimodal", [0.30, 0.30, 0.33])):
        histories[fusion] = res / f"models/litemedsam/{fusion}/history.csv"
        histories[fusion].parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(
            {
                "epoch": [1, 2, 3],
                "train_loss": [1.0, 0.9, 0.8],
                "val_dice_loss": losses,
                "lr": 3e-4,
                "seconds": [10.0, 12.0, 14.0],
            }
        ).to_csv(histories[fusion], index=False)
    lm_timings = {}
    for i, method in enumerate(m for m in SHIFTS if m.startswith("litemedsam_")):
        lm_timings[method] = res / f"predictions/{method}/timings.json"
        overall = {"slices": 40, "boxes": 60, "encoder_s_per_slice": 1.0 + i, "decoder_s_per_slice": 0.1, "decoder_s_per_box": 0.07,
                   "s_per_box_per_slice": 0.74, "total_s": 44.0}  # fmt: skip
        lm_timings[method].write_text(json.dumps({"device": "cpu", "overall": overall, "patients": {}}))
    nn_train, nn_timings, checkpoints = {}, {}, {}
    for variant in ("nobox", "box"):
        model_dir = res / f"nnunet/results/Dataset50{variant == 'box'}_X/trainer"
        (model_dir / "fold_0").mkdir(parents=True, exist_ok=True)
        (model_dir / "fold_0/checkpoint_final.pth").write_bytes(f"nnU-Net {variant} weights".encode())
        nn_train[variant] = res / f"nnunet/results/Dataset50{variant == 'box'}_X/training.json"
        history = [{"epoch": 0, "seconds": 20.0}, {"epoch": 1, "seconds": 30.0}]
        nn_train[variant].write_text(
            json.dumps(
                {"device": "cpu", "model_dir": str(model_dir), "fold": 0, "iterations_per_epoch": 2, "history": history}
            )
        )
        nn_timings[f"nnunet_{variant}"] = res / f"predictions/nnunet_{variant}/timings.json"
        overall = {"cases": 9, "total_s": 27.0, "s_per_case": 3.0}
        nn_timings[f"nnunet_{variant}"].write_text(json.dumps({"device": "cpu", "tta": False, "overall": overall}))
    for fusion in ("ct", "multimodal"):
        checkpoints[fusion] = res / f"models/litemedsam/{fusion}/best.pth"
        checkpoints[fusion].write_bytes(f"fine-tuned {fusion}".encode())
    benchmarks = {"import_ct": {}, "register_mri": {}, "finetune_litemedsam": {}}
    for i, p in enumerate(subset):
        for rule, seconds in (("import_ct", 1.0 + i), ("register_mri", 20.0 + 2 * i)):
            path = res / f"benchmarks/{rule}/{p}.tsv"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"s\th:m:s\tmax_rss\n{seconds}\t0:00:01\t100.0\n")
            benchmarks[rule][p] = path
    benchmarks["finetune_litemedsam"]["ct"] = res / "benchmarks/finetune_litemedsam/ct.tsv"
    benchmarks["finetune_litemedsam"]["ct"].parent.mkdir(parents=True, exist_ok=True)
    benchmarks["finetune_litemedsam"]["ct"].write_text("s\th:m:s\n40.5\t0:00:40\n")

    qc_files, qc_png = {}, {}
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for i, p in enumerate(p for p in subset if p != "R02"):
        mr = {}
        for name in ("t1", "t2"):
            flagged = p == "V01" and name == "t2"
            mr[name] = {
                "initialisation": "geometry",
                "overlap": {"scanner_coordinates": 0.9, "registered": 0.95},
                "similarity": {s: {"mi": 0.1 * (k + 1) + 0.01 * i} for k, s in enumerate(("before", "rigid", "syn"))},
                "truth": {
                    "tre": {
                        s: {"mean_mm": v + i, "max_mm": 2 * v + i}
                        for s, v in (("before", 10.0), ("rigid", 1.5), ("syn", 1.0))
                    }
                },
                "flags": ["similarity_worse"] if flagged else [],
            }
        qc_files[p] = res / f"registered/{p}/qc.json"
        qc_files[p].parent.mkdir(parents=True, exist_ok=True)
        qc_files[p].write_text(json.dumps({"patient": p, "mr": mr}))
        fig, ax = plt.subplots(figsize=(2, 1))
        ax.text(0.5, 0.5, f"QC {p}")
        qc_png[p] = res / f"registered/{p}/qc.png"
        fig.savefig(qc_png[p], dpi=40)
        plt.close(fig)

    return ReportInputs(
        metrics=metrics, split=split, summary=summary, cohort=cohort_tsv, methods=methods_tsv,
        prompts={p: prompts[p] for p in subset if p != "R02"},
        shards={f: {p: shards[f][p] for p in TEST} for f in shards}, references={p: refs[p] for p in TEST},
        predictions={m: {p: predictions[m][p] for p in TEST} for m in predictions},
        histories=histories, litemedsam_timings=lm_timings, nnunet_trainings=nn_train, nnunet_timings=nn_timings,
        benchmarks=benchmarks, qc=qc_files, qc_png=qc_png, checkpoints=checkpoints,
    )  # fmt: skip


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    inputs = write_small_study(root)
    out = root / "results" / "report"
    options = ReportOptions(bootstrap_resamples=2000, seed=7, qc_images_embedded=3, config=CONFIG)
    written = build_report(inputs, out, options)
    return inputs, out, options, written


# ------------------------------------------------------------------------------------------------ the page, parsed


class Tables(HTMLParser):
    """Every <table id=...> of a page: rows of (tag, attributes, text), header rows included."""

    def __init__(self, text: str):
        super().__init__()
        self.tables: dict[str, list[list[tuple[str, dict, str]]]] = {}
        self._table = self._row = self._cell = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self._table = self.tables.setdefault(dict(attrs)["id"], [])
        elif tag == "tr" and self._table is not None:
            self._row = []
            self._table.append(self._row)
        elif tag in ("td", "th") and self._row is not None:
            self._cell = [tag, dict(attrs), ""]

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append(tuple(self._cell))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[2] += data


def body_rows(page: Tables, table_id: str) -> list[dict[str, str]]:
    """The data rows of a table as {data-field: text}."""
    return [
        {a.get("data-field", ""): text for tag, a, text in row}
        for row in page.tables[table_id]
        if row and row[0][0] == "td"
    ]


def without_note(method_cell: str) -> str:
    """The method's label without the note a method without rows carries in parentheses."""
    return method_cell.split(" (did not run: ", maxsplit=1)[0].removesuffix(" (no rows)")


def mean_sd_text(mean: float, sd: float, digits: int) -> str:
    if math.isnan(mean):
        return "\u2014"
    return f"{mean:.{digits}f} \u00b1 " + ("\u2014" if math.isnan(sd) else f"{sd:.{digits}f}")


# ------------------------------------------------------------------------------------------------ tests


def test_the_rule_declares_every_output():
    rule = (Path(__file__).resolve().parents[1] / "workflow/rules/report.smk").read_text()
    assert sorted(re.findall(r'"results/report/([^"]+)"', rule)) == sorted(OUTPUTS)


def test_every_output_is_written(study):
    _, out, _, written = study
    assert [p.relative_to(out).as_posix() for p in written] == list(OUTPUTS)
    assert all(p.is_file() and p.stat().st_size > 0 for p in written)


@pytest.mark.parametrize("subset", ["test", "val"])
def test_main_table_equals_the_summary_csv_and_a_recomputation(study, subset):
    inputs, out, _, _ = study
    page = Tables((out / "index.html").read_text())
    shown = {(without_note(r["method"]), r["target"]): r for r in body_rows(page, f"table-main-{subset}")}
    assert len(shown) == len(METHODS) * 2
    summary = pd.read_csv(inputs.summary).set_index(["method", "subset", "target"])
    ours = pd.read_csv(out / f"tables/main_{subset}.csv").set_index(["method", "target"])
    rows = pd.concat([pd.read_csv(p) for p in inputs.metrics.values()])
    for method in METHODS:
        for target in ("GTV-T", "GTV-N"):
            cells = shown[(LABELS[method], target)]
            group = rows[(rows["method"] == method) & (rows["subset"] == subset) & (rows["target"] == target)]
            used = group[group["status"] != "both_empty"]
            # recomputed here from the per-patient rows
            n, dsc, hd = len(used), used["dsc"], used["hd95_mm"]
            expected = {
                "n": str(n),
                "dsc_mean_sd": mean_sd_text(dsc.mean() if n else math.nan, dsc.std(ddof=1) if n > 1 else math.nan, 3),
                "hd95_mm_mean_sd": mean_sd_text(hd.mean() if n else math.nan, hd.std(ddof=1) if n > 1 else math.nan, 2),
                "hd95_mm_median": f"{hd.median():.2f}" if n else "\u2014",
                "n_hd95_worst_case": str(int(used["hd95_worst_case"].sum())),
                "n_excluded": str(len(group) - n),
            }
            assert {k: cells[k] for k in expected} == expected, (method, target)
            # the report's CSV and the metrics stage's summary say the same
            assert ours.loc[(method, target), "n"] == n
            if (method, subset, target) in summary.index:
                s = summary.loc[(method, subset, target)]
                assert cells["dsc_mean_sd"] == mean_sd_text(s["dsc_mean"], s["dsc_sd"], 3)
                assert cells["hd95_mm_median"] == f"{s['hd95_mm_median']:.2f}"
                assert ours.loc[(method, target), "dsc_mean"] == pytest.approx(s["dsc_mean"], rel=1e-5)
            else:
                assert n == 0 and method == NO_ROWS


def test_the_edge_cases_are_in_the_table(study):
    _, out, _, _ = study
    page = Tables((out / "index.html").read_text())
    test_rows = {(r["method"], r["target"]): r for r in body_rows(page, "table-main-test")}
    val_rows = {(r["method"], r["target"]): r for r in body_rows(page, "table-main-val")}
    # a method without rows
    no_rows = test_rows[(f"{LABELS[NO_ROWS]} (did not run: {NOT_RUN_REASON})", "GTV-T")]
    assert no_rows["n"] == "0" and no_rows["dsc_mean_sd"] == "\u2014"
    # a target with n = 1 (the one val patient with a GTV-N; the other is both-empty, excluded and counted)
    single = val_rows[(LABELS["litemedsam_finetuned_ct"], "GTV-N")]
    assert single["n"] == "1" and single["n_excluded"] == "1" and single["dsc_mean_sd"].endswith("\u00b1 \u2014")
    # the empty prediction: DSC 0 and the image diagonal, counted as worst case
    worst = test_rows[(LABELS["nnunet_nobox"], "GTV-T")]
    assert worst["n_hd95_worst_case"] == "1"
    diagonal = math.sqrt(sum(((n - 1) * s) ** 2 for n, s in zip(SHAPE, SPACING_XYZ[::-1], strict=True)))
    rows = pd.read_csv(out / "figures/figure1_test.csv")
    empty = rows[(rows["method"] == "nnunet_nobox") & (rows["patient"] == "T03") & (rows["target"] == "GTV-T")]
    assert set(zip(empty["metric"], empty["value"].round(4), strict=True)) == {
        ("dsc", 0.0),
        ("hd95_mm", round(diagonal, 4)),
    }
    assert empty["worst_case"].all()


def test_paper_values_appear_only_under_their_label(study):
    _, out, _, _ = study
    text = (out / "index.html").read_text()
    page = Tables(text)
    published = paper.published()
    header = [c for row in page.tables["table-main-test"][:2] for c in row]
    paper_heads = [c for c in header if "paper" in c[1].get("class", "")]
    assert paper_heads and published.label in paper_heads[0][2]
    cells = [c for row in page.tables["table-main-test"][2:] for c in row]
    for row in published.dsc.to_dict("records"):
        value = f"{row['mean']:.2f} \u00b1 {row['sd']:.2f}"
        holders = [c for c in cells if value in c[2]]
        assert holders and all("paper" in c[1]["class"] for c in holders), value
    # ours never in a paper cell, the paper's never in ours; the val table has no paper column
    assert all(c[1]["class"] == "num paper" for c in cells if c[1].get("data-field") == "paper_dsc")
    assert not any("paper" in c[1].get("class", "") for row in page.tables["table-main-val"] for c in row)
    both = [
        r for r in body_rows(page, "table-main-test") if r["target"] == "GTV-T" and r["paper_dsc"].startswith("0.88")
    ]
    assert {without_note(r["method"]) for r in both} == {LABELS["nnunet_box"], LABELS[NO_ROWS]}
    assert published.notes["with_box"] in html.unescape(text)
    csv = pd.read_csv(out / "tables/main_test.csv")
    assert {"paper_dsc_mean", "paper_dsc_sd", "paper_n"} <= set(csv.columns)
    assert csv.loc[csv["method"] == NO_ROWS, "paper_dsc_mean"].tolist() == [0.88, 0.89]


def test_violin_points_are_the_per_patient_rows(study):
    inputs, out, _, _ = study
    scores = read_metric_tables(inputs.metrics)
    data = figures.violin_data(scores, "test", list(METHODS))
    fig = figures.violin_figure(data, list(METHODS), "test")
    rows = pd.concat([pd.read_csv(p) for p in inputs.metrics.values()])
    rows = rows[(rows["subset"] == "test") & (rows["status"] != "both_empty")]
    for ax, (metric, target) in zip(
        fig.axes, [(m, t) for m in ("dsc", "hd95_mm") for t in ("GTV-T", "GTV-N")], strict=True
    ):
        for method in METHODS:
            drawn = [
                c.get_offsets()[:, 1] for c in ax.collections if c.get_gid() in (f"points:{method}", f"worst:{method}")
            ]
            drawn = np.sort(np.concatenate(drawn)).astype(float) if drawn else np.array([])
            expected = np.sort(rows[(rows["method"] == method) & (rows["target"] == target)][metric].to_numpy(float))
            np.testing.assert_allclose(drawn, expected, rtol=1e-6, err_msg=f"{metric} {target} {method}")
        texts = [t.get_text() for t in ax.texts]
        assert "no rows" in texts  # the method without rows leaves a labelled gap
    # the CSV beside the figure holds the same points
    csv = pd.read_csv(out / "figures/figure1_test.csv")
    assert len(csv) == 2 * len(rows)
    merged = csv.merge(rows, on=["method", "patient", "target"])
    assert np.allclose(merged.apply(lambda r: r[r["metric"]], axis=1), merged["value"])


def test_a_target_with_one_patient_draws_a_labelled_gap(study):
    inputs, _, _, _ = study
    scores = read_metric_tables(inputs.metrics)
    fig = figures.violin_figure(figures.violin_data(scores, "val", list(METHODS)), list(METHODS), "val")
    gtvn_dsc = fig.axes[1]
    assert sum(t.get_text() == "n=1\nno violin" for t in gtvn_dsc.texts) == len(METHODS) - 1
    # the label sits above the panel, clear of the one point it explains
    assert all(t.get_position()[1] > 1 for t in gtvn_dsc.texts if "no violin" in t.get_text())


def test_the_case_figure_shows_the_patient_the_rule_picks(study):
    inputs, out, _, _ = study
    # the rule, recomputed here from the per-patient CSV
    rows = pd.read_csv(inputs.metrics["litemedsam_finetuned_multimodal"])
    test = rows[rows["subset"] == "test"]
    gtvt = test[test["target"] == "GTV-T"].set_index("patient")["dsc"]
    with_gtvn = set(test[(test["target"] == "GTV-N") & test["status"].isin(["ok", "pred_empty"])]["patient"])
    median = gtvt.median()
    assert gtvt.sub(median).abs().idxmin() == "T07"  # nearest the median overall, but without a GTV-N
    expected = min(with_gtvn, key=lambda p: (abs(gtvt[p] - median), p))
    assert expected == "T04"
    selection = pd.read_csv(out / "figures/figure2_case_selection.csv")
    assert selection.loc[selection["chosen"], "patient"].tolist() == [expected]
    drawn = pd.read_csv(out / "figures/figure2_case.csv")
    assert set(drawn["patient"]) == {expected}
    z = int(np.argmax((sitk.GetArrayFromImage(sitk.ReadImage(str(inputs.references[expected]))) == 1).sum(axis=(1, 2))))
    assert set(drawn["slice"]) == {z}
    assert f"Patient {expected}:" in (out / "index.html").read_text()
    # the images drawn are that patient's fused slices
    scores = read_metric_tables(inputs.metrics)
    choice = case.pick_case(scores)
    fig, _ = case.case_figure(
        choice, scores, {f: inputs.shards[f][expected] for f in ("ct", "multimodal")}, inputs.prompts[expected],
        inputs.references[expected], {m: inputs.predictions[m][expected] for m in SHIFTS if m.startswith("litemedsam")},
    )  # fmt: skip
    for fusion in ("ct", "multimodal"):
        images, _, slices, info = read_shard(inputs.shards[fusion][expected])
        frame = images[list(slices).index(z), : info["new_height"], : info["new_width"]]
        shown = [im.get_array() for ax in fig.axes for im in ax.images if im.get_gid() == f"input:{fusion}"]
        assert len(shown) == 3 and all(np.array_equal(np.asarray(s), frame) for s in shown)


def test_case_rule_ties_go_to_the_lowest_id():
    rows = []
    for p, dsc in (("B", 0.6), ("A", 0.8), ("C", 0.7), ("D", 0.7)):
        rows.append(
            {
                "method": case.CASE_METHOD,
                "patient": p,
                "subset": "test",
                "target": "GTV-T",
                "dsc": dsc,
                "status": "ok",
                "used": True,
            }
        )
        status = "gt_empty" if p in ("C", "D") else "ok"
        rows.append(
            {
                "method": case.CASE_METHOD,
                "patient": p,
                "subset": "test",
                "target": "GTV-N",
                "dsc": 0.5,
                "status": status,
                "used": True,
            }
        )
    choice = case.pick_case(pd.DataFrame(rows))
    # median 0.7: C and D sit on it but have no GTV-N; A and B are 0.1 away: A, the lowest id
    assert (choice.patient, choice.median) == ("A", pytest.approx(0.7))


def test_bootstrap_interval_equals_a_hand_computation():
    d = np.array([0.12, -0.05, 0.30, 0.08, 0.02, 0.15, -0.01])
    resamples, seed = 500, 3
    # by hand: the documented draw, then each resample's median and the 2.5 / 97.5 percentiles by sorting
    indices = np.random.default_rng(seed).integers(0, len(d), size=(resamples, len(d)))
    medians = sorted(sorted(d[i])[len(d) // 2] for i in indices)  # n odd: the middle value

    def percentile(q):
        rank = q / 100 * (resamples - 1)
        low = math.floor(rank)
        return medians[low] + (rank - low) * (medians[min(low + 1, resamples - 1)] - medians[low])

    assert stats.bootstrap_median_ci(d, resamples, seed) == pytest.approx(
        (percentile(2.5), percentile(97.5)), abs=1e-12
    )
    assert stats.bootstrap_median_ci([0.1] * 6, 1000, 1) == (pytest.approx(0.1), pytest.approx(0.1))


def test_wilcoxon_and_holm_equal_a_hand_computation():
    # n = 6, no ties: one negative difference of rank 2, so W- = 2; P(W <= 2) = 3 / 64 (subsets {}, {1}, {2})
    assert stats.wilcoxon_p([0.1, -0.2, 0.3, 0.4, 0.5, 0.6]) == pytest.approx(6 / 64)
    assert stats.wilcoxon_p([0.0] * 6) == 1.0
    # Holm over m = 4 tested rows: sorted 0.01, 0.02, 0.03, 0.04 -> 4*0.01, max(., 3*0.02), max(., 2*0.03), max(., 0.04)
    assert stats.holm([0.03, None, 0.01, 0.04, 0.02]) == [
        pytest.approx(0.06),
        None,
        pytest.approx(0.04),
        pytest.approx(0.06),
        pytest.approx(0.06),
    ]
    assert stats.holm([0.5, 0.4]) == [pytest.approx(0.8), pytest.approx(0.8)]


def test_claims_table_equals_a_hand_computation_on_the_study(study):
    inputs, out, options, _ = study
    claims = pd.read_csv(out / "tables/claims.csv")
    assert len(claims) == len(stats.COMPARISONS) * 2
    rows = pd.concat([pd.read_csv(p) for p in inputs.metrics.values()])
    rows = rows[(rows["subset"] == "test") & (rows["status"] != "both_empty")]
    pvalues = []
    for row in claims.to_dict("records"):
        a = rows[(rows["method"] == row["method_a"]) & (rows["target"] == row["target"])].set_index("patient")["dsc"]
        b = rows[(rows["method"] == row["method_b"]) & (rows["target"] == row["target"])].set_index("patient")["dsc"]
        d = (a - b).dropna().sort_index().to_numpy()
        assert row["n_pairs"] == len(d) >= 6
        assert row["median_difference"] == pytest.approx(np.median(d))
        low, high = stats.bootstrap_median_ci(d, options.bootstrap_resamples, options.seed)
        assert (row["ci_low"], row["ci_high"]) == (pytest.approx(low), pytest.approx(high))
        assert row["ci_low"] <= row["median_difference"] <= row["ci_high"]
        pvalues.append(row["wilcoxon_p"])
    m = len(pvalues)
    order = np.argsort(pvalues, kind="stable")
    running, holm = 0.0, [None] * m
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        holm[i] = running
    assert claims["holm_p"].tolist() == pytest.approx(holm)
    page = Tables((out / "index.html").read_text())
    shown = body_rows(page, "table-claims")
    assert [r["holm_p"] for r in shown] == [("<0.0001" if p < 1e-4 else f"{p:.4f}") for p in holm]


def test_too_few_pairs_get_no_p_value():
    rows = [
        {"method": m, "patient": f"P{i}", "subset": "test", "target": t, "dsc": 0.5 + 0.01 * i * ("finetuned" in m),
         "status": "ok", "used": True}
        for m in ("litemedsam_finetuned_ct", "litemedsam_zeroshot_ct") for i in range(4) for t in ("GTV-T", "GTV-N")
    ]  # fmt: skip
    claims = stats.claims_table(pd.DataFrame(rows), resamples=100, seed=1, min_pairs=6)
    first = claims.iloc[0]
    assert first["n_pairs"] == 4 and math.isnan(first["wilcoxon_p"]) and first["note"] == "too few pairs (n = 4 < 6)"
    assert first["median_difference"] == pytest.approx(0.015) and math.isnan(first["ci_low"])
    assert (claims["n_pairs"].iloc[2:] == 0).all() and (claims["note"].iloc[2:] == "no pairs").all()
    assert claims["holm_p"].isna().all()


def test_a_stale_summary_is_refused(study, tmp_path):
    inputs, _, _, _ = study
    summary = pd.read_csv(inputs.summary)
    summary.loc[(summary["method"] == "nnunet_box") & (summary["subset"] == "test"), "dsc_mean"] += 0.01
    stale = tmp_path / "summary.csv"
    summary.to_csv(stale, index=False)
    scores = read_metric_tables(inputs.metrics)
    table = tables.main_table(scores, "test", list(METHODS), paper.published())
    with pytest.raises(ValueError, match=r"nnunet_box/test/GTV-T dsc_mean"):
        tables.check_against_summary([table], stale)


def test_every_table_header_spans_its_rows(study):
    _, out, _, _ = study
    page = Tables((out / "index.html").read_text())
    assert len(page.tables) >= 12
    for table_id, rows in page.tables.items():
        head = [r for r in rows if r and r[0][0] == "th"]
        body = [r for r in rows if r and r[0][0] == "td"]
        width = sum(int(c[1].get("colspan", 1)) for c in head[0])
        spanned_down = sum(int(c[1].get("rowspan", 1)) > 1 for c in head[0])
        for row in head[1:]:
            assert sum(int(c[1].get("colspan", 1)) for c in row) + spanned_down == width, table_id
        for row in body:
            assert sum(int(c[1].get("colspan", 1)) for c in row) == width, (table_id, row)


def test_the_page_is_self_contained(study):
    _, out, _, _ = study
    text = (out / "index.html").read_text()
    assert "<script" not in text.lower() and "@import" not in text and "url(" not in text
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", text)
    sources = re.findall(r'<img src="([^"]+)"', text)
    assert len(sources) == 3 + 3  # Figure 1 twice, Figure 2, three qc.png embedded (qc_images_embedded=3)
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert text.count("(not embedded: see report.qc_images_embedded)") == len(TRAIN + VAL + TEST) - 1 - 3


def test_timings_table(study):
    _, out, _, _ = study
    table = pd.read_csv(out / "tables/timings.csv")
    get = table.set_index(["section", "quantity", "subject"])["value"]
    assert get[("Fine-tuning", "seconds per epoch", "ct")] == pytest.approx(12.0)
    assert get[("Fine-tuning", "best epoch", "ct")] == 2
    assert get[("Fine-tuning", "best epoch", "multimodal")] == 1  # a tie: the first epoch with the lowest loss
    assert get[("nnU-Net", "seconds per epoch", "box")] == pytest.approx(25.0)
    assert get[
        ("LiteMedSAM inference", "decoder milliseconds per box", LABELS["litemedsam_finetuned_ct"])
    ] == pytest.approx(70.0)
    n = len(TRAIN + VAL + TEST)
    assert get[("Per patient", "seconds per patient", "CT and RTSTRUCT import")] == pytest.approx(
        np.mean(1.0 + np.arange(n))
    )
    assert get[("Whole jobs", "wall seconds", "finetune_litemedsam ct")] == pytest.approx(40.5)
    paper_rows = table.dropna(subset=["paper_text"])
    assert set(paper_rows["quantity"]) == {
        "seconds per epoch",
        "best epoch",
        "seconds per box per slice (encoder + decoder)",
    }
    assert set(paper_rows.loc[paper_rows["quantity"] == "seconds per epoch", "paper_device"]) == {"2 NVIDIA A40 GPUs"}


def test_registration_qc_table(study):
    inputs, out, _, _ = study
    table = pd.read_csv(out / "tables/registration_qc.csv")
    assert len(table) == 2 * len(inputs.qc)
    v01 = table[(table["patient"] == "V01")].set_index("mr")
    assert v01.loc["T2w", "status"] == "flagged" and v01.loc["T1w", "status"] == "ok"
    assert v01.loc["T2w", "flags"] == "similarity_worse"
    i = list(inputs.qc).index("V01")
    assert v01.loc["T1w", ["tre_before_mm", "tre_rigid_mm", "tre_syn_mm"]].tolist() == [10.0 + i, 1.5 + i, 1.0 + i]
    assert qc.flagged_patients(table) == ["V01"]
    page = Tables((out / "index.html").read_text())
    flagged = [row for row in page.tables["table-qc"] if row and row[0][2] == "V01"]
    assert len(flagged) == 2
    text = (out / "index.html").read_text()
    assert text.index("<summary>V01: qc.png</summary><img") < text.index("<summary>R01: qc.png")  # flagged first


def test_cohort_tables(study):
    _, out, _, _ = study
    subsets = pd.read_csv(out / "tables/cohort_subsets.csv").set_index("subset")
    assert subsets.loc["train", ["patients", "in_ct", "in_multimodal", "in_nnunet", "left_out_of_some"]].tolist() == [
        2,
        2,
        1,
        1,
        1,
    ]
    assert subsets.loc["all", "patients"] == len(TRAIN + VAL + TEST)
    targets = pd.read_csv(out / "tables/cohort_targets.csv").set_index("subset")
    assert targets.loc["test", ["with_gtvt", "with_gtvn", "gtvn_instances"]].tolist() == [7, 6, 6]
    assert targets.loc["test", "targets_2d"] == 7 * 4 + 6 * 2  # GTV-T on 4 slices, GTV-N on 2
    methods = pd.read_csv(out / "tables/cohort_methods.csv").set_index("method")
    assert methods.loc[NO_ROWS, ["runs", "reason"]].tolist() == [False, NOT_RUN_REASON]
    assert methods["runs"].sum() == len(SHIFTS)
    left = pd.read_csv(out / "tables/cohort_left_out.csv")
    assert left.to_dict("records") == [
        {
            "patient": "R02",
            "subset": "train",
            "missing": "multimodal,nnunet",
            "reason": "no T1w series (import_mri): multimodal and nnU-Net need it",
        }
    ]


def test_provenance(study):
    _, out, _, _ = study
    record = json.loads((out / "provenance.json").read_text())
    assert record["code"]["hnseg"] and record["code"]["commit"] and isinstance(record["code"]["dirty"], bool)
    assert record["seeds"] == {"split.seed": 11, "prompts.seed": 2024, "report.seed": 7}
    assert record["config"] == CONFIG and record["devices"] == ["cpu"]
    assert record["packages"]["seaborn"] == "0.13.2"
    digests = {Path(c["path"]).name + c["checkpoint"]: c["sha256"] for c in record["checkpoints"]}
    assert len(digests) == 1 + 2 + 2
    for c in record["checkpoints"]:
        assert c["sha256"] == hashlib.sha256(Path(c["path"]).read_bytes()).hexdigest()
    assert any(
        c["sha256"] == "79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76" for c in record["checkpoints"]
    )
    assert pd.read_csv(out / "tables/checkpoints.csv")["sha256"].tolist() == [
        c["sha256"] for c in record["checkpoints"]
    ]
    text = (out / "index.html").read_text()
    assert record["code"]["commit"] in text and "bootstrap_resamples: 2000" in text


def test_published_values_name_their_source():
    published = paper.published()
    assert "stats_plot.ipynb" in published.dsc_source and "n = 97" in published.dsc_source
    assert "arXiv:2402.17454" in published.citation
    assert set(published.dsc["method"]) == set(METHODS)
    assert (published.dsc["n"] == 97).all()


def test_provenance_seeds_skip_absent_sections():
    assert provenance.seeds({"split": {"seed": 1}, "litemedsam": {"finetune": {"seed": 3}}}) == {
        "split.seed": 1,
        "litemedsam.finetune.seed": 3,
    }


def test_cohort_table_must_cover_the_split(tmp_path):
    split = tmp_path / "split.tsv"
    split.write_text("patient\tsubset\nA\ttrain\nB\ttest\n")
    partial = tmp_path / "cohort.tsv"
    partial.write_text("patient\tsubset\tbranches\treason\nA\ttrain\tct\t\n")
    with pytest.raises(ValueError, match=r"lacks patients of .*: B"):
        cohort.read_cohort(split, partial)


def test_timings_of_an_empty_history(tmp_path):
    history = tmp_path / "history.csv"
    history.write_text("epoch,train_loss,val_dice_loss,lr,seconds\n")
    table = timings.timings_table({"ct": history}, {}, {}, {}, {})
    assert table["detail"].tolist() == ["no epoch recorded"]


def test_a_ct_only_study_builds_and_says_why_there_is_no_case(study, tmp_path):
    """Only the CT-only methods ran: no registration QC, no multimodal shards, no fine-tuned multimodal DSC."""
    inputs, _, _, _ = study
    ct_only = [m for m in inputs.metrics if m.endswith("_ct")]
    plans = [
        MethodPlan(m, method_branch(m)[0], m in ct_only, 2, 2, 9, "" if m in ct_only else "no val/test patient")
        for m in METHODS
    ]
    methods_tsv = tmp_path / "methods.tsv"
    write_method_plans(plans, methods_tsv)
    reduced = ReportInputs(
        metrics={m: inputs.metrics[m] for m in ct_only}, split=inputs.split, cohort=inputs.cohort, methods=methods_tsv,
        prompts=inputs.prompts, shards={"ct": inputs.shards["ct"]}, references=inputs.references,
        predictions={m: inputs.predictions[m] for m in ct_only}, histories={"ct": inputs.histories["ct"]},
        litemedsam_timings={m: inputs.litemedsam_timings[m] for m in ct_only}, benchmarks={"import_ct": inputs.benchmarks["import_ct"]},
        checkpoints={"ct": inputs.checkpoints["ct"]},
    )  # fmt: skip
    out = tmp_path / "report"
    build_report(reduced, out, ReportOptions(bootstrap_resamples=200))
    text = html.unescape((out / "index.html").read_text())
    assert "No case figure: litemedsam_finetuned_multimodal has no test GTV-T DSC." in text
    assert f"{LABELS['nnunet_box']} (did not run: no val/test patient)" in text
    assert len(pd.read_csv(out / "tables/registration_qc.csv")) == 0
    assert (
        pd.read_csv(out / "tables/main_test.csv")
        .set_index(["method", "target"])
        .loc[("litemedsam_finetuned_ct", "GTV-T"), "n"]
        == 7
    )
