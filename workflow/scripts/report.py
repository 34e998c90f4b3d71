"""Adapter for rule report: the page, tables and figures from the run's results (hnseg.report.build)."""

from pathlib import Path

from hnseg.report.build import ReportInputs, ReportOptions, build_report
from hnseg.runlog import log_to_file

sm = snakemake
log = log_to_file(sm.log[0])
options = ReportOptions(**sm.params.options, config=dict(sm.params.config))
written = build_report(ReportInputs.from_mapping(dict(sm.params.files)), Path(sm.output.html).parent, options)
log.info("wrote %d files", len(written))
