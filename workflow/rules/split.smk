# The train/val/test split. The same function gave the parse-time lists TRAIN, VAL and TEST (common.smk);
# this rule records the split that was used.


rule split_cohort:
    input:
        sheet=patients_sheet(),
    output:
        "results/split.tsv",
    params:
        patients=PATIENTS,
        ratio=config["split"]["ratio"],
        seed=config["split"]["seed"],
        stratify_by=config["split"]["stratify_by"],
        frozen=config["split"]["frozen"],
        code=script_code("split_cohort.py"),
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    log:
        "logs/split_cohort.log",
    benchmark:
        "results/benchmarks/split_cohort.tsv"
    localrule: True
    script:
        "../scripts/split_cohort.py"
