"""The report page: one self-contained HTML file (images as data URIs, inline CSS, no script, nothing fetched).

Cells of this run's results carry class "ours", the published values class "paper" under a heading naming the
paper; every cell has a ``data-field`` naming its column, so that tests and readers can trace a number to its CSV.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from html import escape
from typing import Any

import pandas as pd

from hnseg.report.methods import SUBSET_NAMES, label
from hnseg.report.paper import Published

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #1b1b1b;
       max-width: 1180px; margin: 0 auto; padding: 1.2em 1.6em 4em; background: #fff; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { font-size: 1.25em; margin-top: 2.2em; border-bottom: 1px solid #ccc; }
h3 { font-size: 1.05em; margin-top: 1.6em; }
nav ol { columns: 2; font-size: 0.95em; } .meta { color: #555; }
table { border-collapse: collapse; margin: 0.6em 0 0.4em; font-size: 0.9em; }
th, td { border: 1px solid #d0d0d0; padding: 0.25em 0.55em; vertical-align: top; }
th { background: #f2f2f2; text-align: center; } td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
th.paper, td.paper { background: #fff6e0; } th.ours { background: #e8f0fb; }
td[data-field="sha256"], td[data-field="path"] { font-family: monospace; font-size: 0.85em; word-break: break-all; }
td.missing { color: #888; font-style: italic; } tr.flagged td { background: #fde8e8; }
.note { font-size: 0.88em; color: #444; max-width: 60em; } sup { font-size: 0.75em; }
figure { margin: 1em 0 1.6em; } figure img { max-width: 100%; height: auto; border: 1px solid #e0e0e0; }
figcaption { font-size: 0.9em; color: #333; max-width: 62em; margin-top: 0.4em; }
details { margin: 0.3em 0; } summary { cursor: pointer; } pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto;
       font-size: 0.82em; max-height: 32em; } code { font-size: 0.92em; }
"""

DASH = "\u2014"
PM = "\u00b1"


# --------------------------------------------------------------------------------------------------- formatting


def isnan(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def number(value: Any, digits: int) -> str:
    return DASH if isnan(value) else f"{float(value):.{digits}f}"


def mean_sd(mean: Any, sd: Any, digits: int) -> str:
    if isnan(mean):
        return DASH
    return f"{float(mean):.{digits}f} {PM} {number(sd, digits)}"


def pvalue(value: Any) -> str:
    if isnan(value):
        return DASH
    return "<0.0001" if value < 1e-4 else f"{value:.4f}"


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


# --------------------------------------------------------------------------------------------------- elements


@dataclass
class Cell:
    text: str
    field: str = ""
    cls: str = ""
    colspan: int = 1
    rowspan: int = 1
    header: bool = False
    raw: bool = False  # text is already HTML


def cell_html(c: Cell) -> str:
    tag = "th" if c.header else "td"
    attrs = []
    if c.cls:
        attrs.append(f'class="{escape(c.cls)}"')
    if c.field:
        attrs.append(f'data-field="{escape(c.field)}"')
    if c.colspan > 1:
        attrs.append(f'colspan="{c.colspan}"')
    if c.rowspan > 1:
        attrs.append(f'rowspan="{c.rowspan}"')
    body = c.text if c.raw else escape(c.text)
    return f"<{tag}{' ' if attrs else ''}{' '.join(attrs)}>{body}</{tag}>"


def table_html(table_id: str, head: Sequence[Sequence[Cell]], body: Iterable[tuple[str, Sequence[Cell]]]) -> str:
    """A table: header rows of Cells, body rows as (row class, Cells)."""
    lines = [f'<table id="{escape(table_id)}">', "<thead>"]
    lines += ["<tr>" + "".join(cell_html(c) for c in row) + "</tr>" for row in head]
    lines.append("</thead><tbody>")
    for row_cls, cells in body:
        cls = f' class="{escape(row_cls)}"' if row_cls else ""
        lines.append(f"<tr{cls}>" + "".join(cell_html(c) for c in cells) + "</tr>")
    lines.append("</tbody></table>")
    return "\n".join(lines)


BRANCH_HEADINGS = {"ct": "CT-only branch", "multimodal": "Multimodal branch", "nnunet": "nnU-Net branch"}


def _branch_headings(frame: pd.DataFrame) -> dict[str, str]:
    """{in_<branch>: heading} of a cohort table's branch columns, in their order (a fusion of the study's own config
    is headed by its name)."""
    return {
        c: BRANCH_HEADINGS.get(c.removeprefix("in_"), f"{c.removeprefix('in_')} branch")
        for c in frame.columns
        if c.startswith("in_")
    }


def simple_table(
    table_id: str, frame: pd.DataFrame, headers: dict[str, str], digits: dict[str, int] | None = None
) -> str:
    """A table of the given columns of a frame ({column: heading}); numbers with `digits` decimals."""
    digits = digits or {}
    head = [[Cell(h, header=True) for h in headers.values()]]
    body = []
    for row in frame.to_dict("records"):
        cells = []
        for column in headers:
            value = row[column]
            if column in digits:
                cells.append(Cell(number(value, digits[column]), column, "num ours"))
            elif isinstance(value, bool):
                cells.append(Cell("yes" if value else "no", column))
            elif isinstance(value, int | float) and not isinstance(value, bool):
                cells.append(Cell(DASH if isnan(value) else str(value), column, "num"))
            else:
                cells.append(Cell(DASH if isnan(value) else str(value), column))
        body.append(("", cells))
    return table_html(table_id, head, body)


@dataclass
class EmbeddedFigure:
    figure_id: str
    png: bytes
    alt: str
    caption: str
    files: list[str] = field(default_factory=list)  # relative paths of the PNG, SVG and CSV beside the page

    def html(self) -> str:
        links = ", ".join(f'<a href="{escape(f)}">{escape(f.rsplit("/", 1)[-1])}</a>' for f in self.files)
        files = f" Files: {links}." if links else ""
        return (
            f'<figure id="{escape(self.figure_id)}"><img src="{data_uri(self.png)}" alt="{escape(self.alt)}">'
            f"<figcaption>{escape(self.caption)}{files}</figcaption></figure>"
        )


# --------------------------------------------------------------------------------------------------- sections


def main_table_html(table: pd.DataFrame, subset: str, paper: Published) -> str:
    """The main table of a subset: ours (n, DSC, HD95) and, for the paper's subset, the published DSC beside it."""
    with_paper = "paper_dsc_mean" in table
    name = SUBSET_NAMES.get(subset, subset)
    ours = [
        "n",
        "DSC mean " + PM + " SD",
        "HD95 mm mean " + PM + " SD",
        "HD95 mm median",
        "worst-case HD95",
        "both empty (excluded)",
    ]
    head = [
        [
            Cell("Method", rowspan=2, header=True),
            Cell("Target", rowspan=2, header=True),
            Cell(f"This run, {name} subset", cls="ours", colspan=len(ours), header=True),
        ]
    ]
    if with_paper:
        head[0].append(Cell(f"{paper.label}, {paper.dsc_subset} subset", cls="paper", header=True))
    head.append([Cell(h, cls="ours", header=True) for h in ours])
    if with_paper:
        head[1].append(Cell("DSC mean " + PM + " SD (n)", cls="paper", header=True))
    marks = {note: "\u2020" * (i + 1) for i, note in enumerate(paper.notes)}
    body = []
    for row in table.to_dict("records"):
        no_rows = row["n"] + row["n_excluded"] == 0
        cells = [
            Cell(
                label(row["method"]) + (f" ({row['note']})" if no_rows else ""), "method", "missing" if no_rows else ""
            ),
            Cell(row["target"], "target"),
            Cell(str(row["n"]), "n", "num ours"),
            Cell(mean_sd(row["dsc_mean"], row["dsc_sd"], 3), "dsc_mean_sd", "num ours"),
            Cell(mean_sd(row["hd95_mm_mean"], row["hd95_mm_sd"], 2), "hd95_mm_mean_sd", "num ours"),
            Cell(number(row["hd95_mm_median"], 2), "hd95_mm_median", "num ours"),
            Cell(str(row["n_hd95_worst_case"]), "n_hd95_worst_case", "num ours"),
            Cell(str(row["n_excluded"]), "n_excluded", "num ours"),
        ]
        if with_paper:
            if isnan(row["paper_dsc_mean"]):
                cells.append(Cell(DASH, "paper_dsc", "num paper"))
            else:
                mark = marks.get(row["paper_note"], "")
                text = f"{mean_sd(row['paper_dsc_mean'], row['paper_dsc_sd'], 2)} (n = {row['paper_n']})"
                cells.append(
                    Cell(escape(text) + (f"<sup>{mark}</sup>" if mark else ""), "paper_dsc", "num paper", raw=True)
                )
        body.append(("", cells))
    notes = [
        "n: cases in the statistics. A case whose ground truth and prediction are both empty is left out and counted "
        "(both empty). Where exactly one of them is empty, DSC is 0 and HD95 is the image diagonal (worst case). "
        "SD with n - 1; none for n = 1. Numbers from the per-patient tables in results/metrics, equal to "
        "results/metrics/summary.csv."
    ]
    if with_paper:
        notes.append(f"{paper.label}: {paper.dsc_source} {paper.citation}.")
        notes += [f"{marks[key]} {text}" for key, text in paper.notes.items()]
    else:
        notes.append(
            f"The paper reports the {paper.dsc_subset} subset only; its values stand beside the {paper.dsc_subset} table."
        )
    return table_html(f"table-main-{subset}", head, body) + "".join(f'<p class="note">{escape(n)}</p>' for n in notes)


def claims_html(claims: pd.DataFrame, resamples: int, seed: int, min_pairs: int, level: float) -> str:
    head = [[Cell(h, header=True) for h in (
        "Claim", "Difference", "Target", "n pairs", "Median DSC difference",
        f"{round(100 * level)} % bootstrap interval", "Wilcoxon p", "Holm p",
    )]]  # fmt: skip
    body = []
    for row in claims.to_dict("records"):
        cells = [
            Cell(row["claim"], "claim"),
            Cell(f"{label(row['method_a'])} minus {label(row['method_b'])}", "difference"),
            Cell(row["target"], "target"),
            Cell(str(row["n_pairs"]), "n_pairs", "num ours"),
            Cell(number(row["median_difference"], 3), "median_difference", "num ours"),
            Cell(DASH if isnan(row["ci_low"]) else f"[{row['ci_low']:.3f}, {row['ci_high']:.3f}]", "ci", "num ours"),
        ]
        if isnan(row["wilcoxon_p"]):
            cells.append(Cell(row["note"] or DASH, "p", "missing", colspan=2))
        else:
            cells += [
                Cell(pvalue(row["wilcoxon_p"]), "wilcoxon_p", "num ours"),
                Cell(pvalue(row["holm_p"]), "holm_p", "num ours"),
            ]
        body.append(("", cells))
    n_tested = int(claims["wilcoxon_p"].notna().sum())
    note = (
        f"Paired per patient (test subset); difference = DSC of the first method minus DSC of the second, so a "
        f"positive value favours the first. Interval: percentile bootstrap of the median over patients, {resamples:,} "
        f"resamples, seed {seed}. Wilcoxon: two-sided signed-rank test (scipy). Holm: step-down correction over the "
        f"{n_tested} rows with a p-value (every comparison and target of this table). Fewer than {min_pairs} pairs: "
        "no interval and no test (too few pairs)."
    )
    return table_html("table-claims", head, body) + f'<p class="note">{escape(note)}</p>'


def timings_html(timings: pd.DataFrame, paper: Published, machine: dict, devices: list[str]) -> str:
    head = [
        [Cell("Stage", rowspan=2, header=True), Cell("Quantity", rowspan=2, header=True), Cell("What", rowspan=2, header=True),
         Cell("This run", cls="ours", colspan=4, header=True), Cell(paper.label, cls="paper", colspan=2, header=True)],
        [*(Cell(h, cls="ours", header=True) for h in ("value", "n", "detail", "device")),
         Cell("value", cls="paper", header=True), Cell("device", cls="paper", header=True)],
    ]  # fmt: skip
    body = []
    for row in timings.to_dict("records"):
        digits = (
            0
            if row["unit"] == "epoch"
            else (1 if row["unit"] == "ms" or (not isnan(row["value"]) and row["value"] >= 10) else 3)
        )
        cells = [
            Cell(row["section"], "section"), Cell(row["quantity"], "quantity"), Cell(row["subject"], "subject"),
            Cell(f"{number(row['value'], digits)} {row['unit']}", "value", "num ours"), Cell(str(row["n"]), "n", "num ours"),
            Cell(row["detail"] or "", "detail"), Cell(row["device"] or "", "device"),
            Cell("" if isnan(row["paper_text"]) else str(row["paper_text"]), "paper_value", "paper"),
            Cell("" if isnan(row["paper_device"]) else str(row["paper_device"]), "paper_device", "paper"),
        ]  # fmt: skip
        body.append(("", cells))
    gpus = ", ".join(machine.get("gpus") or []) or "none"
    note = (
        f"This run's device: {', '.join(devices) or 'not recorded'}; machine of the report job: {machine.get('cpu')}, "
        f"{machine.get('cpu_count')} logical CPUs, GPUs: {gpus}. {paper.label}: {paper.timings_source}"
    )
    return table_html("table-timings", head, body) + f'<p class="note">{escape(note)}</p>'


def qc_html(qc: pd.DataFrame, images: Sequence[tuple[str, bytes | None, str]]) -> str:
    """The QC table and the qc.png pictures: (patient, PNG bytes to embed or None, relative link)."""
    has_truth = bool(qc[["tre_before_mm", "tre_rigid_mm", "tre_syn_mm"]].notna().any().any()) if len(qc) else False
    columns = {"patient": "Patient", "mr": "MR", "status": "Status", "initialisation": "Start"}
    if has_truth:
        columns |= {
            "tre_before_mm": "TRE before (mm)",
            "tre_rigid_mm": "TRE rigid (mm)",
            "tre_syn_mm": "TRE SyN (mm)",
            "tre_syn_max_mm": "TRE SyN max (mm)",
        }
    columns |= {
        "mi_before": "MI before",
        "mi_rigid": "MI rigid",
        "mi_syn": "MI SyN",
        "overlap_registered": "Body overlap",
        "flags": "Flags",
    }
    digits = {
        "tre_before_mm": 2,
        "tre_rigid_mm": 2,
        "tre_syn_mm": 2,
        "tre_syn_max_mm": 2,
        "mi_before": 3,
        "mi_rigid": 3,
        "mi_syn": 3,
        "overlap_registered": 2,
    }
    head = [[Cell(h, header=True) for h in columns.values()]]
    body = []
    for row in qc.to_dict("records"):
        cells = [
            Cell(number(row[c], digits[c]), c, "num ours")
            if c in digits
            else Cell(str(row[c]) if not isnan(row[c]) else DASH, c)
            for c in columns
        ]
        body.append(("flagged" if row["status"] == "flagged" else "", cells))
    note = (
        (
            "TRE: mean target registration error over the truth landmarks, mapped from the CT to the MR (synthetic "
            "cohort only). "
            if has_truth
            else "No truth landmarks in this cohort: similarity only. "
        )
        + "MI: mutual information with the CT on the CT body, before registration (scanner coordinates), after the rigid stage and after SyN."
    )
    pictures = []
    for patient, png, link in images:
        if png is not None:
            inner = f'<img src="{data_uri(png)}" alt="registration QC of {escape(patient)}">'
        else:
            inner = f'<a href="{escape(link)}">{escape(link)}</a> (not embedded: see report.qc_images_embedded)'
        pictures.append(f"<details><summary>{escape(patient)}: qc.png</summary>{inner}</details>")
    return table_html("table-qc", head, body) + f'<p class="note">{escape(note)}</p>' + "\n".join(pictures)


@dataclass
class Page:
    title: str
    paper: Published
    main_tables: dict[str, pd.DataFrame]
    figure1: list[EmbeddedFigure]
    case_figure: EmbeddedFigure | None
    case_text: str
    claims: pd.DataFrame
    claims_options: dict
    timings: pd.DataFrame
    qc: pd.DataFrame
    qc_images: list[tuple[str, bytes | None, str]]
    cohort_subsets: pd.DataFrame
    cohort_targets: pd.DataFrame
    cohort_left_out: pd.DataFrame
    cohort_methods: pd.DataFrame
    cohort_note: str
    provenance: dict
    checkpoints: pd.DataFrame
    config_yaml: str
    tables_dir: str = "tables"
    extra_sections: list[tuple[str, str, str]] = field(default_factory=list)  # (key, title, HTML) after the rest


SECTIONS = (
    ("main-table", "Main table: test subset"),
    ("validation-table", "Validation subset"),
    ("figure-1", "Figure 1: DSC and HD95 per patient"),
    ("figure-2", "Figure 2: the median case"),
    ("claims", "The paper's claims, tested"),
    ("timings", "Timings"),
    ("registration-qc", "Registration QC"),
    ("cohort", "Cohort"),
    ("provenance", "Provenance"),
)


def _csv_link(page: Page, name: str) -> str:
    path = f"{page.tables_dir}/{name}"
    return f'<p class="note">CSV: <a href="{escape(path)}">{escape(path)}</a></p>'


def render(page: Page) -> str:
    prov = page.provenance
    code = prov["code"]
    dirty = {True: f"with changes to {code['changed_files']} tracked file(s)", False: "clean", None: "unknown"}[
        code["dirty"]
    ]
    sections = [*SECTIONS, *((key, title) for key, title, _ in page.extra_sections)]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(page.title)}</title><style>{CSS}</style></head><body>",
        f"<header><h1>{escape(page.title)}</h1>",
        f'<p class="meta">Report made {escape(prov["date"])} with hnseg {escape(code["hnseg"])}, commit '
        f"{escape(str(code['commit']))} ({escape(dirty)}); devices: {escape(', '.join(prov['devices']) or 'not recorded')}. "
        f"Published values are labelled “{escape(page.paper.label)}” and never share a column with this run’s.</p>",
        "<nav><ol>" + "".join(f'<li><a href="#{k}">{escape(t)}</a></li>' for k, t in sections) + "</ol></nav></header>",
    ]
    titles = dict(sections)

    def section(key: str, body: str) -> None:
        parts.append(f'<section id="{key}"><h2>{escape(titles[key])}</h2>{body}</section>')

    subsets = list(page.main_tables)
    first, rest = subsets[0], subsets[1:]
    section(
        "main-table", main_table_html(page.main_tables[first], first, page.paper) + _csv_link(page, f"main_{first}.csv")
    )
    section(
        "validation-table",
        "".join(main_table_html(page.main_tables[s], s, page.paper) + _csv_link(page, f"main_{s}.csv") for s in rest)
        or '<p class="note">No other subset was evaluated.</p>',
    )
    section("figure-1", "".join(f.html() for f in page.figure1))
    section(
        "figure-2",
        page.case_figure.html() if page.case_figure is not None else f'<p class="note">{escape(page.case_text)}</p>',
    )
    section("claims", claims_html(page.claims, **page.claims_options) + _csv_link(page, "claims.csv"))
    section(
        "timings",
        timings_html(page.timings, page.paper, prov["machine"], prov["devices"]) + _csv_link(page, "timings.csv"),
    )
    section("registration-qc", qc_html(page.qc, page.qc_images) + _csv_link(page, "registration_qc.csv"))
    cohort = (
        f'<p class="note">{escape(page.cohort_note)}</p><h3>Patients per subset and branch</h3>'
        + simple_table("table-cohort-subsets", page.cohort_subsets, {
            "subset": "Subset", "patients": "Patients", **_branch_headings(page.cohort_subsets),
            "left_out_of_some": "Left out of some", "left_out_of_all": "Left out of all"})
        + _csv_link(page, "cohort_subsets.csv")
        + "<h3>Targets per subset</h3>"
        + simple_table("table-cohort-targets", page.cohort_targets, {
            "subset": "Subset", "patients_with_prompts": "Patients with prompts", "with_gtvt": "With GTV-T",
            "with_gtvn": "With GTV-N", "gtvn_instances": "GTV-N instances (3D)", "targets_2d": "2D targets (box prompts)"})
        + _csv_link(page, "cohort_targets.csv")
        + "<h3>Patients left out, and why</h3>"
        + (simple_table("table-cohort-left-out", page.cohort_left_out, {"patient": "Patient", "subset": "Subset", "missing": "Left out of", "reason": "Why"})
           if len(page.cohort_left_out) else '<p class="note">None: every patient is in every branch.</p>')
        + _csv_link(page, "cohort_left_out.csv")
        + "<h3>Methods: patients and whether they ran</h3>"
        + (
            simple_table(
                "table-cohort-methods",
                page.cohort_methods,
                {"method": "Method", "branch": "Branch", "runs": "Ran", "n_train": "Train", "n_val": "Val",
                 "n_evaluated": "Evaluated", "inputs": "Reads", "reason": "Why not"},
            )
            if len(page.cohort_methods)
            else '<p class="note">No method table (results/methods.tsv) was given.</p>'
        )
        + _csv_link(page, "cohort_methods.csv")
    )  # fmt: skip
    section("cohort", cohort)
    seeds = pd.DataFrame({"key": list(prov["seeds"]), "seed": list(prov["seeds"].values())})
    packages = pd.DataFrame({"package": list(prov["packages"]), "version": list(prov["packages"].values())})
    machine = prov["machine"]
    provenance = (
        f"<p>hnseg {escape(code['hnseg'])}, commit <code>{escape(str(code['commit']))}</code> ({escape(dirty)} at report time). "
        f"Machine of the report job: {escape(str(machine['platform']))}, Python {escape(str(machine['python']))}, "
        f"{escape(str(machine['cpu']))}, {machine['cpu_count']} logical CPUs, GPUs: {escape(', '.join(machine['gpus']) or 'none')}. "
        f"Devices of the runs: {escape(', '.join(prov['devices']) or 'not recorded')}. Date: {escape(prov['date'])}.</p>"
        "<h3>Checkpoints</h3>"
        + simple_table("table-checkpoints", page.checkpoints, {"checkpoint": "Checkpoint", "path": "Path", "bytes": "Bytes", "sha256": "SHA-256"})
        + "<h3>Seeds</h3>"
        + (simple_table("table-seeds", seeds, {"key": "Config key", "seed": "Seed"}) if len(seeds) else '<p class="note">No seed in the config given.</p>')
        + "<h3>Packages</h3>" + simple_table("table-packages", packages, {"package": "Package", "version": "Version"})
        + f"<h3>Config as it ran</h3><pre>{escape(page.config_yaml)}</pre>"
        + '<p class="note">JSON: <a href="provenance.json">provenance.json</a></p>'
    )  # fmt: skip
    section("provenance", provenance)
    for key, _, body in page.extra_sections:
        section(key, body)
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
