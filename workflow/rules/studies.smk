# Prompt studies (issue 16), outside `rule all`:  snakemake margin_study ...
# Margin study (hnseg.margin_study): for every margin of studies.margins.margins_mm and box rule (exact push-out, the
# paper's random 0..margin), the box prompts of every patient, the box-prompted methods that ran in the main study
# predicting from them (LiteMedSAM zero-shot and fine-tuned per fusion from the cached embeddings, nnU-Net with its
# box channel from the trained model: nothing is retrained), scored by rule evaluate's code, then one summary with
# bootstrap intervals and the figure. Every file is under results/studies/margins/{box_rule}_{margin}/.


wildcard_constraints:
    box_rule="exact|random",
    margin="[0-9]+(\.[0-9]+)?",


rule margin_prompts:
    input:
        labels="results/imported/{patient}/labels.nii.gz",
        record="results/imported/{patient}/import.json",
    output:
        "results/studies/margins/{box_rule}_{margin}/prompts/{patient}.json",
    params:
        margin_mm=margin_study_range,
        seed=config["prompts"]["seed"],
        connectivity=config["prompts"]["node_connectivity"],
        target_unit=config["prompts"]["target_unit"],
        code=script_code("make_prompts.py"),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    log:
        "logs/studies/margins/{box_rule}_{margin}/make_prompts/{patient}.log",
    benchmark:
        "results/benchmarks/studies/margins/{box_rule}_{margin}/make_prompts/{patient}.tsv"
    script:
        "../scripts/make_prompts.py"


rule margin_predict_litemedsam:
    input:
        unpack(margin_litemedsam_inputs),
    output:
        directory("results/studies/margins/{box_rule}_{margin}/predictions/litemedsam_{variant}_{fusion}"),
    params:
        patients=litemedsam_evaluated_patients,
        threshold=config["litemedsam"]["threshold"],
        embedding_dtype=config["litemedsam"]["embedding_dtype"],
        device=config["litemedsam"]["device"],
        code=script_code("predict_litemedsam.py"),
    resources:
        gpu=1,
        mem_mb=predict_litemedsam_mb,
        runtime=predict_litemedsam_minutes,
    threads: gpu_job_threads()
    log:
        "logs/studies/margins/{box_rule}_{margin}/predict_litemedsam/{variant}_{fusion}.log",
    benchmark:
        "results/benchmarks/studies/margins/{box_rule}_{margin}/predict_litemedsam/{variant}_{fusion}.tsv"
    script:
        "../scripts/predict_litemedsam.py"


rule margin_nnunet_test_images:
    input:
        unpack(margin_nnunet_volumes),
    output:
        temp(directory("results/studies/margins/{box_rule}_{margin}/imagesTs/{nnunet_dataset}")),
    params:
        patients=nnunet_evaluated_patients,
        code=script_code("nnunet_test_images.py"),
    threads: 2
    resources:
        mem_mb=2000,
        runtime=30,
    log:
        "logs/studies/margins/{box_rule}_{margin}/nnunet_test_images/{nnunet_dataset}.log",
    benchmark:
        "results/benchmarks/studies/margins/{box_rule}_{margin}/nnunet_test_images/{nnunet_dataset}.tsv"
    script:
        "../scripts/nnunet_test_images.py"


rule margin_nnunet_predict:
    input:
        unpack(margin_nnunet_predict_inputs),
    output:
        directory("results/studies/margins/{box_rule}_{margin}/predictions/nnunet_{nnunet_variant}"),
    params:
        patients=nnunet_evaluated_patients,
        dataset_id=nnunet_dataset_id,
        configuration=config["nnunet"]["configuration"],
        device=config["nnunet"]["device"],
        tta=config["nnunet"]["tta"],
        code=script_code("nnunet_predict.py"),
    threads: gpu_job_threads()
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=120,
    log:
        "logs/studies/margins/{box_rule}_{margin}/nnunet_predict/{nnunet_variant}.log",
    benchmark:
        "results/benchmarks/studies/margins/{box_rule}_{margin}/nnunet_predict/{nnunet_variant}.tsv"
    script:
        "../scripts/nnunet_predict.py"


rule margin_evaluate:
    input:
        unpack(margin_evaluate_inputs),
    output:
        "results/studies/margins/{box_rule}_{margin}/metrics/{method}.csv",
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
        "logs/studies/margins/{box_rule}_{margin}/evaluate/{method}.log",
    benchmark:
        "results/benchmarks/studies/margins/{box_rule}_{margin}/evaluate/{method}.tsv"
    script:
        "../scripts/evaluate.py"


rule summarize_margin_study:
    input:
        margin_study_tables,
    output:
        scores="results/studies/margins/scores.csv",
        summary=report(
            "results/studies/margins/summary.csv",
            caption="../report/margin_study.rst",
            category="Prompt studies",
            labels={"table": "margin study"},
        ),
        png=report(
            "results/studies/margins/margin_study.png",
            caption="../report/margin_study.rst",
            category="Prompt studies",
            labels={"figure": "margin study"},
        ),
        svg="results/studies/margins/margin_study.svg",
    params:
        tables=margin_study_table_records,
        margins_mm=config["studies"]["margins"]["margins_mm"],
        rules=config["studies"]["margins"]["rules"],
        resamples=config["report"]["bootstrap_resamples"],
        seed=config["report"]["seed"],
        level=config["report"]["ci_level"],
        dpi=config["report"]["figure_dpi"],
        code=script_code("summarize_margin_study.py"),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    log:
        "logs/studies/margins/summarize.log",
    benchmark:
        "results/benchmarks/studies/margins/summarize.tsv"
    script:
        "../scripts/summarize_margin_study.py"


# The target: `snakemake margin_study` (then `snakemake` rebuilds the report with its section).
rule margin_study:
    input:
        rules.summarize_margin_study.output,
