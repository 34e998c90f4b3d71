"""The train/validation/test split (DESIGN.md sections 3.4 and 5).

Every patient gets a seeded hash of its pseudonymous id, a number in [0, 1). Made fresh, patients are ranked
by that number and cut at counts proportional to the ratio (470:94:97 gives exactly 470/94/97 for 661
patients), optionally within strata of a sheet column. Because the rank only depends on the patient's own
hash, adding or removing a patient moves at most the patients next to a cut point; a frozen split
(`config/split.tsv`) never moves anyone: patients it does not list are placed by comparing their hash with
the cumulative ratio thresholds, with a warning.

The same pure functions give the workflow its parse-time lists and the `split_cohort` rule its output.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from hnseg.errors import InputError

log = logging.getLogger(__name__)

SUBSETS = ("train", "val", "test")
PAPER_RATIO = (470, 94, 97)


def patient_hash(patient: str, seed: int) -> float:
    """Uniform number in [0, 1) from (seed, patient id); stable across Python runs and machines."""
    digest = hashlib.sha256(f"hnseg-split\0{seed}\0{patient}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_counts(n: int, ratio: Sequence[float] = PAPER_RATIO) -> tuple[int, int, int]:
    """Subset sizes for n patients: largest-remainder rounding of n * ratio / sum(ratio).

    Exact for n == sum(ratio) (661 -> 470/94/97). Ties in the remainder go to the earlier subset.
    """
    if len(ratio) != 3 or any(r < 0 for r in ratio) or sum(ratio) <= 0:
        raise InputError(f"split ratio must be three non-negative numbers (train, val, test), got {list(ratio)}")
    total = float(sum(ratio))
    quotas = [n * r / total for r in ratio]
    counts = [int(q) for q in quotas]
    order = sorted(range(3), key=lambda i: (-(quotas[i] - counts[i]), i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    return counts[0], counts[1], counts[2]


def _assign_ranked(patients: Sequence[str], seed: int, ratio: Sequence[float]) -> dict[str, str]:
    ranked = sorted(patients, key=lambda p: (patient_hash(p, seed), p))
    n_train, n_val, _ = split_counts(len(ranked), ratio)
    subsets = {}
    for rank, patient in enumerate(ranked):
        if rank < n_train:
            subsets[patient] = "train"
        elif rank < n_train + n_val:
            subsets[patient] = "val"
        else:
            subsets[patient] = "test"
    return subsets


def subset_by_threshold(patient: str, seed: int, ratio: Sequence[float] = PAPER_RATIO) -> str:
    """Subset of a patient from its hash alone (used for patients a frozen split does not list)."""
    total = float(sum(ratio))
    h = patient_hash(patient, seed)
    if h < ratio[0] / total:
        return "train"
    if h < (ratio[0] + ratio[1]) / total:
        return "val"
    return "test"


@dataclass(frozen=True)
class Split:
    """Subset of every patient, plus how each was placed ("ranked", "frozen" or "hash-threshold")."""

    subset: dict[str, str]
    how: dict[str, str]

    def patients(self, subset: str) -> list[str]:
        if subset not in SUBSETS:
            raise InputError(f"unknown subset {subset!r}; allowed: {', '.join(SUBSETS)}")
        return sorted(p for p, s in self.subset.items() if s == subset)

    def counts(self) -> dict[str, int]:
        return {s: len(self.patients(s)) for s in SUBSETS}

    def to_tsv(self, path: str | Path) -> None:
        lines = ["patient\tsubset\tassigned_by"]
        lines += [f"{p}\t{self.subset[p]}\t{self.how[p]}" for p in sorted(self.subset)]
        Path(path).write_text("\n".join(lines) + "\n")


def make_split(
    patients: Iterable[str],
    seed: int,
    ratio: Sequence[float] = PAPER_RATIO,
    strata: Mapping[str, str] | None = None,
    frozen: Mapping[str, str] | None = None,
) -> Split:
    """Assign every patient to train, val or test.

    patients: pseudonymous ids (duplicates are an error).
    strata: optional patient -> stratum; the ranked cut is then made within each stratum.
    frozen: optional patient -> subset from a frozen split file; listed patients keep their subset, the
        others are placed by `subset_by_threshold` with a warning. Frozen entries for patients that are not
        in the cohort are ignored.
    """
    patients = list(patients)
    seen: set[str] = set()
    dups = sorted({p for p in patients if p in seen or seen.add(p)})
    if dups:
        raise InputError(f"patient ids must be unique; repeated: {', '.join(dups[:10])}")
    if frozen is not None:
        bad = {p: s for p, s in frozen.items() if s not in SUBSETS}
        if bad:
            p, s = next(iter(bad.items()))
            raise InputError(f"frozen split gives patient {p} the subset {s!r}; allowed: {', '.join(SUBSETS)}")
        subset, how = {}, {}
        new = [p for p in patients if p not in frozen]
        for p in patients:
            if p in frozen:
                subset[p], how[p] = frozen[p], "frozen"
            else:
                subset[p], how[p] = subset_by_threshold(p, seed, ratio), "hash-threshold"
        if new:
            log.warning(
                "%d patient(s) are not in the frozen split and were placed by their hash: %s. "
                "Run `hnseg split --freeze` to record them.",
                len(new),
                ", ".join(new[:10]) + (" ..." if len(new) > 10 else ""),
            )
        return Split(subset, how)

    groups: dict[str, list[str]] = {}
    for p in patients:
        stratum = "" if strata is None else str(strata.get(p, ""))
        groups.setdefault(stratum, []).append(p)
    subset = {}
    for members in groups.values():
        subset.update(_assign_ranked(members, seed, ratio))
    return Split(subset, {p: "ranked" for p in patients})


def read_split_tsv(path: str | Path) -> dict[str, str]:
    """Read a split file (columns `patient` and `subset`, tab separated); returns patient -> subset."""
    path = Path(path)
    if not path.is_file():
        raise InputError(
            f"frozen split file {path} does not exist; write one with `hnseg split --freeze {path}` "
            "or set `split: frozen: null` in the config"
        )
    lines = [ln for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    if not lines:
        raise InputError(f"split file {path} is empty; expected a header 'patient<TAB>subset' and one row per patient")
    header = lines[0].split("\t")
    if "patient" not in header or "subset" not in header:
        raise InputError(f"split file {path} needs the columns 'patient' and 'subset' (tab separated), got {header}")
    ip, is_ = header.index("patient"), header.index("subset")
    out = {}
    for n, line in enumerate(lines[1:], start=2):
        cells = line.split("\t")
        if len(cells) <= max(ip, is_):
            raise InputError(f"split file {path}, line {n}: expected {len(header)} tab-separated cells: {line!r}")
        out[cells[ip]] = cells[is_]
    return out
