"""Adapter for rule import_mri: T1w, T2w and mri.json (the stage record) of one patient, from its DICOM folder or
from the NIfTI files the patients sheet names (params.nifti, empty for a DICOM patient)."""

from pathlib import Path

from hnseg.cohort import run_patient_stage

sm = snakemake
out_dir = Path(sm.output.record).parent
if sm.params.nifti:
    from hnseg.nifti.importer import import_mri

    args = (dict(sm.params.nifti), out_dir)
else:
    from hnseg.dicom.importer import import_mri, options_from_params

    args = (sm.input.dicom, out_dir, options_from_params(sm.params.options))
run_patient_stage(
    sm.output.record,
    sm.log[0],
    sm.wildcards.patient,
    "import_mri",
    import_mri,
    sm.wildcards.patient,
    *args,
    outputs=[out_dir / "t1.nii.gz", out_dir / "t2.nii.gz"],
)
