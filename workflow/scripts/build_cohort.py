"""Adapter for checkpoint cohort: every patient's stage records to results/cohort.tsv and results/methods.tsv."""

from collections import defaultdict

from hnseg.cohort import build_cohort, read_record
from hnseg.runlog import run_stage

sm = snakemake
records = defaultdict(list)
for path in sm.input:
    records[read_record(path)["patient"]].append(path)
run_stage(
    sm.log[0],
    build_cohort,
    dict(sm.params.subsets),
    records,
    sm.params.branches,
    sm.params.methods,
    sm.params.evaluated_subsets,
    sm.output.cohort,
    sm.output.methods,
    fail_on_exclusion=sm.params.fail_on_exclusion,
    branch_volumes=dict(sm.params.branch_volumes),
)
