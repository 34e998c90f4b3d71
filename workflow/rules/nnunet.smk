# nnU-Net v2 baselines (DESIGN.md sections 3.9 and 4): `nobox` (CT, PET, T1w, T2w) and `box` (plus the slice-wise boxes
# of every target, from the shared prompts). Per variant: the raw dataset with the study's split pinned in
# splits_final.json, nnU-Net's plans and preprocessing, training of fold 0 (resumable), prediction of the evaluated
# patients. nnunet_nobox_boxmasked is the no-box prediction kept only inside the boxes. Every nnU-Net folder is
# under results/nnunet/ (raw, preprocessed, results); hnseg.nnunet.run sets nnU-Net's environment per job.
# Patients: the cohort's nnunet branch (every patient with CT, PET, T1w and T2w on the CT grid).


wildcard_constraints:
    nnunet_dataset="|".join(NNUNET_DATASETS.values()),
    nnunet_variant="|".join(NNUNET_DATASETS),


rule nnunet_dataset:
    priority: 1  # on the way to nnunet_train
    input:
        unpack(nnunet_training_volumes),
    output:
        directory("results/nnunet/raw/{nnunet_dataset}"),
    params:
        patients=nnunet_training_patients,
        train=nnunet_train_patients,
        val=nnunet_val_patients,
        code=script_code("nnunet_dataset.py"),
    threads: nnunet_preparation_threads(2)
    resources:
        mem_mb=2000,
        runtime=60,
    log:
        "logs/nnunet_dataset/{nnunet_dataset}.log",
    benchmark:
        "results/benchmarks/nnunet_dataset/{nnunet_dataset}.tsv"
    script:
        "../scripts/nnunet_dataset.py"


# The evaluated patients' channels in a folder of their own (not the dataset's imagesTs): changing evaluate.subsets
# then re-predicts without re-planning or re-training.
rule nnunet_test_images:
    input:
        unpack(nnunet_evaluated_volumes),
    output:
        temp(directory("results/nnunet/imagesTs/{nnunet_dataset}")),
    params:
        patients=nnunet_evaluated_patients,
        code=script_code("nnunet_test_images.py"),
    threads: nnunet_preparation_threads(2)
    resources:
        mem_mb=2000,
        runtime=30,
    log:
        "logs/nnunet_test_images/{nnunet_dataset}.log",
    benchmark:
        "results/benchmarks/nnunet_test_images/{nnunet_dataset}.tsv"
    script:
        "../scripts/nnunet_test_images.py"


# Fingerprint and preprocessing are CPU work in nnU-Net's own worker processes (one per thread), no GPU.
rule nnunet_plan:
    priority: 1  # on the way to nnunet_train
    input:
        "results/nnunet/raw/{nnunet_dataset}",
    output:
        directory("results/nnunet/preprocessed/{nnunet_dataset}"),
    params:
        dataset_id=nnunet_dataset_id,
        configuration=config["nnunet"]["configuration"],
        foreground_samples=config["nnunet"]["fingerprint_samples"],
        code=script_code("nnunet_plan.py"),
    threads: nnunet_preparation_threads(8)
    resources:
        mem_mb=16000,
        runtime=240,
    log:
        "logs/nnunet_plan/{nnunet_dataset}.log",
    benchmark:
        "results/benchmarks/nnunet_plan/{nnunet_dataset}.tsv"
    script:
        "../scripts/nnunet_plan.py"


# training.json is written last; nnU-Net's checkpoints beside it are deliberately not outputs, so that Snakemake
# never deletes them: a killed or timed-out job resumes from checkpoint_latest.pth (or only reruns the validation).
rule nnunet_train:
    priority: 1  # the longest job: started first, others fill the cores around it (as finetune_litemedsam)
    input:
        "results/nnunet/preprocessed/{nnunet_dataset}",
    output:
        "results/nnunet/results/{nnunet_dataset}/training.json",
    params:
        dataset_id=nnunet_dataset_id,
        configuration=config["nnunet"]["configuration"],
        epochs=config["nnunet"]["epochs"],
        iterations_per_epoch=config["nnunet"]["iterations_per_epoch"],
        val_iterations_per_epoch=config["nnunet"]["val_iterations_per_epoch"],
        checkpoint_every=config["nnunet"]["checkpoint_every"],
        device=config["nnunet"]["device"],
        seed=config["nnunet"]["seed"],
        final_validation=config["nnunet"]["final_validation"],
        code=script_code("nnunet_train.py"),
    threads: nnunet_job_threads()
    resources:
        gpu=1,
        mem_mb=32000,
        runtime=nnunet_training_minutes,
    log:
        "logs/nnunet_train/{nnunet_dataset}.log",
    benchmark:
        "results/benchmarks/nnunet_train/{nnunet_dataset}.tsv"
    script:
        "../scripts/nnunet_train.py"


rule nnunet_predict:
    input:
        unpack(nnunet_predict_inputs),
    output:
        directory("results/predictions/nnunet_{nnunet_variant}"),
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
        "logs/nnunet_predict/{nnunet_variant}.log",
    benchmark:
        "results/benchmarks/nnunet_predict/{nnunet_variant}.tsv"
    script:
        "../scripts/nnunet_predict.py"


rule nnunet_boxmask:
    input:
        unpack(nnunet_boxmask_inputs),
    output:
        directory("results/predictions/nnunet_nobox_boxmasked"),
    params:
        patients=nnunet_evaluated_patients,
        code=script_code("nnunet_boxmask.py"),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    log:
        "logs/nnunet_boxmask.log",
    benchmark:
        "results/benchmarks/nnunet_boxmask.tsv"
    script:
        "../scripts/nnunet_boxmask.py"
