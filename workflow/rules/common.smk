# Parse-time state of the workflow: validated config, the cohort, its split, and input functions named by intent.
# The logic lives in hnseg (hnseg.config, hnseg.workflow, hnseg.split); this file only wires it in.

import os

import hnseg.cohort
import hnseg.config
import hnseg.workflow
from hnseg.provenance import import_closure_hash

hnseg.config.validate_config(config)

PATIENT_ROWS = {row["patient"]: row for row in hnseg.workflow.cohort_patients(config)}
PATIENTS = sorted(PATIENT_ROWS)
_stratify_by = config["split"].get("stratify_by")
SPLIT = hnseg.workflow.split_from_config(
    config,
    PATIENTS,
    {p: r[_stratify_by] for p, r in PATIENT_ROWS.items()} if _stratify_by else None,
)
TRAIN, VAL, TEST = (SPLIT.patients(s) for s in ("train", "val", "test"))
# Patients every method predicts and is scored on (evaluate.subsets: the test subset, and by default val too).
EVALUATED = [p for subset in config["evaluate"]["subsets"] for p in SPLIT.patients(subset)]
LITEMEDSAM_METHODS = [
    f"litemedsam_{variant}_{fusion}" for fusion in config["fusion"]["kinds"] for variant in ("zeroshot", "finetuned")
]
NNUNET_METHODS = ["nnunet_nobox", "nnunet_box", "nnunet_nobox_boxmasked"]
METHODS = LITEMEDSAM_METHODS + NNUNET_METHODS
# Branches a patient can enter (hnseg.cohort.BRANCH_STAGES says which stages each needs): one per fusion, and nnunet.
BRANCHES = [*config["fusion"]["kinds"], "nnunet"]


wildcard_constraints:
    patient="|".join(PATIENTS),
    fusion="|".join(config["fusion"]["kinds"]),
    variant="zeroshot|finetuned",
    method="|".join(METHODS),


def script_code(script):
    """Code trigger of a rule: a digest of its script and every hnseg module the script imports, transitively.

    Put in a rule's params, it reruns the rule when that code changes, and only then (hnseg.provenance)."""
    return import_closure_hash(os.path.join(workflow.basedir, "workflow", "scripts", script))


# ---- The cohort: which patients enter which branch, read through the checkpoint (workflow/rules/cohort.smk) ----


def stage_records(patients=None):
    """The records of every per-patient stage that can refuse a patient: what the cohort checkpoint reads."""
    return [
        path
        for patient in patients or PATIENTS
        for path in (
            f"results/imported/{patient}/import.json",
            f"results/imported/{patient}/pet.json",
            f"results/imported/{patient}/mri.json",
            f"results/registered/{patient}/pet.json",
            f"results/registered/{patient}/mri.json",
        )
    ]


_TABLES = {}


def _checkpoint_table(name, reader):
    """A table the cohort checkpoint wrote, read once per version of the file (input functions run per job)."""
    path = getattr(checkpoints.cohort.get().output, name)
    key = (path, os.stat(path).st_mtime_ns)
    if key not in _TABLES:
        _TABLES[key] = reader(path)
    return _TABLES[key]


def cohort_members(branch, subsets):
    """Patients of a branch (a fusion kind, or nnunet) in the given subsets, sorted; known after the checkpoint."""
    return hnseg.cohort.members(_checkpoint_table("cohort", hnseg.cohort.read_cohort), branch, subsets)


def methods_that_run():
    """Evaluated methods whose branch has the patients they need (results/methods.tsv says why the others do not)."""
    plans = _checkpoint_table("methods", hnseg.cohort.read_method_plans)
    return [plan.method for plan in plans if plan.runs]


def method_branch(method):
    return hnseg.cohort.method_branch(method)[0]


def evaluated_patients(wildcards):
    """The patients a method predicts and is scored on: its branch's patients of evaluate.subsets."""
    return cohort_members(method_branch(wildcards.method), config["evaluate"]["subsets"])


def evaluated_subsets(wildcards):
    """Subset of each of the method's evaluated patients, in the same order."""
    return [SPLIT.subset[p] for p in evaluated_patients(wildcards)]


def patients_sheet():
    """The sheet the split is made from: written by synthesize_cohort for the demo, the user's otherwise."""
    if config["synthetic"]["enabled"]:
        return "resources/synthetic/patients.tsv"
    return config["patients"]


def synthetic_cohort_outputs():
    if not config["synthetic"]["enabled"]:
        return []
    return [patients_sheet()] + expand("resources/synthetic/dicom/{patient}", patient=PATIENTS)


def patient_dicom_dir(wildcards):
    return PATIENT_ROWS[wildcards.patient]["dicom_dir"]


def patient_weight_kg(wildcards):
    """The sheet's weight for SUV when the PET header has none (None when the sheet has no weight)."""
    return PATIENT_ROWS[wildcards.patient].get("weight_kg")


def import_options():
    return dict(config["import"])


def imported(kind, patients=None):
    """Import outputs of a kind (ct, labels, pet, t1, t2) for the given patients (default: all)."""
    return expand("results/imported/{patient}/{kind}.nii.gz", patient=patients or PATIENTS, kind=kind)


def registration_options():
    """What register_mri reads of the registration section: all but the QC-only keys, so a QC number never
    reruns a registration."""
    from hnseg.registration.options import registration_params

    return registration_params(config["registration"])


def registration_qc_options():
    return dict(config["registration"]["qc"])


def registration_threads():
    """One ITK thread in deterministic mode (parallelism comes from running patients side by side)."""
    reg = config["registration"]
    return 1 if reg["deterministic"] else reg["threads"]


def resample_pet_inputs(wildcards):
    """The records of the CT and PET imports (the volumes lie beside them)."""
    imported = f"results/imported/{wildcards.patient}"
    return {"ct_record": f"{imported}/import.json", "pet_record": f"{imported}/pet.json"}


def register_mri_inputs(wildcards):
    """The records of the CT and MR imports (the volumes lie beside them)."""
    imported = f"results/imported/{wildcards.patient}"
    return {"ct_record": f"{imported}/import.json", "mri_record": f"{imported}/mri.json"}


def registration_qc_inputs(wildcards):
    """The registration records (register_mri's, and resample_pet's for the CT and labels beside it); on the
    synthetic cohort also the truth, for TRE and GTV-T Dice in qc.json."""
    registered = f"results/registered/{wildcards.patient}"
    inputs = {"mri_record": f"{registered}/mri.json", "pet_record": f"{registered}/pet.json"}
    if config["synthetic"]["enabled"]:
        inputs["truth"] = f"resources/synthetic/truth/{wildcards.patient}"
    return inputs


def registered(kinds, patients=None):
    """Registration outputs (ct, labels, pet, t1, t2, qc) for the given patients (default: all)."""
    files = {"ct": "ct.nii.gz", "labels": "labels.nii.gz", "pet": "pet.nii.gz", "t1": "t1.nii.gz", "t2": "t2.nii.gz"}
    files["qc"] = "qc.json"
    return expand(
        "results/registered/{patient}/{file}", patient=patients or PATIENTS, file=[files[k] for k in kinds]
    )


def fusion_inputs(wildcards):
    """Volumes a fusion needs, all on the CT grid: the imported CT alone, or the registered CT, PET, T1w, T2w."""
    labels = f"results/imported/{wildcards.patient}/labels.nii.gz"
    if wildcards.fusion == "ct":
        return {"ct": f"results/imported/{wildcards.patient}/ct.nii.gz", "labels": labels}
    registered = f"results/registered/{wildcards.patient}"
    return {
        "ct": f"{registered}/ct.nii.gz",
        "pet": f"{registered}/pet.nii.gz",
        "t1": f"{registered}/t1.nii.gz",
        "t2": f"{registered}/t2.nii.gz",
        "labels": labels,
    }


def fused_slices(fusions, patients=None):
    return expand("results/slices/{fusion}/{patient}.{ext}", fusion=fusions, patient=patients or PATIENTS, ext=["npz", "png"])


def litemedsam_predict_inputs(wildcards):
    """Shards, prompts and reference grids of the evaluated patients; the fine-tuned checkpoint if finetuned."""
    inputs = {
        "shards": expand("results/slices/{fusion}/{patient}.npz", fusion=wildcards.fusion, patient=EVALUATED),
        "prompts": expand("results/prompts/{patient}.json", patient=EVALUATED),
        "references": expand("results/imported/{patient}/labels.nii.gz", patient=EVALUATED),
    }
    if wildcards.variant == "finetuned":
        inputs["checkpoint"] = f"results/models/litemedsam/{wildcards.fusion}/best.pth"
    return inputs


def litemedsam_predictions(fusions):
    return expand(
        "results/predictions/litemedsam_{variant}_{fusion}/timings.json", variant=["zeroshot", "finetuned"], fusion=fusions
    )


def evaluate_inputs(wildcards):
    """A method's predictions of the evaluated patients and their reference labels on the CT grid."""
    return {
        "predictions": expand("results/predictions/{method}/{patient}.nii.gz", method=wildcards.method, patient=EVALUATED),
        "references": expand("results/imported/{patient}/labels.nii.gz", patient=EVALUATED),
    }


def evaluated_subsets():
    """Subset of each evaluated patient, in the order of EVALUATED."""
    return [SPLIT.subset[p] for p in EVALUATED]


def method_metrics(methods):
    return expand("results/metrics/{method}.csv", method=methods)


def final_outputs():
    """What `rule all` builds; grows as stages land."""
    return [
        *synthetic_cohort_outputs(),
        "results/split.tsv",
        *imported(["ct", "labels", "pet", "t1", "t2"]),
        *expand("results/prompts/{patient}.json", patient=PATIENTS),
        *registered(["ct", "labels", "pet", "t1", "t2", "qc"]),
        *fused_slices(config["fusion"]["kinds"]),
        *litemedsam_predictions(config["fusion"]["kinds"]),
        *expand("results/predictions/nnunet_{variant}/timings.json", variant=["nobox", "box"]),
        "results/predictions/nnunet_nobox_boxmasked/boxmask.json",
        *method_metrics(METHODS),
        "results/metrics/summary.csv",
    ]
