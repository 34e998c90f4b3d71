"""Adapter for rule import_ct: CT, labels and import.json (the stage record) of one patient, from its DICOM folder or
from the NIfTI files the patients sheet names (params.nifti, empty for a DICOM patient)."""

from pathlib import Path

from hnseg.cohort import run_patient_stage

sm = snakemake
out_dir = Path(sm.output.record).parent
if sm.params.nifti:
    from hnseg.nifti.importer import import_ct_and_labels

    args, kwargs = (dict(sm.params.nifti), out_dir), {"label_values": sm.params.nifti_labels}
else:
    from hnseg.dicom.importer import import_ct_and_labels, options_from_params

    args, kwargs = (sm.input.dicom, out_dir, options_from_params(sm.params.options)), {}
run_patient_stage(
    sm.output.record,
    sm.log[0],
    sm.wildcards.patient,
    "import_ct",
    import_ct_and_labels,
    sm.wildcards.patient,
    *args,
    outputs=[out_dir / "ct.nii.gz", out_dir / "labels.nii.gz"],
    **kwargs,
)
