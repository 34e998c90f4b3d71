"""Adapter for rule split_cohort: record the split that the workflow uses in results/split.tsv."""

from hnseg.config import read_patients_sheet
from hnseg.runlog import log_to_file
from hnseg.split import make_split, read_split_tsv

sm = snakemake  # injected by Snakemake
log = log_to_file(sm.log[0])
rows = {r["patient"]: r for r in read_patients_sheet(sm.input.sheet, sm.params.stratify_by)}
missing = sorted(set(sm.params.patients) - set(rows))
if missing:
    raise SystemExit(f"patients {', '.join(missing)} are not in the sheet {sm.input.sheet}")
strata = {p: rows[p][sm.params.stratify_by] for p in sm.params.patients} if sm.params.stratify_by else None
frozen = read_split_tsv(sm.params.frozen) if sm.params.frozen else None
split = make_split(sm.params.patients, seed=sm.params.seed, ratio=sm.params.ratio, strata=strata, frozen=frozen)
split.to_tsv(sm.output[0])
log.info("split of %d patients: %s", len(split.subset), split.counts())
