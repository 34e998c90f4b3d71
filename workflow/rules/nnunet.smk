# nnU-Net v2 baselines (DESIGN.md sections 3.9 and 4): `nobox` (CT, PET, T1w, T2w) and `box` (plus the slice-wise
# boxes of every target, from the shared prompts). Per variant: the raw dataset with the study's split pinned in
# splits_final.json, nnU-Net's plans and preprocessing, training of fold 0 (resumable), prediction of the evaluated
# patients. nnunet_nobox_boxmasked is the no-box prediction kept only inside the boxes. Every nnU-Net folder is
# under results/nnunet/ (raw, preprocessed, results); hnseg.nnunet.run sets nnU-Net's environment per job.

import hnseg.nnunet


def nnunet_prompts(dataset, patients):
    """The prompts of the patients for the box dataset (its box channel), none for the no-box dataset."""
    if hnseg.nnunet.parse_dataset_name(dataset)[0] == "box":
        return expand("results/prompts/{patient}.json", patient=patients)
    return []


wildcard_constraints:
    nnunet_dataset="|".join(hnseg.nnunet.dataset_names(config["nnunet"]).values()),
    nnunet_variant="|".join(hnseg.nnunet.VARIANTS),


rule nnunet_dataset:
    input:
        ct=expand("results/registered/{patient}/ct.nii.gz", patient=TRAIN + VAL),
        pet=expand("results/registered/{patient}/pet.nii.gz", patient=TRAIN + VAL),
        t1=expand("results/registered/{patient}/t1.nii.gz", patient=TRAIN + VAL),
        t2=expand("results/registered/{patient}/t2.nii.gz", patient=TRAIN + VAL),
        labels=expand("results/registered/{patient}/labels.nii.gz", patient=TRAIN + VAL),
        prompts=lambda wc: nnunet_prompts(wc.nnunet_dataset, TRAIN + VAL),
    output:
        directory("results/nnunet/raw/{nnunet_dataset}"),
    params:
        patients=TRAIN + VAL,
        train=TRAIN,
        val=VAL,
        code=script_code("nnunet_dataset.py"),
    threads: 2
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
        ct=expand("results/registered/{patient}/ct.nii.gz", patient=EVALUATED),
        pet=expand("results/registered/{patient}/pet.nii.gz", patient=EVALUATED),
        t1=expand("results/registered/{patient}/t1.nii.gz", patient=EVALUATED),
        t2=expand("results/registered/{patient}/t2.nii.gz", patient=EVALUATED),
        prompts=lambda wc: nnunet_prompts(wc.nnunet_dataset, EVALUATED),
    output:
        temp(directory("results/nnunet/imagesTs/{nnunet_dataset}")),
    params:
        patients=EVALUATED,
        code=script_code("nnunet_test_images.py"),
    threads: 2
    log:
        "logs/nnunet_test_images/{nnunet_dataset}.log",
    script:
        "../scripts/nnunet_test_images.py"


rule nnunet_plan:
    input:
        "results/nnunet/raw/{nnunet_dataset}",
    output:
        directory("results/nnunet/preprocessed/{nnunet_dataset}"),
    params:
        dataset_id=lambda wc: hnseg.nnunet.parse_dataset_name(wc.nnunet_dataset)[1],
        configuration=config["nnunet"]["configuration"],
        foreground_samples=config["nnunet"]["fingerprint_samples"],
        code=script_code("nnunet_plan.py"),
    threads: workflow.cores
    log:
        "logs/nnunet_plan/{nnunet_dataset}.log",
    benchmark:
        "results/benchmarks/nnunet_plan/{nnunet_dataset}.tsv"
    script:
        "../scripts/nnunet_plan.py"


# training.json is written last; nnU-Net's checkpoints beside it are deliberately not outputs, so that Snakemake
# never deletes them: a killed or timed-out job resumes from checkpoint_latest.pth (or only reruns the validation).
rule nnunet_train:
    input:
        "results/nnunet/preprocessed/{nnunet_dataset}",
    output:
        "results/nnunet/results/{nnunet_dataset}/training.json",
    params:
        dataset_id=lambda wc: hnseg.nnunet.parse_dataset_name(wc.nnunet_dataset)[1],
        configuration=config["nnunet"]["configuration"],
        epochs=config["nnunet"]["epochs"],
        iterations_per_epoch=config["nnunet"]["iterations_per_epoch"],
        val_iterations_per_epoch=config["nnunet"]["val_iterations_per_epoch"],
        device=config["nnunet"]["device"],
        seed=config["nnunet"]["seed"],
        final_validation=config["nnunet"]["final_validation"],
        code=script_code("nnunet_train.py"),
    resources:
        gpu=1,
    threads: workflow.cores
    log:
        "logs/nnunet_train/{nnunet_dataset}.log",
    benchmark:
        "results/benchmarks/nnunet_train/{nnunet_dataset}.tsv"
    script:
        "../scripts/nnunet_train.py"


rule nnunet_predict:
    input:
        raw=lambda wc: f"results/nnunet/raw/{hnseg.nnunet.dataset_for(config['nnunet'], wc.nnunet_variant)}",
        images=lambda wc: f"results/nnunet/imagesTs/{hnseg.nnunet.dataset_for(config['nnunet'], wc.nnunet_variant)}",
        model=lambda wc: f"results/nnunet/results/{hnseg.nnunet.dataset_for(config['nnunet'], wc.nnunet_variant)}/training.json",
        references=expand("results/imported/{patient}/labels.nii.gz", patient=EVALUATED),
    output:
        predictions=expand("results/predictions/nnunet_{{nnunet_variant}}/{patient}.nii.gz", patient=EVALUATED),
        timings="results/predictions/nnunet_{nnunet_variant}/timings.json",
    params:
        patients=EVALUATED,
        dataset_id=lambda wc: config["nnunet"][f"dataset_id_{wc.nnunet_variant}"],
        configuration=config["nnunet"]["configuration"],
        device=config["nnunet"]["device"],
        tta=config["nnunet"]["tta"],
        code=script_code("nnunet_predict.py"),
    resources:
        gpu=1,
    threads: workflow.cores
    log:
        "logs/nnunet_predict/{nnunet_variant}.log",
    benchmark:
        "results/benchmarks/nnunet_predict/{nnunet_variant}.tsv"
    script:
        "../scripts/nnunet_predict.py"


rule nnunet_boxmask:
    input:
        predictions=expand("results/predictions/nnunet_nobox/{patient}.nii.gz", patient=EVALUATED),
        prompts=expand("results/prompts/{patient}.json", patient=EVALUATED),
    output:
        predictions=expand("results/predictions/nnunet_nobox_boxmasked/{patient}.nii.gz", patient=EVALUATED),
        summary="results/predictions/nnunet_nobox_boxmasked/boxmask.json",
    params:
        patients=EVALUATED,
        code=script_code("nnunet_boxmask.py"),
    log:
        "logs/nnunet_boxmask.log",
    script:
        "../scripts/nnunet_boxmask.py"
