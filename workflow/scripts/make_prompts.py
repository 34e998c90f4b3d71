"""Adapter for rule make_prompts: the box prompts of one patient."""

import SimpleITK as sitk

from hnseg.prompts import make_prompts, write_prompts
from hnseg.runlog import log_to_file

sm = snakemake
log = log_to_file(sm.log[0])
image = sitk.ReadImage(sm.input.labels)
labels = sitk.GetArrayFromImage(image)
params = {
    "margin_mm": sm.params.margin_mm,
    "seed": sm.params.seed,
    "connectivity": sm.params.connectivity,
    "target_unit": sm.params.target_unit,
}
prompts = make_prompts(
    labels,
    image.GetSpacing(),
    sm.wildcards.patient,
    sm.params.seed,
    margin_mm=tuple(sm.params.margin_mm),
    connectivity=sm.params.connectivity,
    target_unit=sm.params.target_unit,
)
write_prompts(
    sm.output[0], sm.wildcards.patient, prompts, shape_zyx=labels.shape, spacing_xyz=image.GetSpacing(), params=params
)
log.info("%d prompts on %d slices", len(prompts), len({p.slice for p in prompts}))
