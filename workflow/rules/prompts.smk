# Box prompts, per patient: the targets (3D instances) and their tight and perturbed boxes on every slice.
# Every method reads the same file, so every method sees the same prompts.


rule make_prompts:
    priority: 1  # a second of work that nnU-Net's box dataset and the fine-tuning wait for
    input:
        labels="results/imported/{patient}/labels.nii.gz",
        record="results/imported/{patient}/import.json",
    output:
        "results/prompts/{patient}.json",
    params:
        margin_mm=config["prompts"]["margin_mm"],
        seed=config["prompts"]["seed"],
        connectivity=config["prompts"]["node_connectivity"],
        target_unit=config["prompts"]["target_unit"],
        code=script_code("make_prompts.py"),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    log:
        "logs/make_prompts/{patient}.log",
    benchmark:
        "results/benchmarks/make_prompts/{patient}.tsv"
    script:
        "../scripts/make_prompts.py"
