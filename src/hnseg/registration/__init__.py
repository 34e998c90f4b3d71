"""Stage register_mri: T1w and T2w to the CT with ANTs (rigid, then SyN), PET onto the CT grid, and QC.

    resample_pet(patient, ct, labels, pet, out_dir, body_threshold_hu)       rule resample_pet (also CT, labels)
    register_mri(patient, ct, labels, {"t1": .., "t2": ..}, out_dir, options, truth_dir=None)   rule register_mri
    options_from_params(config["registration"]) / load_options(demo=False)

Modules: options (the config section as typed objects), ants_register (threads and seed, the antsRegistration
stages, applying transforms), resample (grids, PET, what the metric sees), masks (CT and MR bodies), qc
(similarity, overlap, TRE, Dice, flags, the figure), stage (the three per-patient entry points).

Importing this package does not import ants: ITK's thread count must be set before antspyx first runs, which
`ants_register.configure_ants` does (register_mri calls it).
"""

from hnseg.registration.options import RegistrationOptions, load_options, options_from_params
from hnseg.registration.stage import copy_ct, register_mri, resample_pet

__all__ = ["RegistrationOptions", "copy_ct", "load_options", "options_from_params", "register_mri", "resample_pet"]
