"""Adapter for rule import_pet: PET in SUVbw and pet.json of one patient."""

from hnseg.dicom.importer import import_pet, options_from_params
from hnseg.runlog import run_stage

sm = snakemake
run_stage(
    sm.log[0],
    import_pet,
    sm.wildcards.patient,
    sm.input.dicom,
    sm.output.record.rsplit("/", 1)[0],
    options_from_params(sm.params.options),
    weight_kg=sm.params.weight_kg,
)
