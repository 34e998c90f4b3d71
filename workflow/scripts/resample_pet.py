"""Adapter for rule resample_pet: CT, labels and PET of one patient on the CT grid, and the stage record pet.json."""

from pathlib import Path

from hnseg.cohort import run_patient_stage
from hnseg.registration.pet import OUTPUT_FILES, resample_pet

sm = snakemake
patient = sm.wildcards.patient
out_dir = Path(sm.output.record).parent
imported = Path(sm.input.ct_record).parent  # the import rules write their volumes beside their records
run_patient_stage(
    sm.output.record,
    sm.log[0],
    patient,
    "resample_pet",
    resample_pet,
    patient,
    imported / "ct.nii.gz",
    imported / "labels.nii.gz",
    imported / "pet.nii.gz",
    out_dir,
    sm.params.body_threshold_hu,
    outputs=[out_dir / name for name in OUTPUT_FILES],
    requires={"import_ct": sm.input.ct_record, "import_pet": sm.input.pet_record},
)
