"""Adapter for rule import_ct: CT, labels and import.json (the stage record) of one patient."""

from pathlib import Path

from hnseg.cohort import run_patient_stage
from hnseg.dicom.importer import import_ct_and_labels, options_from_params

sm = snakemake
out_dir = Path(sm.output.record).parent
run_patient_stage(
    sm.output.record,
    sm.log[0],
    sm.wildcards.patient,
    "import_ct",
    import_ct_and_labels,
    sm.wildcards.patient,
    sm.input.dicom,
    out_dir,
    options_from_params(sm.params.options),
    outputs=[out_dir / "ct.nii.gz", out_dir / "labels.nii.gz"],
)
