"""Adapter for rule export_dicom: one patient's prediction as DICOM RTSTRUCT and SEG on its original CT."""

from pathlib import Path

from hnseg.dicom.export import export_patient
from hnseg.dicom.importer import options_from_params
from hnseg.runlog import log_to_file

sm = snakemake
log = log_to_file(sm.log[0])
patient = sm.wildcards.patient
export_patient(
    patient,
    sm.wildcards.method,
    sm.input.dicom,
    Path(sm.input.import_record).parent,
    Path(sm.input.predictions) / f"{patient}.nii.gz",
    Path(sm.output.rtstruct).parent,
    options_from_params(sm.params.options),
)
