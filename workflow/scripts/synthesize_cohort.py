"""Adapter for rule synthesize_cohort: the patients sheet of the synthetic cohort."""

from hnseg.config import write_patients_sheet
from hnseg.runlog import log_to_file
from hnseg.workflow import synthetic_dicom_dir

log = log_to_file(snakemake.log[0])
rows = [{"patient": p, "dicom_dir": synthetic_dicom_dir(p)} for p in snakemake.params.patients]
write_patients_sheet(snakemake.output[0], rows)
log.info("wrote %d patients to %s", len(rows), snakemake.output[0])
