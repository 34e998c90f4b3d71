# The cohort checkpoint: after import and registration, which patients enter which branch (DESIGN.md section 3).
# It reads every patient's stage records (hnseg.cohort) and writes results/cohort.tsv (patient, subset, branches,
# reason) and results/methods.tsv (which methods can run, and why not, and the volumes each reads: nnU-Net's are
# decided here, those every patient of its training set has). Every rule after it takes its patients from
# these tables (cohort_members, methods_that_run in common.smk), so a refused patient never blocks a method.


checkpoint cohort:
    input:
        stage_records(),
    output:
        cohort="results/cohort.tsv",
        methods="results/methods.tsv",
    params:
        subsets=SPLIT.subset,
        branches=BRANCHES,
        branch_volumes=BRANCH_VOLUMES,
        methods=METHODS,
        evaluated_subsets=config["evaluate"]["subsets"],
        fail_on_exclusion=config["cohort"]["fail_on_exclusion"],
        code=script_code("build_cohort.py"),
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    log:
        "logs/cohort.log",
    benchmark:
        "results/benchmarks/cohort.tsv"
    localrule: True
    script:
        "../scripts/build_cohort.py"
