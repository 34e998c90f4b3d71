"""Deterministic randomness: every random draw and every UID comes from (cohort seed, patient id, purpose).

Python's ``hash()`` is salted per process, so ids are hashed with SHA-256. Each purpose ("anatomy", "ct_noise",
...) has its own stream, so a change in how one stream is used never shifts the others, and a patient's stream
never depends on which other patients exist.
"""

from __future__ import annotations

import hashlib

import numpy as np
from pydicom.uid import PYDICOM_ROOT_UID, UID, generate_uid

from hnseg.errors import InputError

_NAMESPACE = "hnseg-synthetic-v1"


def check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise InputError(f"synthetic cohort seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _words(text: str) -> list[int]:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 32, 4)]


def rng(seed: int, patient_id: str, purpose: str) -> np.random.Generator:
    """The random generator of one patient and one purpose."""
    seed = check_seed(seed)
    entropy = [seed & 0xFFFFFFFF, seed >> 32, *_words(f"{_NAMESPACE}|{patient_id}|{purpose}")]
    return np.random.default_rng(np.random.SeedSequence(entropy))


def uid(seed: int, patient_id: str, *keys: object) -> UID:
    """A DICOM UID derived from (seed, patient, keys), e.g. keys = ("sop", "CT", 12)."""
    return generate_uid(prefix=PYDICOM_ROOT_UID, entropy_srcs=[_NAMESPACE, str(seed), patient_id, *map(str, keys)])


def digits(text: str, n: int = 5) -> str:
    """n decimal digits derived from text (used for the numeric suffixes of PACS-style folder names)."""
    value = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")
    return f"{value % 10**n:0{n}d}"
