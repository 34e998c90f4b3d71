"""Adapter for rule preview_slices: a few fused slices with their boxes, as the model will see them."""

from hnseg.fusion import plot_shard_preview
from hnseg.prompts import read_prompts
from hnseg.runlog import log_to_file

sm = snakemake
log = log_to_file(sm.log[0])
plot_shard_preview(sm.input.shard, read_prompts(sm.input.prompts), sm.output[0], n_slices=sm.params.n_slices)
