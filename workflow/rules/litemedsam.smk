# LiteMedSAM: the official encoder's embeddings of the slices that need them (per patient), fine-tuning per fusion
# (train shards, selection on val shards) and prediction of the evaluated patients (evaluate.subsets: test, and val
# by default), zero-shot with the official checkpoint and with the fine-tuned one, from the shared box prompts.
# Resources: hnseg.sam.sizing (measured costs, benchmarks/RESULTS.md).


rule embed_slices:
    input:
        shard="results/slices/{fusion}/{patient}.npz",
    output:
        "results/embeddings/{fusion}/{patient}.npz",
    params:
        dtype=config["litemedsam"]["embedding_dtype"],
        device=config["litemedsam"]["device"],
        code=script_code("embed_litemedsam.py"),
    resources:
        gpu=1,
        mem_mb=hnseg.sam.sizing.ENCODER_JOB_MB,
        runtime=embed_slices_minutes,
    threads: gpu_job_threads()
    log:
        "logs/embed_slices/{fusion}/{patient}.log",
    benchmark:
        "results/benchmarks/embed_slices/{fusion}/{patient}.tsv"
    script:
        "../scripts/embed_litemedsam.py"


# Long jobs start first (priority): short per-patient jobs then fill the cores around them, and no long job is left
# running alone at the end of a run on a small machine.
rule finetune_litemedsam:
    priority: 1
    input:
        unpack(litemedsam_finetune_inputs),
    output:
        best="results/models/litemedsam/{fusion}/best.pth",
        history="results/models/litemedsam/{fusion}/history.csv",
    params:
        finetune=config["litemedsam"]["finetune"],
        margin_mm=config["prompts"]["margin_mm"],
        embedding_dtype=config["litemedsam"]["embedding_dtype"],
        device=config["litemedsam"]["device"],
        code=script_code("finetune_litemedsam.py"),
    resources:
        gpu=1,
        mem_mb=finetune_litemedsam_mb,
        runtime=finetune_litemedsam_minutes,
    threads: gpu_job_threads()
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
        directory("results/predictions/litemedsam_{variant}_{fusion}"),
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
        "logs/predict_litemedsam/{variant}_{fusion}.log",
    benchmark:
        "results/benchmarks/predict_litemedsam/{variant}_{fusion}.tsv"
    script:
        "../scripts/predict_litemedsam.py"
