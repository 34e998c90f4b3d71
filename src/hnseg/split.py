"""The train/validation/test split (DESIGN.md sections 3.4 and 5).

Every patient gets a seeded hash of its pseudonymous id, a number in [0, 1). Made fresh, patients are ranked
by that number and cut at counts proportional to the ratio (470:94:97 gives exactly 470/94/97 for 661
patients), optionally within strata of a sheet column. Because the rank only depends on the patient's own
hash, adding or removing a patient moves at most the patients next to a cut point; a frozen split
(`config/split.tsv`) never moves anyone: patients it does not list are placed by comparing their hash with
the cumulative ratio thresholds, with a warning.

With strata, the counts are allocated over the strata x subsets table at once (`stratified_counts`): the subset
totals are those of the whole cohort (exactly 470/94/97 for 661), and every stratum gets, in every subset, its
proportional share rounded down or up (within one patient of it). Rounding each stratum on its own would miss
the totals in about half of random cohorts.

The same pure functions give the workflow its parse-time lists and the `split_cohort` rule its output.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from hnseg.errors import InputError

log = logging.getLogger(__name__)

SUBSETS = ("train", "val", "test")
PAPER_RATIO = (470, 94, 97)


def patient_hash(patient: str, seed: int) -> float:
    """Uniform number in [0, 1) from (seed, patient id); stable across Python runs and machines."""
    digest = hashlib.sha256(f"hnseg-split\0{seed}\0{patient}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def _check_ratio(ratio: Sequence[float]) -> tuple[Fraction, Fraction, Fraction]:
    """The ratio as exact fractions of its sum (decimal values such as 0.7 taken as written, not as binary floats)."""
    return _shares(tuple(ratio))


@functools.cache
def _shares(ratio: tuple[float, ...]) -> tuple[Fraction, Fraction, Fraction]:
    if len(ratio) != 3 or any(r < 0 for r in ratio) or sum(ratio) <= 0:
        raise InputError(f"split ratio must be three non-negative numbers (train, val, test), got {list(ratio)}")
    exact = [Fraction(str(r)) for r in ratio]
    total = sum(exact)
    return exact[0] / total, exact[1] / total, exact[2] / total


def split_counts(n: int, ratio: Sequence[float] = PAPER_RATIO) -> tuple[int, int, int]:
    """Subset sizes for n patients: largest-remainder rounding of n * ratio / sum(ratio).

    Exact for n == sum(ratio) (661 -> 470/94/97). Ties in the remainder go to the earlier subset.
    """
    quotas = [n * share for share in _check_ratio(ratio)]
    counts = [int(q) for q in quotas]
    order = sorted(range(3), key=lambda i: (-(quotas[i] - counts[i]), i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    return counts[0], counts[1], counts[2]


def stratified_counts(
    sizes: Mapping[str, int], ratio: Sequence[float] = PAPER_RATIO
) -> dict[str, tuple[int, int, int]]:
    """Subset sizes per stratum whose totals are `split_counts` of the whole cohort.

    Every cell of the strata x subsets table is its proportional share n_stratum * ratio / sum(ratio) rounded
    down or up, every stratum's counts sum to its size, and every subset's counts sum to the cohort's exact
    count. Such a rounding always exists for three subsets; which cells are rounded up is chosen to make the
    total rounding error smallest (a min-cost flow over the cells with a fractional share), ties broken by
    stratum name, so the allocation is deterministic.
    """
    shares = _check_ratio(ratio)
    strata = sorted(sizes)
    if any(sizes[s] < 0 for s in strata):
        raise InputError(f"stratum sizes must be non-negative, got {dict(sizes)}")
    quota = {s: [sizes[s] * share for share in shares] for s in strata}
    floor = {s: [int(q) for q in quota[s]] for s in strata}
    targets = split_counts(sum(sizes.values()), ratio)
    # units still to place: per stratum (its size minus its floors) and per subset (its total minus the floors)
    row_need = {s: sizes[s] - sum(floor[s]) for s in strata}
    col_need = [targets[j] - sum(floor[s][j] for s in strata) for j in range(3)]
    up = _round_up_cells(
        row_need,
        col_need,
        {(s, j): quota[s][j] - floor[s][j] for s in strata for j in range(3) if quota[s][j] != floor[s][j]},
    )
    return {
        s: (floor[s][0] + ((s, 0) in up), floor[s][1] + ((s, 1) in up), floor[s][2] + ((s, 2) in up)) for s in strata
    }


def _round_up_cells(
    row_need: dict[str, int], col_need: list[int], fractions: dict[tuple[str, int], Fraction]
) -> set[tuple[str, int]]:
    """The cells to round up: each row gets row_need of its fractional cells, each column col_need, at most one
    unit per cell, maximising the sum of the rounded-up cells' fractional parts (successive shortest paths)."""
    rows = sorted(row_need)
    source, sink = "source", "sink"
    cols = [f"subset{j}" for j in range(3)]
    # residual graph: node -> {node: [capacity, cost]}
    graph: dict[str, dict[str, list]] = {n: {} for n in [source, sink, *(f"row:{r}" for r in rows), *cols]}

    def add(a: str, b: str, capacity: int, cost: int) -> None:
        graph[a][b] = [capacity, cost]
        graph[b].setdefault(a, [0, -cost])

    # costs in integers: the fractional parts over their common denominator (exact, and fast to add)
    scale = math.lcm(*(f.denominator for f in fractions.values())) if fractions else 1
    for r in rows:
        add(source, f"row:{r}", row_need[r], 0)
    for (r, j), frac in sorted(fractions.items()):
        add(f"row:{r}", cols[j], 1, -int(frac * scale))
    for j in range(3):
        add(cols[j], sink, col_need[j], 0)
    nodes = list(graph)
    for _ in range(sum(row_need.values())):
        # Bellman-Ford: the residual graph of a min-cost flow has negative edges but no negative cycle
        dist: dict[str, int | None] = dict.fromkeys(nodes)
        prev: dict[str, str] = {}
        dist[source] = 0
        for _ in range(len(nodes)):
            changed = False
            for a in nodes:
                if dist[a] is None:
                    continue
                for b, (capacity, cost) in graph[a].items():
                    if capacity > 0 and (dist[b] is None or dist[a] + cost < dist[b]):
                        dist[b], prev[b] = dist[a] + cost, a
                        changed = True
            if not changed:
                break
        if dist[sink] is None:
            raise RuntimeError("no exact stratified allocation; one always exists for three subsets: a bug")
        node = sink
        while node != source:
            a = prev[node]
            graph[a][node][0] -= 1
            graph[node][a][0] += 1
            node = a
    return {(r, j) for r, j in fractions if graph[f"row:{r}"][cols[j]][0] == 0}  # the cell's unit was used


def _assign_ranked(patients: Sequence[str], seed: int, counts: tuple[int, int, int]) -> dict[str, str]:
    ranked = sorted(patients, key=lambda p: (patient_hash(p, seed), p))
    n_train, n_val, _ = counts
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
    strata: optional patient -> stratum; the ranked cut is then made within each stratum, at the counts of
        `stratified_counts` (exact totals, each stratum within one patient of its share).
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
    counts = stratified_counts({stratum: len(members) for stratum, members in groups.items()}, ratio)
    subset = {}
    for stratum, members in groups.items():
        subset.update(_assign_ranked(members, seed, counts[stratum]))
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
