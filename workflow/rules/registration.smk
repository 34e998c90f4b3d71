# Registration, per patient: everything onto the CT grid (DESIGN.md section 3.3). Two rules: resample_pet places the
# CT and labels (unchanged) and the PET on the CT grid; register_mri registers T1w and T2w to the CT. Split so that
# retuning the registration never reruns the PET and an MR failure is reported on its own; the CT-only methods read
# the imported CT, the registered folder feeds the multimodal methods and nnU-Net, which need all of it.


rule resample_pet:
    input:
        ct="results/imported/{patient}/ct.nii.gz",
        labels="results/imported/{patient}/labels.nii.gz",
        pet="results/imported/{patient}/pet.nii.gz",
    output:
        ct="results/registered/{patient}/ct.nii.gz",
        labels="results/registered/{patient}/labels.nii.gz",
        pet="results/registered/{patient}/pet.nii.gz",
    params:
        body_threshold_hu=config["registration"]["body_threshold_hu"],
        code=script_code("register_mri.py"),
    log:
        "logs/resample_pet/{patient}.log",
    benchmark:
        "results/benchmarks/resample_pet/{patient}.tsv"
    resources:
        mem_mb=2000,
    threads: 1
    script:
        "../scripts/register_mri.py"


rule register_mri:
    input:
        unpack(registration_inputs),
    output:
        t1="results/registered/{patient}/t1.nii.gz",
        t2="results/registered/{patient}/t2.nii.gz",
        t1_to_ct=directory("results/registered/{patient}/t1_to_ct"),
        t2_to_ct=directory("results/registered/{patient}/t2_to_ct"),
        qc="results/registered/{patient}/qc.json",
        qc_png="results/registered/{patient}/qc.png",
    params:
        options=registration_options(),
        code=script_code("register_mri.py"),
    log:
        "logs/register_mri/{patient}.log",
    benchmark:
        "results/benchmarks/register_mri/{patient}.tsv"
    resources:
        mem_mb=4000,
    threads: registration_threads()
    script:
        "../scripts/register_mri.py"
