"""Adapter for the registration rules (resample_pet, register_mri) of one patient."""

from hnseg.registration import options_from_params, register_mri, resample_pet
from hnseg.runlog import run_stage

sm = snakemake
patient = sm.wildcards.patient
if sm.rule == "resample_pet":
    run_stage(
        sm.log[0],
        resample_pet,
        patient,
        sm.input.ct,
        sm.input.labels,
        sm.input.pet,
        sm.output.pet.rsplit("/", 1)[0],
        sm.params.body_threshold_hu,
    )
else:
    run_stage(
        sm.log[0],
        register_mri,
        patient,
        sm.input.ct,
        sm.input.labels,
        {"t1": sm.input.t1, "t2": sm.input.t2},
        sm.output.qc.rsplit("/", 1)[0],
        options_from_params(sm.params.options),
        truth_dir=sm.input.get("truth"),
    )
