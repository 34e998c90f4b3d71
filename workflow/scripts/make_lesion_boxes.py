"""Adapter for rule lesion_boxes: one 3D box per lesion of a patient (hnseg.lesion_prompts), from its labels."""

import SimpleITK as sitk

from hnseg.lesion_prompts import lesion_boxes, write_lesion_boxes
from hnseg.runlog import log_to_file

sm = snakemake
log = log_to_file(sm.log[0])
image = sitk.ReadImage(sm.input.labels)
labels = sitk.GetArrayFromImage(image)
params = {"margin_mm": sm.params.margin_mm, "seed": sm.params.seed, "connectivity": sm.params.connectivity}
boxes = lesion_boxes(
    labels, image.GetSpacing(), sm.wildcards.patient, sm.params.seed, tuple(sm.params.margin_mm), sm.params.connectivity
)
write_lesion_boxes(
    sm.output[0], sm.wildcards.patient, boxes, shape_zyx=labels.shape, spacing_xyz=image.GetSpacing(), params=params
)
log.info("%d lesions, %d slices in their boxes", len(boxes), len({z for b in boxes for z in b.z_range}))
