"""Adapter for rule summarize_margin_study: every score of the margin study, its summary and its figure."""

from hnseg.margin_study import write_study
from hnseg.runlog import log_to_file

sm = snakemake
log = log_to_file(sm.log[0])
summary = write_study(
    sm.params.tables,
    sm.params.margins_mm,
    sm.params.rules,
    {"scores": sm.output.scores, "summary": sm.output.summary, "png": sm.output.png, "svg": sm.output.svg},
    resamples=sm.params.resamples,
    seed=sm.params.seed,
    level=sm.params.level,
    dpi=sm.params.dpi,
)
for row in summary.to_dict("records"):
    log.info(
        "%s %s %s %s %g mm: DSC %.3f [%.3f, %.3f], HD95 %.2f mm (n=%d)",
        row["subset"], row["method"], row["target"], row["rule"], row["margin_mm"], row["dsc_mean"],
        row["dsc_ci_low"], row["dsc_ci_high"], row["hd95_mm_mean"], row["n"],
    )  # fmt: skip
