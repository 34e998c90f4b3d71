# Import, per patient, from the patient's DICOM folder or from the NIfTI files the sheet names (hnseg.dicom.importer,
# hnseg.nifti.importer: the same volumes, the record's "source" says which). Three rules so that a patient without
# MR or PET loses only the branches that need them: CT and labels feed every method, PET and MRI only the fusions
# and nnU-Net that use them. Each rule's declared output is its stage record, always written: status ok with the
# volumes beside it, or failed with the reason (hnseg.cohort). The cohort checkpoint reads the records; the volumes
# are read only for patients it admits.
# Resources: a realistic patient (CT 512x512x150, PET, 2 MR) imports in 12 s at 723 MB peak (benchmarks/RESULTS.md).


rule import_ct:
    input:
        unpack(ct_import_sources),
    output:
        record="results/imported/{patient}/import.json",
    params:
        options=import_options(),
        nifti=ct_nifti_files,
        nifti_labels=nifti_label_values(),
        code=script_code("import_ct.py"),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
    log:
        "logs/import_ct/{patient}.log",
    benchmark:
        "results/benchmarks/import_ct/{patient}.tsv"
    script:
        "../scripts/import_ct.py"


rule import_pet:
    input:
        unpack(pet_import_sources),
    output:
        record="results/imported/{patient}/pet.json",
    params:
        options=import_options(),
        weight_kg=patient_weight_kg,
        nifti=pet_nifti_files,
        code=script_code("import_pet.py"),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    log:
        "logs/import_pet/{patient}.log",
    benchmark:
        "results/benchmarks/import_pet/{patient}.tsv"
    script:
        "../scripts/import_pet.py"


rule import_mri:
    input:
        unpack(mri_import_sources),
    output:
        record="results/imported/{patient}/mri.json",
    params:
        options=import_options(),
        nifti=mri_nifti_files,
        code=script_code("import_mri.py"),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    log:
        "logs/import_mri/{patient}.log",
    benchmark:
        "results/benchmarks/import_mri/{patient}.tsv"
    script:
        "../scripts/import_mri.py"
