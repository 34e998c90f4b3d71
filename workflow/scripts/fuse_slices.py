"""Adapter for rule fuse_slices: one patient's fused slices with targets, in the model frame; the fusion's R, G and B
sources come from config (params.recipe)."""

import time

import numpy as np
import SimpleITK as sitk

from hnseg.fusion import VOLUME_ORDER, fuse_volume_files, write_shard
from hnseg.prompts import split_instances
from hnseg.runlog import log_to_file

sm = snakemake
log = log_to_file(sm.log[0])
start = time.perf_counter()

labels_image = sitk.ReadImage(sm.input.labels)
labels = sitk.GetArrayFromImage(labels_image)
rgb = fuse_volume_files(
    dict(sm.params.recipe),
    {name: sm.input[name] for name in VOLUME_ORDER if name in sm.input.keys()},
    sm.params.ct_window,
    suv_range=tuple(sm.params.pet_suv_range),
    mri_percentiles=tuple(sm.params.mri_percentiles),
)
instances, targets = split_instances(labels, sm.params.connectivity, sm.params.target_unit)
slices = [int(z) for z in np.flatnonzero(instances.reshape(instances.shape[0], -1).any(axis=1))]
info = write_shard(
    sm.output[0],
    rgb,
    instances,
    slices,
    spacing_xyz=labels_image.GetSpacing(),
    size=sm.params.model_size,
    meta={"fusion": sm.wildcards.fusion, "patient": sm.wildcards.patient, "targets": targets},
)
log.info("%d slices with targets, %d instances, %.2f s", len(slices), len(targets), time.perf_counter() - start)
