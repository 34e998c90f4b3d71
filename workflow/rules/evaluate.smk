# Evaluation: 3D DSC, HD95 and NSD per patient and target on the CT grid, per method, and their summary.


rule evaluate:
    input:
        unpack(evaluate_inputs),
    output:
        "results/metrics/{method}.csv",
    params:
        patients=EVALUATED,
        subsets=evaluated_subsets(),
        nsd_tolerance_mm=config["evaluate"]["nsd_tolerance_mm"],
        code=script_code("evaluate.py"),
    log:
        "logs/evaluate/{method}.log",
    script:
        "../scripts/evaluate.py"


rule summarize_metrics:
    input:
        method_metrics(METHODS),
    output:
        "results/metrics/summary.csv",
    params:
        code=script_code("summarize_metrics.py"),
    log:
        "logs/summarize_metrics.log",
    script:
        "../scripts/summarize_metrics.py"
