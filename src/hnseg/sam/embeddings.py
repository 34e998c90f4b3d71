"""Stage embed_slices: the official image encoder's embedding of every slice of a shard, computed once.

The encoder is the expensive half of LiteMedSAM (about 75 GFLOPs per slice against 3.6 per box) and the official
one is shared by the zero-shot prediction, the fine-tuned prediction of a frozen encoder (`train_encoder: false`)
and the validation of that fine-tuning. Each reads the embeddings from here instead of encoding again.

File: `results/embeddings/{fusion}/{patient}.npz`, uncompressed (embeddings hardly compress: zlib makes them 9 %
smaller for 0.2 s of CPU per slice), holding `embeddings` (N, 256, 64, 64) in the configured dtype (float16 by default: 2 MiB per slice;
float32: 4 MiB), `slice_index` (N,) and `encoder_s` (N,) as in the shard, and `info` (JSON: patient, fusion, dtype,
device, the shard's frame geometry). On CUDA the encoder runs under float16 autocast anyway, so float16 loses
nothing there; on the CPU it rounds the float32 output to 11 significant bits.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hnseg.fusion import FrameGeometry, read_shard
from hnseg.sam.frame import EMBEDDING_DTYPES, encode_image, frame_tensor

BYTES_PER_VALUE = {"float16": 2, "float32": 4}
EMBEDDING_SHAPE = (256, 64, 64)


def bytes_per_slice(dtype: str) -> int:
    """Disk (and memory) cost of one slice's embedding."""
    return int(np.prod(EMBEDDING_SHAPE)) * BYTES_PER_VALUE[dtype]


@dataclass
class Embeddings:
    """The embeddings of one patient's shard, in shard order."""

    embeddings: torch.Tensor  # (N, 256, 64, 64), float16 or float32, on the CPU
    slice_index: np.ndarray  # (N,) CT slice of each
    encoder_s: np.ndarray  # (N,) encoder seconds of each
    info: dict

    @property
    def geometry(self) -> FrameGeometry:
        frame = self.info["frame"]
        return FrameGeometry(frame["height"], frame["width"], frame["size"])


def embed_frames(
    model, images: np.ndarray, geometry: FrameGeometry, device: torch.device, dtype: str
) -> tuple[torch.Tensor, np.ndarray]:
    """Embeddings (N, 256, 64, 64) of N (256, 256, 3) uint8 frames, one at a time, and the encoder seconds of each."""
    out = torch.empty((len(images), *EMBEDDING_SHAPE), dtype=EMBEDDING_DTYPES[dtype])
    seconds = np.zeros(len(images))
    for i, frame in enumerate(images):
        out[i], seconds[i] = encode_image(model, frame_tensor(frame, geometry)[0], device, EMBEDDING_DTYPES[dtype])
    return out, seconds


def embed_shard(model, shard_path: str | Path, device: torch.device, dtype: str = "float16") -> Embeddings:
    """The embeddings of every slice of a shard written by hnseg.fusion.write_shard."""
    images, _, slice_index, info = read_shard(shard_path)
    geometry = FrameGeometry(info["frame"]["height"], info["frame"]["width"], info["frame"]["size"])
    embeddings, seconds = embed_frames(model, images, geometry, device, dtype)
    meta = {
        "patient": info.get("patient"),
        "fusion": info.get("fusion"),
        "dtype": dtype,
        "device": str(device),
        "frame": info["frame"],
        "ct_shape_zyx": info["ct_shape_zyx"],
    }
    return Embeddings(embeddings, np.asarray(slice_index, dtype=np.int32), seconds, meta)


def write_embeddings(path: str | Path, embeddings: Embeddings) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:  # a file object: np.savez would append .npz to a name without it
        np.savez(
            fh,
            embeddings=embeddings.embeddings.numpy(),
            slice_index=embeddings.slice_index,
            encoder_s=embeddings.encoder_s,
            info=np.array(json.dumps(embeddings.info)),
        )


def read_embeddings(path: str | Path) -> Embeddings:
    with np.load(path) as data:
        return Embeddings(
            torch.from_numpy(data["embeddings"]),
            data["slice_index"],
            data["encoder_s"],
            json.loads(str(data["info"])),
        )
