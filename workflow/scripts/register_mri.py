"""Adapter for rule register_mri: T1w and T2w of one patient registered to the CT, and the stage record mri.json."""

from pathlib import Path

from hnseg.cohort import run_patient_stage
from hnseg.registration.mri import output_paths, register_mri
from hnseg.registration.options import options_from_params

sm = snakemake
patient = sm.wildcards.patient
out_dir = Path(sm.output.record).parent
imported = Path(sm.input.ct_record).parent  # the import rules write their volumes beside their records
mr_paths = {"t1": imported / "t1.nii.gz", "t2": imported / "t2.nii.gz"}
run_patient_stage(
    sm.output.record,
    sm.log[0],
    patient,
    "register_mri",
    register_mri,
    patient,
    imported / "ct.nii.gz",
    mr_paths,
    out_dir,
    options_from_params(sm.params.options),
    outputs=output_paths(out_dir, list(mr_paths)),
    requires={"import_ct": sm.input.ct_record, "import_mri": sm.input.mri_record},
)
