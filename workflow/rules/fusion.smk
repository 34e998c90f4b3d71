# Windowing and fusion into RGB slices in the LiteMedSAM frame: one shard per patient and fusion, holding the
# slices with targets. The preview draws the prompts on a few slices, so a user sees what the model will see.


rule fuse_slices:
    input:
        unpack(fusion_inputs),
    output:
        "results/slices/{fusion}/{patient}.npz",
    params:
        recipe=fusion_recipe,
        ct_window=config["fusion"]["ct_window"],
        pet_suv_range=config["fusion"]["pet_suv_range"],
        mri_percentiles=config["fusion"]["mri_percentiles"],
        model_size=config["fusion"]["model_size"],
        connectivity=config["prompts"]["node_connectivity"],
        target_unit=config["prompts"]["target_unit"],
        code=script_code("fuse_slices.py"),
    threads: 1
    resources:
        mem_mb=3000,
        runtime=10,
    log:
        "logs/fuse_slices/{fusion}/{patient}.log",
    benchmark:
        "results/benchmarks/fuse_slices/{fusion}/{patient}.tsv"
    script:
        "../scripts/fuse_slices.py"


rule preview_slices:
    input:
        shard="results/slices/{fusion}/{patient}.npz",
        prompts="results/prompts/{patient}.json",
    output:
        "results/slices/{fusion}/{patient}.png",
    params:
        n_slices=4,
        code=script_code("preview_slices.py"),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    log:
        "logs/preview_slices/{fusion}/{patient}.log",
    benchmark:
        "results/benchmarks/preview_slices/{fusion}/{patient}.tsv"
    script:
        "../scripts/preview_slices.py"
