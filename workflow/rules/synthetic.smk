# Synthetic cohort (demo only): a deterministic head-and-neck DICOM export per patient, with its ground truth.


rule synthesize_patient:
    output:
        dicom=directory("resources/synthetic/dicom/{patient}"),
        truth=directory("resources/synthetic/truth/{patient}"),
    params:
        seed=config["synthetic"]["seed"],
        size=config["synthetic"]["size"],
        code=script_code("synthesize_patient.py"),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=15,
    log:
        "logs/synthesize_patient/{patient}.log",
    benchmark:
        "results/benchmarks/synthesize_patient/{patient}.tsv"
    script:
        "../scripts/synthesize_patient.py"


rule synthesize_cohort:
    input:
        expand("resources/synthetic/dicom/{patient}", patient=PATIENTS),
    output:
        "resources/synthetic/patients.tsv",
    params:
        patients=PATIENTS,
        code=script_code("synthesize_cohort.py"),
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    log:
        "logs/synthesize_cohort.log",
    benchmark:
        "results/benchmarks/synthesize_cohort.tsv"
    localrule: True
    script:
        "../scripts/synthesize_cohort.py"
