"""Adapter for rule import_ct: CT, labels and import.json of one patient."""

from hnseg.dicom.importer import import_ct_and_labels, options_from_params
from hnseg.runlog import run_stage

sm = snakemake
run_stage(
    sm.log[0],
    import_ct_and_labels,
    sm.wildcards.patient,
    sm.input.dicom,
    sm.output.record.rsplit("/", 1)[0],
    options_from_params(sm.params.options),
)
