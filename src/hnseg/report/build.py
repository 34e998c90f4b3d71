"""The report from explicit paths: :func:`build_report` writes ``index.html``, ``provenance.json``, the tables as
CSV in ``tables/`` and the figures as PNG, SVG and the CSV of what they plot in ``figures/`` (:data:`OUTPUTS`)."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field, fields
from os import PathLike
from pathlib import Path
from typing import Any

import pandas as pd

from hnseg.report import case as case_figure
from hnseg.report import cohort, figures, provenance, qc, stats, tables, timings
from hnseg.report.html import EmbeddedFigure, Page, render
from hnseg.report.methods import METHODS, SUBSET_NAMES, ordered
from hnseg.report.paper import published
from hnseg.report.scores import read_metric_tables

log = logging.getLogger(__name__)

FilePath = str | PathLike[str]
SUBSETS = ("test", "val")
OUTPUTS = (
    "index.html",
    "provenance.json",
    *(f"tables/{name}.csv" for name in (
        "main_test", "main_val", "claims", "timings", "registration_qc", "cohort_subsets", "cohort_targets",
        "cohort_left_out", "cohort_methods", "checkpoints",
    )),
    *(f"figures/figure1_{s}.{ext}" for s in SUBSETS for ext in ("png", "svg", "csv")),
    *(f"figures/figure2_case.{ext}" for ext in ("png", "svg", "csv")),
    "figures/figure2_case_selection.csv",
)  # fmt: skip
"""Every file :func:`build_report` writes, relative to its output folder (the rule's outputs)."""


@dataclass
class ReportInputs:
    """Every input file, by role. Per-patient files are {patient: path}; the case figure's are those of the test
    patients (only the chosen one is read)."""

    metrics: dict[str, FilePath]  # {method: results/metrics/{method}.csv}
    split: FilePath  # results/split.tsv
    summary: FilePath | None = None  # results/metrics/summary.csv (checked against the per-patient tables)
    cohort: FilePath | None = None  # results/cohort.tsv
    methods: FilePath | None = None  # results/methods.tsv (which methods ran, and why the others did not)
    published: FilePath | None = None  # the published values (default: the package's paper_ren2024.json)
    prompts: dict[str, FilePath] = field(default_factory=dict)  # {patient: results/prompts/{p}.json}
    shards: dict[str, dict[str, FilePath]] = field(default_factory=dict)  # {fusion: {patient: npz}}
    references: dict[str, FilePath] = field(default_factory=dict)  # {patient: results/imported/{p}/labels.nii.gz}
    predictions: dict[str, dict[str, FilePath]] = field(default_factory=dict)  # {method: {patient: nii.gz}}
    histories: dict[str, FilePath] = field(default_factory=dict)  # {fusion: history.csv}
    litemedsam_timings: dict[str, FilePath] = field(default_factory=dict)  # {method: timings.json}
    nnunet_trainings: dict[str, FilePath] = field(default_factory=dict)  # {variant: training.json}
    nnunet_timings: dict[str, FilePath] = field(default_factory=dict)  # {method: timings.json}
    benchmarks: dict[str, dict[str, FilePath]] = field(default_factory=dict)  # {rule: {key: tsv}}
    qc: dict[str, FilePath] = field(default_factory=dict)  # {patient: qc.json}
    qc_png: dict[str, FilePath] = field(default_factory=dict)  # {patient: qc.png}
    checkpoints: dict[str, FilePath] = field(default_factory=dict)  # {name: fine-tuned checkpoint}
    margin_study: dict[str, FilePath] = field(default_factory=dict)  # {summary, figure} when the study ran
    propagation_study: dict[str, FilePath] = field(default_factory=dict)  # {summary} when the study ran

    @classmethod
    def from_mapping(cls, mapping: dict[str, Any]) -> ReportInputs:
        """From a plain dict of the same keys (the rule's params); unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(mapping) - known)
        if unknown:
            raise ValueError(
                f"unknown report inputs: {', '.join(unknown)} (expected some of {', '.join(sorted(known))})"
            )
        return cls(**mapping)


@dataclass
class ReportOptions:
    bootstrap_resamples: int = 10_000
    seed: int = 2024
    min_pairs: int = 6
    ci_level: float = 0.95
    qc_images_embedded: int = 24
    figure_dpi: int = 150
    config: dict = field(default_factory=dict)  # the workflow's config as it ran (provenance)


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)


def _figure1_caption(subset: str, n_patients: int) -> str:
    name = SUBSET_NAMES.get(subset, subset)
    return (
        f"Figure 1, {name} subset ({n_patients} patients with rows). Per-patient DSC (top) and HD95 (bottom) of GTV-T "
        "(left) and GTV-N (right) per method, in the paper's order (ZS zero-shot, FT fine-tuned, CT CT-only, MM "
        "multimodal); violins with quartiles, every patient a point, a cross where one mask is empty (DSC 0, HD95 "
        "the image diagonal). n above each method; a method with no rows, or one, leaves a labelled gap."
    )


def _case(inputs: ReportInputs, scores: pd.DataFrame, out: Path, dpi: int) -> tuple[EmbeddedFigure | None, str]:
    """Figure 2 and its CSVs; without a qualifying patient the figure says why."""
    import matplotlib.pyplot as plt

    choice = case_figure.pick_case(scores)
    text = case_figure.rule_text(choice)
    _write_csv(choice.candidates, out / "figures/figure2_case_selection.csv")
    stem = out / "figures/figure2_case"
    if choice.patient is None:
        fig, ax = plt.subplots(figsize=(6, 1.2))
        ax.axis("off")
        ax.text(0.5, 0.5, f"No case figure: {choice.reason}", ha="center", va="center", wrap=True)
        figures.save_figure(fig, stem, dpi)
        _write_csv(pd.DataFrame(columns=["patient", "panel", "layer"]), stem.with_suffix(".csv"))
        return None, text
    p = choice.patient
    predictions = {m: files[p] for m, files in inputs.predictions.items() if m.startswith("litemedsam_") and p in files}
    shards = {fusion: files[p] for fusion, files in inputs.shards.items() if p in files}
    fig, data = case_figure.case_figure(choice, scores, shards, inputs.prompts[p], inputs.references[p], predictions)
    figures.save_figure(fig, stem, dpi)
    _write_csv(data, stem.with_suffix(".csv"))
    z = int(data["slice"].iloc[0])
    truth = data[data["layer"] == "ground truth"].groupby("target")["pixels"].max()
    absent = [t for t in ("GTV-T", "GTV-N") if truth.get(t, 0) == 0]
    text += f" {' and '.join(absent)} {'is' if len(absent) == 1 else 'are'} not on this slice." if absent else ""
    caption = f"Figure 2. {text} Axial slice {z}. Left: the input and its box prompts; middle: zero-shot; right: fine-tuned; ground truth solid, prediction dashed, GTV-T red, GTV-N yellow."
    files = [f"figures/figure2_case.{e}" for e in ("png", "svg", "csv")] + ["figures/figure2_case_selection.csv"]
    return EmbeddedFigure(
        "figure2-case", stem.with_suffix(".png").read_bytes(), f"case figure of {p}", caption, files
    ), text


def _qc_images(
    inputs: ReportInputs, qc_table: pd.DataFrame, out: Path, limit: int
) -> list[tuple[str, bytes | None, str]]:
    """Flagged patients first, then the others; the first `limit` embedded, the rest linked (relative path)."""
    flagged = qc.flagged_patients(qc_table)
    order = flagged + sorted(p for p in inputs.qc_png if p not in flagged)
    images = []
    for i, patient in enumerate(p for p in order if p in inputs.qc_png):
        path = Path(inputs.qc_png[patient])
        link = os.path.relpath(path.resolve(), out.resolve())
        images.append((patient, path.read_bytes() if i < limit else None, link))
    return images


def _checkpoints(inputs: ReportInputs) -> dict[str, FilePath]:
    found: dict[str, FilePath] = {}
    if any(m.startswith("litemedsam_") for m in inputs.metrics):
        found["LiteMedSAM official (lite_medsam.pth, zero-shot and fine-tuning start)"] = (
            provenance.official_litemedsam_checkpoint()
        )
    for fusion_or_name, path in inputs.checkpoints.items():
        found[f"LiteMedSAM fine-tuned, {fusion_or_name} (best.pth)"] = path
    for variant, path in inputs.nnunet_trainings.items():
        found[f"nnU-Net {variant} (checkpoint_final.pth)"] = provenance.nnunet_checkpoint(path)
    return found


def _prompt_study_sections(inputs: ReportInputs, out: Path, options: ReportOptions) -> list[tuple[str, str, str]]:
    """The prompt studies' sections (key, title, HTML), one per study that ran; writes their tables."""
    from hnseg.report import prompt_studies

    sections = []
    if inputs.margin_study:
        table = prompt_studies.margin_table(inputs.margin_study["summary"])
        _write_csv(table, out / "tables/margin_study.csv")
        body = prompt_studies.margin_section_html(table, inputs.margin_study["figure"], options.ci_level)
        sections.append((*prompt_studies.SECTION, body))
    if inputs.propagation_study:
        table = prompt_studies.propagation_table(inputs.propagation_study["summary"])
        _write_csv(table, out / "tables/propagation_study.csv")
        body = prompt_studies.propagation_section_html(table, options.ci_level)
        sections.append((*prompt_studies.PROPAGATION_SECTION, body))
    return sections


def build_report(inputs: ReportInputs, out_dir: FilePath, options: ReportOptions | None = None) -> list[Path]:
    """Write every file of :data:`OUTPUTS` into out_dir; returns their paths."""
    import yaml

    options = options or ReportOptions()
    out = Path(out_dir)
    (out / "tables").mkdir(parents=True, exist_ok=True)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    paper = published(inputs.published)
    scores = read_metric_tables(inputs.metrics)
    methods = ordered(set(METHODS) | set(inputs.metrics))
    plans = cohort.method_plans(inputs.methods)
    not_run = {p["method"]: p["reason"] for p in plans.to_dict("records") if not p["runs"]}

    main = {s: tables.main_table(scores, s, methods, paper, not_run) for s in SUBSETS}
    if inputs.summary is not None:
        tables.check_against_summary(list(main.values()), inputs.summary)
    for s, table in main.items():
        _write_csv(table, out / f"tables/main_{s}.csv")

    figure1 = []
    for s in SUBSETS:
        data = figures.violin_data(scores, s, methods)
        stem = out / f"figures/figure1_{s}"
        title = f"{SUBSET_NAMES.get(s, s).capitalize()} subset"
        figures.save_figure(figures.violin_figure(data, methods, title), stem, options.figure_dpi)
        _write_csv(data, stem.with_suffix(".csv"))
        figure1.append(
            EmbeddedFigure(
                f"figure1-{s}", stem.with_suffix(".png").read_bytes(), f"violin plots, {s} subset",
                _figure1_caption(s, data["patient"].nunique()), [f"figures/figure1_{s}.{e}" for e in ("png", "svg", "csv")],
            )
        )  # fmt: skip
    case, case_text = _case(inputs, scores, out, options.figure_dpi)

    claims = stats.claims_table(
        scores, "test", options.bootstrap_resamples, options.seed, options.min_pairs, options.ci_level
    )
    _write_csv(claims, out / "tables/claims.csv")

    timing = timings.timings_table(
        inputs.histories, inputs.litemedsam_timings, inputs.nnunet_trainings, inputs.nnunet_timings, inputs.benchmarks
    )
    _write_csv(timing, out / "tables/timings.csv")

    qc_table = qc.qc_table(inputs.qc)
    _write_csv(qc_table, out / "tables/registration_qc.csv")

    branches = cohort.study_branches(plans)
    members = cohort.read_cohort(inputs.split, inputs.cohort, branches)
    cohort_tables = {
        "cohort_subsets": cohort.patients_per_subset(members, branches),
        "cohort_targets": cohort.targets_per_subset(members, inputs.prompts),
        "cohort_left_out": cohort.left_out(members, branches),
        "cohort_methods": plans,
    }
    for name, table in cohort_tables.items():
        _write_csv(table, out / f"tables/{name}.csv")

    devices = timings.devices(
        *inputs.litemedsam_timings.values(), *inputs.nnunet_timings.values(), *inputs.nnunet_trainings.values()
    )
    record = provenance.collect(options.config, devices)
    checkpoints = provenance.checkpoint_table(_checkpoints(inputs))
    _write_csv(checkpoints, out / "tables/checkpoints.csv")
    record["checkpoints"] = checkpoints.to_dict("records")
    (out / "provenance.json").write_text(json.dumps(record, indent=1, default=str) + "\n", encoding="utf-8")

    page = Page(
        title="hnseg: Ren et al. 2024 reproduced, this run's report",
        paper=paper,
        main_tables=main,
        figure1=figure1,
        case_figure=case,
        case_text=case_text,
        claims=claims,
        claims_options={"resamples": options.bootstrap_resamples, "seed": options.seed, "min_pairs": options.min_pairs, "level": options.ci_level},
        timings=timing,
        qc=qc_table,
        qc_images=_qc_images(inputs, qc_table, out, options.qc_images_embedded),
        cohort_subsets=cohort_tables["cohort_subsets"],
        cohort_targets=cohort_tables["cohort_targets"],
        cohort_left_out=cohort_tables["cohort_left_out"],
        cohort_methods=plans,
        cohort_note=f"From {inputs.cohort}." if inputs.cohort else "No cohort table was given: every patient of the split is counted in every branch.",
        provenance=record,
        checkpoints=checkpoints,
        config_yaml=yaml.safe_dump(record["config"], sort_keys=False) if record["config"] else "(not given)",
    )  # fmt: skip
    page.extra_sections = _prompt_study_sections(inputs, out, options)
    (out / "index.html").write_text(render(page), encoding="utf-8")
    written = [out / name for name in OUTPUTS]
    missing = [str(p) for p in written if not p.is_file()]
    if missing:
        raise RuntimeError(f"the report did not write {', '.join(missing)}")
    log.info("report written to %s (%d files)", out, len(written))
    return written
