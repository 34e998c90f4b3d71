"""The 470:94:97 split: exact counts, determinism, stability, strata and frozen splits."""

import logging

import pytest

from hnseg.errors import InputError
from hnseg.split import make_split, patient_hash, read_split_tsv, split_counts, subset_by_threshold

IDS_661 = [f"HN{i:04d}" for i in range(661)]


def test_paper_counts_for_661():
    split = make_split(IDS_661, seed=2024)
    assert split.counts() == {"train": 470, "val": 94, "test": 97}
    assert set(split.subset) == set(IDS_661)


@pytest.mark.parametrize("n", [1, 2, 3, 12, 100, 576, 661, 1000])
def test_counts_sum_and_follow_ratio(n):
    counts = split_counts(n)
    assert sum(counts) == n
    for c, r in zip(counts, (470, 94, 97), strict=True):
        assert abs(c - n * r / 661) < 1.0


def test_seeded_and_deterministic():
    a, b = make_split(IDS_661, seed=1), make_split(list(reversed(IDS_661)), seed=1)
    assert a.subset == b.subset  # input order does not matter
    c = make_split(IDS_661, seed=2)
    moved = sum(a.subset[p] != c.subset[p] for p in IDS_661)
    assert moved > 100  # another seed is another random split


def test_hash_is_uniform_enough():
    hashes = [patient_hash(p, 7) for p in IDS_661]
    assert all(0.0 <= h < 1.0 for h in hashes)
    assert 0.45 < sum(hashes) / len(hashes) < 0.55


def test_frozen_split_is_stable_when_patients_are_added(tmp_path, caplog):
    fresh = make_split(IDS_661, seed=2024)
    frozen_file = tmp_path / "split.tsv"
    fresh.to_tsv(frozen_file)
    frozen = read_split_tsv(frozen_file)
    with caplog.at_level(logging.WARNING):
        grown = make_split([*IDS_661, "HN9999"], seed=2024, frozen=frozen)
    assert all(grown.subset[p] == fresh.subset[p] for p in IDS_661)
    assert grown.how["HN9999"] == "hash-threshold"
    assert grown.subset["HN9999"] == subset_by_threshold("HN9999", 2024)
    assert "HN9999" in caplog.text and "hnseg split --freeze" in caplog.text


def test_fresh_split_moves_at_most_the_patients_at_the_cuts_when_one_is_added():
    # Without a frozen split the counts stay exact, so a new patient can push at most one patient across
    # each of the two cut points; everybody else keeps their subset.
    before = make_split(IDS_661, seed=2024)
    for extra in ("HN9001", "HN9002", "HN9003", "HN9004"):
        after = make_split([*IDS_661, extra], seed=2024)
        moved = [p for p in IDS_661 if after.subset[p] != before.subset[p]]
        assert len(moved) <= 2


def test_removing_a_patient_keeps_frozen_assignments(tmp_path):
    fresh = make_split(IDS_661, seed=2024)
    frozen = dict(fresh.subset)
    shrunk = make_split(IDS_661[1:], seed=2024, frozen=frozen)
    assert all(shrunk.subset[p] == fresh.subset[p] for p in IDS_661[1:])


def test_strata_are_split_separately():
    strata = {p: ("A" if i % 3 else "B") for i, p in enumerate(IDS_661)}
    split = make_split(IDS_661, seed=3, strata=strata)
    for stratum in ("A", "B"):
        members = [p for p in IDS_661 if strata[p] == stratum]
        got = [sum(split.subset[p] == s for p in members) for s in ("train", "val", "test")]
        assert tuple(got) == split_counts(len(members))


def test_duplicate_ids_and_bad_frozen_subsets_are_refused():
    with pytest.raises(InputError, match="HN0001"):
        make_split(["HN0001", "HN0002", "HN0001"], seed=0)
    with pytest.raises(InputError, match=r"HN0002.*'training'"):
        make_split(["HN0001", "HN0002"], seed=0, frozen={"HN0002": "training"})


def test_split_tsv_round_trip(tmp_path):
    split = make_split(IDS_661[:20], seed=5)
    split.to_tsv(tmp_path / "s.tsv")
    assert read_split_tsv(tmp_path / "s.tsv") == split.subset
    with pytest.raises(InputError, match="does not exist"):
        read_split_tsv(tmp_path / "missing.tsv")
