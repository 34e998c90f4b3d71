"""Stage report: the paper's table and figures from this run's results, with statistics, timings, QC, cohort and
provenance, as one self-contained HTML page plus CSV tables and PNG/SVG figures (DESIGN.md section 3.11).

One concern per module; import the one you need (``hnseg.report.build`` is the entry point):

- ``methods``: the evaluated methods in the paper's order, their labels, the targets and subsets.
- ``paper``: the published values (package data ``paper_ren2024.json``, which names its sources).
- ``scores``: the per-patient metric tables of the evaluate stage, read into one frame.
- ``tables``: the main table per subset (ours beside the paper's), checked against ``results/metrics/summary.csv``.
- ``stats``: the paper's claims tested: paired DSC differences, bootstrap interval, Wilcoxon, Holm.
- ``figures``: Figure 1 (violins, every patient a point).
- ``case``: Figure 2 (the median case, its inputs, box prompts, ground truth and contours).
- ``timings``: fine-tuning, inference, nnU-Net, import and registration times, beside the paper's.
- ``qc``: registration QC per patient.
- ``cohort``: patients and targets per subset, patients left out and why.
- ``provenance``: versions, commit, config, seeds, device, date, checkpoint digests.
- ``html``: the page.
- ``build``: everything above from explicit paths, written to one output folder.
"""

from importlib import resources
from pathlib import Path

PUBLISHED_VALUES = "paper_ren2024.json"


def published_values_file() -> Path:
    """The package's data file of the published values (light: the workflow calls it when it builds the DAG)."""
    return Path(str(resources.files(__name__).joinpath(PUBLISHED_VALUES)))
