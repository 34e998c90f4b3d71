"""Adapter for rule evaluate: one method's predictions scored against the reference labels."""

from pathlib import Path

from hnseg.metrics import SCORE_COLUMNS, evaluate_method, write_rows
from hnseg.runlog import log_to_file

sm = snakemake
log = log_to_file(sm.log[0])
predictions = Path(sm.input.predictions)
cases = [
    {"patient": p, "subset": s, "prediction": predictions / f"{p}.nii.gz", "reference": ref}
    for p, s, ref in zip(sm.params.patients, sm.params.subsets, sm.input.references, strict=True)
]
rows = evaluate_method(sm.wildcards.method, cases, nsd_tolerance_mm=sm.params.nsd_tolerance_mm)
write_rows(rows, sm.output[0], SCORE_COLUMNS)
for row in rows:
    log.info(
        "%s %s %s: %s DSC %.3f HD95 %.2f mm",
        row["patient"],
        row["subset"],
        row["target"],
        row["status"],
        row["dsc"],
        row["hd95_mm"],
    )
