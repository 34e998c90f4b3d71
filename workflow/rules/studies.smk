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
    threads: nnunet_preparation_threads(2)
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
    threads: nnunet_job_threads()
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


# Propagation study (hnseg.sam.propagate, hnseg.propagation_study): one 3D box per lesion (rule lesion_boxes, the only
# rule of the study that reads labels), the official encoder's embeddings of the boxes' slices the main cache lacks
# (rule embed_box_slices), protocols A (the official 3D inference) and B (from the largest cross-section, with the
# area floor) for LiteMedSAM zero-shot and, when its encoder is the official one, fine-tuned, scored by rule
# evaluate's code and set beside the per-slice oracle of the main study. Files under results/studies/propagation/.


wildcard_constraints:
    protocol="A|B",


rule lesion_boxes:
    input:
        labels="results/imported/{patient}/labels.nii.gz",
        record="results/imported/{patient}/import.json",
    output:
        "results/studies/propagation/boxes/{patient}.json",
    params:
        margin_mm=config["studies"]["propagation"]["margin_mm"],
        seed=config["prompts"]["seed"],
        connectivity=config["prompts"]["node_connectivity"],
        code=script_code("make_lesion_boxes.py"),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    log:
        "logs/studies/propagation/lesion_boxes/{patient}.log",
    benchmark:
        "results/benchmarks/studies/propagation/lesion_boxes/{patient}.tsv"
    script:
        "../scripts/make_lesion_boxes.py"


rule embed_box_slices:
    input:
        unpack(box_slices_inputs),
    output:
        "results/studies/propagation/embeddings/{fusion}/{patient}.npz",
    params:
        recipe=fusion_recipe,
        ct_window=config["fusion"]["ct_window"],
        pet_suv_range=config["fusion"]["pet_suv_range"],
        mri_percentiles=config["fusion"]["mri_percentiles"],
        model_size=config["fusion"]["model_size"],
        dtype=config["litemedsam"]["embedding_dtype"],
        device=config["litemedsam"]["device"],
        code=script_code("embed_box_slices.py"),
    resources:
        gpu=1,
        mem_mb=hnseg.sam.sizing.ENCODER_JOB_MB + 2000,
        runtime=embed_box_slices_minutes,
    threads: gpu_job_threads()
    log:
        "logs/studies/propagation/embed_box_slices/{fusion}/{patient}.log",
    benchmark:
        "results/benchmarks/studies/propagation/embed_box_slices/{fusion}/{patient}.tsv"
    script:
        "../scripts/embed_box_slices.py"


rule propagate_litemedsam:
    input:
        unpack(propagation_inputs),
    output:
        directory("results/studies/propagation/{protocol}/predictions/litemedsam_{variant}_{fusion}"),
    params:
        patients=litemedsam_evaluated_patients,
        floor_mm2=config["studies"]["propagation"]["floor_mm2"],
        device=config["litemedsam"]["device"],
        code=script_code("propagate_litemedsam.py"),
    resources:
        gpu=1,
        mem_mb=hnseg.sam.sizing.predict_mb(False),
        runtime=propagate_litemedsam_minutes,
    threads: gpu_job_threads()
    log:
        "logs/studies/propagation/{protocol}/propagate_litemedsam/{variant}_{fusion}.log",
    benchmark:
        "results/benchmarks/studies/propagation/{protocol}/propagate_litemedsam/{variant}_{fusion}.tsv"
    script:
        "../scripts/propagate_litemedsam.py"


rule propagation_evaluate:
    input:
        unpack(propagation_evaluate_inputs),
    output:
        "results/studies/propagation/{protocol}/metrics/{method}.csv",
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
        "logs/studies/propagation/{protocol}/evaluate/{method}.log",
    benchmark:
        "results/benchmarks/studies/propagation/{protocol}/evaluate/{method}.tsv"
    script:
        "../scripts/evaluate.py"


rule summarize_propagation:
    input:
        tables=propagation_study_tables,
        prompts=propagation_study_prompts,
        boxes=propagation_study_boxes,
    output:
        scores="results/studies/propagation/scores.csv",
        summary=report(
            "results/studies/propagation/summary.csv",
            caption="../report/propagation.rst",
            category="Prompt studies",
            labels={"table": "propagation study"},
        ),
    params:
        tables=propagation_study_table_records,
        patients=propagation_study_patients,
        resamples=config["report"]["bootstrap_resamples"],
        seed=config["report"]["seed"],
        level=config["report"]["ci_level"],
        code=script_code("summarize_propagation.py"),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    log:
        "logs/studies/propagation/summarize.log",
    benchmark:
        "results/benchmarks/studies/propagation/summarize.tsv"
    script:
        "../scripts/summarize_propagation.py"


# The target: `snakemake propagation_study` (then `snakemake` rebuilds the report with its section).
rule propagation_study:
    input:
        rules.summarize_propagation.output,
