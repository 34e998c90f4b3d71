"""Adapter for rule summarize_propagation: the propagated protocols against the per-slice oracle."""

from hnseg.propagation_study import write_study
from hnseg.runlog import log_to_file

sm = snakemake
log = log_to_file(sm.log[0])
summary = write_study(
    sm.params.tables,
    dict(zip(sm.params.patients, sm.input.prompts, strict=True)),
    dict(zip(sm.params.patients, sm.input.boxes, strict=True)),
    {"scores": sm.output.scores, "summary": sm.output.summary},
    resamples=sm.params.resamples,
    seed=sm.params.seed,
    level=sm.params.level,
)
for row in summary.to_dict("records"):
    log.info(
        "%s %s %s %s: DSC %.3f [%.3f, %.3f], HD95 %.2f mm, %.1f boxes per patient (n=%d)",
        row["subset"], row["method"], row["target"], row["protocol"], row["dsc_mean"], row["dsc_ci_low"],
        row["dsc_ci_high"], row["hd95_mm_mean"], row["boxes_per_patient"], row["n"],
    )  # fmt: skip
