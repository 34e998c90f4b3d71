# hnseg: Ren et al. 2024, "Segment anything model for head and neck tumor segmentation with CT, PET and MRI
# multi-modality images", from raw DICOM to the final figures. Architecture and contracts: DESIGN.md.
#
#   snakemake --configfile config/demo.yaml --cores 2        the synthetic demo
#   snakemake --cores 32 --resources gpu=2                   your cohort (config/patients.tsv)
#   snakemake --workflow-profile profiles/slurm              the same on SLURM

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/synthetic.smk"
include: "workflow/rules/split.smk"
include: "workflow/rules/import.smk"
include: "workflow/rules/registration.smk"
include: "workflow/rules/cohort.smk"
include: "workflow/rules/prompts.smk"
include: "workflow/rules/fusion.smk"
include: "workflow/rules/litemedsam.smk"
include: "workflow/rules/nnunet.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/export.smk"
include: "workflow/rules/studies.smk"


rule all:
    input:
        synthetic_cohort_outputs(),
        "results/split.tsv",
        outputs_after_the_cohort,
    default_target: True


onsuccess:
    print_cohort_summary()
