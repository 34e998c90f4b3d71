"""Adapter for rule registration_qc: qc.json and qc.png of one patient's registration."""

from pathlib import Path

from hnseg.cohort import read_record
from hnseg.registration.options import qc_options_from_params
from hnseg.registration.qc_stage import registration_qc, require_ok
from hnseg.runlog import run_stage

sm = snakemake
patient = sm.wildcards.patient


def check_and_run():
    mri, pet = read_record(sm.input.mri_record), read_record(sm.input.pet_record)
    require_ok(patient, {"register_mri": mri, "resample_pet": pet})
    return registration_qc(
        patient, mri, Path(sm.output.qc).parent, qc_options_from_params(sm.params.qc), truth_dir=sm.input.get("truth")
    )


run_stage(sm.log[0], check_and_run)
