# Registration, per patient: everything onto the CT grid (DESIGN.md section 3.3), in three rules.
# - resample_pet places the CT and labels (unchanged) and the PET on the CT grid;
# - register_mri registers T1w and T2w to the CT (rigid, then SyN) and warps them onto it;
# - registration_qc measures how good that registration is (qc.json, qc.png), from its record and transforms.
# resample_pet and register_mri are stages of the cohort contract (hnseg.cohort): their declared output is a record
# whose status (ok, failed, not_run) says whether they made their volumes, which are not declared outputs. So a
# patient whose PET or MR is refused loses only the branches that need it. The QC is a rule of its own so that
# editing a QC measure or picture never reruns a registration (each rule's code trigger is its script's import
# closure, and register_mri's closure holds no QC code); it runs only for patients whose registration is ok.
# Resources from benchmarks/registration.py (benchmarks/RESULTS.md), one synthetic patient at clinical size
# (512x512 CT, realistic MR) on 2 busy cores: peak memory 0.8 GB (resample_pet), 2.0 GB (register_mri, one ITK
# thread), 2.0 GB (registration_qc); wall time 1, 6.3 and 1.3 minutes at a load of 11-13 (the registration alone
# took 69 s on idle cores). Runtimes (minutes) leave room for a slower CT or a busier node.


rule resample_pet:
    input:
        unpack(resample_pet_inputs),
    output:
        record="results/registered/{patient}/pet.json",
    params:
        body_threshold_hu=config["registration"]["body_threshold_hu"],
        code=script_code("resample_pet.py"),
    log:
        "logs/resample_pet/{patient}.log",
    benchmark:
        "results/benchmarks/resample_pet/{patient}.tsv"
    threads: 1
    resources:
        mem_mb=1500,
        runtime=10,
    script:
        "../scripts/resample_pet.py"


rule register_mri:
    input:
        unpack(register_mri_inputs),
    output:
        record="results/registered/{patient}/mri.json",
    params:
        options=registration_options(),
        code=script_code("register_mri.py"),
    log:
        "logs/register_mri/{patient}.log",
    benchmark:
        "results/benchmarks/register_mri/{patient}.tsv"
    threads: registration_threads()
    resources:
        mem_mb=4000,
        runtime=20,
    script:
        "../scripts/register_mri.py"


rule registration_qc:
    input:
        unpack(registration_qc_inputs),
    output:
        qc="results/registered/{patient}/qc.json",
        qc_png="results/registered/{patient}/qc.png",
    params:
        qc=registration_qc_options(),
        code=script_code("registration_qc.py"),
    log:
        "logs/registration_qc/{patient}.log",
    benchmark:
        "results/benchmarks/registration_qc/{patient}.tsv"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=10,
    script:
        "../scripts/registration_qc.py"
