# Evaluation: 3D DSC, HD95 and NSD per patient and target on the CT grid, per method, and their summary. A method is
# scored on its branch's patients of evaluate.subsets, and only methods that can run are summarised (the cohort's
# results/methods.tsv says why any other did not run).


rule evaluate:
    input:
        unpack(evaluate_inputs),
    output:
        "results/metrics/{method}.csv",
    params:
        patients=evaluated_patients,
        subsets=evaluated_subsets,
        nsd_tolerance_mm=config["evaluate"]["nsd_tolerance_mm"],
        code=script_code("evaluate.py"),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=evaluate_minutes,
    log:
        "logs/evaluate/{method}.log",
    benchmark:
        "results/benchmarks/evaluate/{method}.tsv"
    script:
        "../scripts/evaluate.py"


rule summarize_metrics:
    input:
        metrics_of_methods_that_run,
    output:
        "results/metrics/summary.csv",
    params:
        code=script_code("summarize_metrics.py"),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    log:
        "logs/summarize_metrics.log",
    benchmark:
        "results/benchmarks/summarize_metrics.tsv"
    script:
        "../scripts/summarize_metrics.py"
