"""Adapter for rule import_mri: T1w, T2w and mri.json (the stage record) of one patient."""

from pathlib import Path

from hnseg.cohort import run_patient_stage
from hnseg.dicom.importer import import_mri, options_from_params

sm = snakemake
out_dir = Path(sm.output.record).parent
run_patient_stage(
    sm.output.record,
    sm.log[0],
    sm.wildcards.patient,
    "import_mri",
    import_mri,
    sm.wildcards.patient,
    sm.input.dicom,
    out_dir,
    options_from_params(sm.params.options),
    outputs=[out_dir / "t1.nii.gz", out_dir / "t2.nii.gz"],
)
