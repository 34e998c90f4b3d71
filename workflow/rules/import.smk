# DICOM import, per patient. Three rules so that a patient without MR or PET loses only the branches that need
# them: CT and labels feed every method, PET and MRI only the multimodal ones and nnU-Net.


rule import_ct:
    input:
        dicom=patient_dicom_dir,
    output:
        ct="results/imported/{patient}/ct.nii.gz",
        labels="results/imported/{patient}/labels.nii.gz",
        record="results/imported/{patient}/import.json",
    params:
        options=import_options(),
        code=script_code("import_ct.py"),
    log:
        "logs/import_ct/{patient}.log",
    benchmark:
        "results/benchmarks/import_ct/{patient}.tsv"
    script:
        "../scripts/import_ct.py"


rule import_pet:
    input:
        dicom=patient_dicom_dir,
    output:
        pet="results/imported/{patient}/pet.nii.gz",
        record="results/imported/{patient}/pet.json",
    params:
        options=import_options(),
        weight_kg=patient_weight_kg,
        code=script_code("import_pet.py"),
    log:
        "logs/import_pet/{patient}.log",
    benchmark:
        "results/benchmarks/import_pet/{patient}.tsv"
    script:
        "../scripts/import_pet.py"


rule import_mri:
    input:
        dicom=patient_dicom_dir,
    output:
        t1="results/imported/{patient}/t1.nii.gz",
        t2="results/imported/{patient}/t2.nii.gz",
        record="results/imported/{patient}/mri.json",
    params:
        options=import_options(),
        code=script_code("import_mri.py"),
    log:
        "logs/import_mri/{patient}.log",
    benchmark:
        "results/benchmarks/import_mri/{patient}.tsv"
    script:
        "../scripts/import_mri.py"
