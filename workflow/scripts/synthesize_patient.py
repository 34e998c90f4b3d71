"""Adapter for rule synthesize_patient: one synthetic patient's DICOM and truth."""

from hnseg.runlog import log_to_file
from hnseg.synthetic import generate_patient

log = log_to_file(snakemake.log[0])
summary = generate_patient(
    snakemake.wildcards.patient,
    seed=snakemake.params.seed,
    dicom_dir=snakemake.output.dicom,
    truth_dir=snakemake.output.truth,
    size=snakemake.params.size,
)
log.info("generated %s: %s", snakemake.wildcards.patient, summary)
