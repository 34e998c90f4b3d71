"""Adapter for rule import_mri: T1w, T2w and mri.json of one patient."""

from hnseg.dicom.importer import import_mri, options_from_params
from hnseg.runlog import run_stage

sm = snakemake
run_stage(
    sm.log[0],
    import_mri,
    sm.wildcards.patient,
    sm.input.dicom,
    sm.output.record.rsplit("/", 1)[0],
    options_from_params(sm.params.options),
)
