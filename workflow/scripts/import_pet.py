"""Adapter for rule import_pet: PET in SUVbw and pet.json (the stage record) of one patient, from its DICOM folder or
from the NIfTI file the patients sheet names (params.nifti, empty for a DICOM patient)."""

from pathlib import Path

from hnseg.cohort import run_patient_stage

sm = snakemake
out_dir = Path(sm.output.record).parent
if sm.params.nifti:
    from hnseg.nifti.importer import import_pet

    args, kwargs = (dict(sm.params.nifti), out_dir), {}
else:
    from hnseg.dicom.importer import import_pet, options_from_params

    args, kwargs = (sm.input.dicom, out_dir, options_from_params(sm.params.options)), {"weight_kg": sm.params.weight_kg}
run_patient_stage(
    sm.output.record,
    sm.log[0],
    sm.wildcards.patient,
    "import_pet",
    import_pet,
    sm.wildcards.patient,
    *args,
    outputs=[out_dir / "pet.nii.gz"],
    **kwargs,
)
