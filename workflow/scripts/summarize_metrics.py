"""Adapter for rule summarize_metrics: mean, SD and n per method, subset and target."""

from hnseg.metrics import SUMMARY_COLUMNS, read_scores, summarize, write_rows
from hnseg.runlog import log_to_file

sm = snakemake
log = log_to_file(sm.log[0])
rows = [row for path in sm.input for row in read_scores(path)]
summary = summarize(rows)
write_rows(summary, sm.output[0], SUMMARY_COLUMNS)
for row in summary:
    log.info(
        "%s %s %s: DSC %.3f +- %.3f, HD95 %.2f mm (n=%d, excluded %d)",
        row["method"], row["subset"], row["target"], row["dsc_mean"], row["dsc_sd"], row["hd95_mm_mean"], row["n"], row["n_excluded"],
    )  # fmt: skip
