"""Adapter for rule embed_box_slices: the official encoder's embeddings of the slices inside the patient's lesion
boxes that the main cache (rule embed_slices: slices with targets) lacks, fused as rule fuse_slices fuses."""

from hnseg.memory import keep_freed_memory

keep_freed_memory()  # re-executes this process with the allocator settings of the encoder (hnseg.memory)

import json  # noqa: E402

import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402
import torch  # noqa: E402

from hnseg.fusion import VOLUME_ORDER, FrameGeometry, fuse_volume_files, to_model_frame  # noqa: E402
from hnseg.gpu import job_device  # noqa: E402
from hnseg.lesion_prompts import read_lesion_boxes, slices_to_embed  # noqa: E402
from hnseg.runlog import log_to_file  # noqa: E402
from hnseg.sam.embeddings import Embeddings, bytes_per_slice, embed_frames, read_embeddings, write_embeddings  # noqa: E402
from hnseg.sam.model import load_litemedsam  # noqa: E402

sm = snakemake
log = log_to_file(sm.log[0])
torch.set_num_threads(sm.threads)


cached = read_embeddings(sm.input.embeddings)
have = {int(z) for z in cached.slice_index}
needed = [z for z in slices_to_embed(read_lesion_boxes(sm.input.boxes)) if z not in have]
reference = sitk.ReadImage(sm.input.labels)
shape = tuple(reversed(reference.GetSize()))
geometry = FrameGeometry(shape[1], shape[2], sm.params.model_size)
frames = np.zeros((len(needed), geometry.size, geometry.size, 3), dtype=np.uint8)
if needed:
    rgb = fuse_volume_files(
        dict(sm.params.recipe),
        {name: sm.input[name] for name in VOLUME_ORDER if name in sm.input.keys()},
        sm.params.ct_window,
        suv_range=tuple(sm.params.pet_suv_range),
        mri_percentiles=tuple(sm.params.mri_percentiles),
    )
    for i, z in enumerate(needed):
        frames[i], geometry = to_model_frame(rgb[z], sm.params.model_size)
with job_device(sm.params.device) as device:
    embeddings, seconds = embed_frames(load_litemedsam(device=device), frames, geometry, device, sm.params.dtype)
info = dict(cached.info) | {"frame": {"height": geometry.height, "width": geometry.width, "size": geometry.size}}
info |= {"dtype": sm.params.dtype, "device": str(device), "slices": "inside the lesion boxes, not in the main cache"}
write_embeddings(sm.output[0], Embeddings(embeddings, np.asarray(needed, dtype=np.int32), seconds, info))
log.info(
    "%s",
    json.dumps(
        {
            "slices": len(needed),
            "already_cached": len(have),
            "mib": round(len(needed) * bytes_per_slice(sm.params.dtype) / 2**20, 1),
            "encoder_s_per_slice": float(seconds.mean()) if needed else None,
        }
    ),
)
