"""Adapter for rule import_pet: PET in SUVbw and pet.json (the stage record) of one patient."""

from pathlib import Path

from hnseg.cohort import run_patient_stage
from hnseg.dicom.importer import import_pet, options_from_params

sm = snakemake
out_dir = Path(sm.output.record).parent
run_patient_stage(
    sm.output.record,
    sm.log[0],
    sm.wildcards.patient,
    "import_pet",
    import_pet,
    sm.wildcards.patient,
    sm.input.dicom,
    out_dir,
    options_from_params(sm.params.options),
    weight_kg=sm.params.weight_kg,
    outputs=[out_dir / "pet.nii.gz"],
)
