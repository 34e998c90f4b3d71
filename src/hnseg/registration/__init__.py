"""MRI to CT (ANTs: rigid, then SyN), PET onto the CT grid, and the registration QC: three workflow rules.

    pet.resample_pet(patient, ct, labels, pet, out_dir, body_threshold_hu)      rule resample_pet
    mri.register_mri(patient, ct, {"t1": .., "t2": ..}, out_dir, options)        rule register_mri
    qc_stage.registration_qc(patient, mri_record, registered_dir, qc_options, truth_dir=None)   rule registration_qc
    options.options_from_params(config["registration"]) / load_options(demo=False) / load_qc_options()

Modules: options (the config section as typed objects), images (reading, checking, writing volumes; grids as JSON),
ants_register (threads and seed, the antsRegistration stages, applying transforms), resample (grids, PET, what the
metric sees), masks (CT and MR bodies, their overlap), pet, mri and qc_stage (the three rules' entry points), qc
(similarity, TRE, Dice, flags, the figure).

This file imports nothing. A rule's code trigger is the import closure of its script (hnseg.provenance), and
importing any submodule runs this file first: importing the stages here would put the QC into the registration's
closure, and ants into every parse. Scripts import the submodules they run. Importing the package does not import
ants either: ITK's thread count must be set before antspyx first runs, which `ants_register.configure_ants` does.
"""
