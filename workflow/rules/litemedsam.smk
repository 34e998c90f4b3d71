# LiteMedSAM: fine-tuning per fusion (train shards, selection on val shards) and prediction of the evaluated
# patients (evaluate.subsets: test, and val by default), zero-shot with the official checkpoint and with the
# fine-tuned one, from the shared box prompts.


rule finetune_litemedsam:
    input:
        train=lambda wc: expand("results/slices/{fusion}/{patient}.npz", fusion=wc.fusion, patient=TRAIN),
        val=lambda wc: expand("results/slices/{fusion}/{patient}.npz", fusion=wc.fusion, patient=VAL),
    output:
        best="results/models/litemedsam/{fusion}/best.pth",
        history="results/models/litemedsam/{fusion}/history.csv",
    params:
        finetune=config["litemedsam"]["finetune"],
        margin_mm=config["prompts"]["margin_mm"],
        device=config["litemedsam"]["device"],
        code=script_code("finetune_litemedsam.py"),
    resources:
        gpu=1,
    threads: workflow.cores
    log:
        "logs/finetune_litemedsam/{fusion}.log",
    benchmark:
        "results/benchmarks/finetune_litemedsam/{fusion}.tsv"
    script:
        "../scripts/finetune_litemedsam.py"


rule predict_litemedsam:
    input:
        unpack(litemedsam_predict_inputs),
    output:
        predictions=expand("results/predictions/litemedsam_{{variant}}_{{fusion}}/{patient}.nii.gz", patient=EVALUATED),
        timings="results/predictions/litemedsam_{variant}_{fusion}/timings.json",
    params:
        patients=EVALUATED,
        threshold=config["litemedsam"]["threshold"],
        device=config["litemedsam"]["device"],
        code=script_code("predict_litemedsam.py"),
    resources:
        gpu=1,
    threads: workflow.cores
    log:
        "logs/predict_litemedsam/{variant}_{fusion}.log",
    benchmark:
        "results/benchmarks/predict_litemedsam/{variant}_{fusion}.tsv"
    script:
        "../scripts/predict_litemedsam.py"
