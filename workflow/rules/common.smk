# Parse-time state of the workflow: validated config, the cohort, its split, and input functions named by intent.
# The logic lives in hnseg (hnseg.config, hnseg.workflow, hnseg.split); this file only wires it in.

import math
import os
from pathlib import Path

import hnseg.cohort
import hnseg.config
import hnseg.fusion
import hnseg.nnunet
import hnseg.sam.sizing
import hnseg.workflow
from hnseg.provenance import import_closure_hash

hnseg.config.validate_config(config)
# Fusion kinds are data: each names the sources of its R, G and B channels (hnseg.fusion.fusion_recipes). The config
# keeps the normalised mapping (the older list form becomes the paper's recipes, a fusion set to null by a layered
# config file is dropped), so that list(config["fusion"]["kinds"]) is the study's fusion names everywhere.
FUSION_RECIPES = hnseg.fusion.fusion_recipes(config["fusion"]["kinds"])
config["fusion"]["kinds"] = FUSION_RECIPES

PATIENT_ROWS = {row["patient"]: row for row in hnseg.workflow.cohort_patients(config)}
PATIENTS = sorted(PATIENT_ROWS)
_stratify_by = config["split"].get("stratify_by")
SPLIT = hnseg.workflow.split_from_config(
    config,
    PATIENTS,
    {p: r[_stratify_by] for p, r in PATIENT_ROWS.items()} if _stratify_by else None,
)
LITEMEDSAM_METHODS = [
    f"litemedsam_{variant}_{fusion}" for fusion in config["fusion"]["kinds"] for variant in ("zeroshot", "finetuned")
]
NNUNET_METHODS = ["nnunet_nobox", "nnunet_box", "nnunet_nobox_boxmasked"]
METHODS = LITEMEDSAM_METHODS + NNUNET_METHODS
# Branches a patient can enter: one per fusion, and nnunet. Each needs the stages that make the volumes its methods
# read (hnseg.cohort.stages_for); nnU-Net's volumes are decided at the cohort checkpoint: those every patient of its
# training set has (methods.tsv, column inputs).
BRANCHES = [*config["fusion"]["kinds"], "nnunet"]
BRANCH_VOLUMES = hnseg.cohort.branch_volumes_of(
    {f: hnseg.fusion.fusion_volumes(r) for f, r in FUSION_RECIPES.items()}, config["nnunet"]["volumes"]
)


# A patient id as the sheet's schema allows it, not the list of ids: a 661-way alternation in every file pattern made
# each dry run of the study spend seconds in regular expressions (benchmarks/dag.py).
wildcard_constraints:
    patient="[A-Za-z0-9][A-Za-z0-9_-]{0,63}",
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


# What each import rule reads: the patient's DICOM folder, or the NIfTI files the sheet names. A NIfTI file is an
# input only when it exists: a missing one is that import's error (its record names it), never a stop of the run.
def ct_import_sources(wildcards):
    return hnseg.workflow.import_sources(PATIENT_ROWS[wildcards.patient], "ct")


def pet_import_sources(wildcards):
    return hnseg.workflow.import_sources(PATIENT_ROWS[wildcards.patient], "pet")


def mri_import_sources(wildcards):
    return hnseg.workflow.import_sources(PATIENT_ROWS[wildcards.patient], "mri")


def ct_nifti_files(wildcards):
    """The sheet's NIfTI files import_ct reads ({} for a DICOM patient)."""
    return hnseg.workflow.nifti_files(PATIENT_ROWS[wildcards.patient], "ct")


def pet_nifti_files(wildcards):
    return hnseg.workflow.nifti_files(PATIENT_ROWS[wildcards.patient], "pet")


def mri_nifti_files(wildcards):
    return hnseg.workflow.nifti_files(PATIENT_ROWS[wildcards.patient], "mri")


def nifti_label_values():
    """The label values of GTV-T and GTV-N in NIfTI label files (config import.nifti_labels)."""
    return dict(config["import"].get("nifti_labels") or {"gtv_t": 1, "gtv_n": 2})


def patient_weight_kg(wildcards):
    """The sheet's weight for SUV when the PET header has none (None when the sheet has no weight)."""
    return PATIENT_ROWS[wildcards.patient].get("weight_kg")


def import_options():
    """The DICOM import's settings (the NIfTI label values go to import_ct alone: nifti_label_values)."""
    return {k: v for k, v in config["import"].items() if k != "nifti_labels"}



def registration_options():
    """What register_mri reads of the registration section: all but the QC-only keys, so a QC number never
    reruns a registration."""
    from hnseg.registration.options import registration_params

    return registration_params(config["registration"])


def registration_qc_options():
    return dict(config["registration"]["qc"])


def gpu_job_threads():
    """CPU threads of a job that holds a GPU (config gpu.threads_per_job), so that GPU jobs run side by side."""
    return config["gpu"]["threads_per_job"]


def nnunet_job_threads():
    """CPU threads of nnU-Net's GPU jobs (training, prediction): gpu.nnunet_threads_per_job, else as other GPU jobs."""
    return config["gpu"].get("nnunet_threads_per_job") or gpu_job_threads()


def nnunet_preparation_threads(wanted):
    """Worker processes of nnU-Net's CPU steps (raw dataset, test images, plans): `wanted`, but no more than nnU-Net's
    own jobs get. Where those get one thread (the demo on two cores) the steps then start beside another job as soon
    as a core is free, instead of waiting for the whole machine."""
    return min(wanted, nnunet_job_threads())


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


def fusion_recipe(wildcards):
    """The fusion's sources of R, G and B (config fusion.kinds)."""
    return FUSION_RECIPES[wildcards.fusion]


def fusion_inputs(wildcards):
    """Volumes a fusion reads, all on the CT grid: the imported CT alone (a CT-only fusion), or with the PET the
    registered CT and PET, with MRI the registered T1w and T2w; and the records of the stages that made them.

    Stage volumes are not rule outputs (hnseg.cohort): fusions are only requested, through the cohort checkpoint,
    for patients whose stages made them."""
    volumes = hnseg.fusion.fusion_volumes(FUSION_RECIPES[wildcards.fusion])
    imported = f"results/imported/{wildcards.patient}"
    registered = f"results/registered/{wildcards.patient}"
    # the records link each fusion to the stages that made its volumes
    inputs = {"ct": f"{imported}/ct.nii.gz", "labels": f"{imported}/labels.nii.gz", "import_record": f"{imported}/import.json"}
    if "pet" in volumes:
        inputs |= {"ct": f"{registered}/ct.nii.gz", "pet": f"{registered}/pet.nii.gz", "pet_record": f"{registered}/pet.json"}
    if "t1" in volumes or "t2" in volumes:
        inputs |= {"t1": f"{registered}/t1.nii.gz", "t2": f"{registered}/t2.nii.gz", "mri_record": f"{registered}/mri.json"}
    return inputs


def shards(fusion, patients):
    return expand("results/slices/{fusion}/{patient}.npz", fusion=fusion, patient=patients)


def prompts_of(patients):
    return expand("results/prompts/{patient}.json", patient=patients)


def labels_of(patients):
    """Reference labels on the CT grid (import_ct's)."""
    return expand("results/imported/{patient}/labels.nii.gz", patient=patients)


# ---- LiteMedSAM (workflow/rules/litemedsam.smk) ----


def frozen_encoder():
    """Whether fine-tuning keeps the official encoder (litemedsam.finetune.train_encoder: false): the fine-tuned
    prediction and the fine-tuning's validation then read the official embeddings of rule embed_slices."""
    return not config["litemedsam"]["finetune"]["train_encoder"]


def embeddings_of(fusion, patients):
    return expand("results/embeddings/{fusion}/{patient}.npz", fusion=fusion, patient=patients)


def litemedsam_finetune_inputs(wildcards):
    """Train shards and their prompts to learn from, val shards and prompts to select the epoch on (the fusion's
    branch of the cohort), and with a frozen encoder the val embeddings."""
    train = cohort_members(wildcards.fusion, ["train"])
    val = cohort_members(wildcards.fusion, ["val"])
    inputs = {
        "train": shards(wildcards.fusion, train),
        "train_prompts": prompts_of(train),
        "val": shards(wildcards.fusion, val),
        "val_prompts": prompts_of(val),
    }
    if frozen_encoder():
        inputs["val_embeddings"] = embeddings_of(wildcards.fusion, val)
    return inputs


def litemedsam_evaluated_patients(wildcards):
    return cohort_members(wildcards.fusion, config["evaluate"]["subsets"])


def litemedsam_predict_inputs(wildcards):
    """Prompts and reference grids of the evaluated patients, the fine-tuned checkpoint if finetuned, and the
    official embeddings of their slices (embed_slices), or their shards when the model has an encoder of its own."""
    patients = litemedsam_evaluated_patients(wildcards)
    inputs = {"prompts": prompts_of(patients), "references": labels_of(patients)}
    if wildcards.variant == "finetuned":
        inputs["checkpoint"] = f"results/models/litemedsam/{wildcards.fusion}/best.pth"
    if wildcards.variant == "zeroshot" or frozen_encoder():
        inputs["embeddings"] = embeddings_of(wildcards.fusion, patients)
    else:
        inputs["shards"] = shards(wildcards.fusion, patients)
    return inputs


def embed_slices_minutes(wildcards, input):
    return hnseg.sam.sizing.embed_minutes(hnseg.sam.sizing.shard_slices(input.shard))


def predict_litemedsam_minutes(wildcards, input):
    """From the slices of the evaluated patients (their embeddings hold as many as their shards)."""
    files = input.shards if "shards" in input.keys() else input.embeddings
    return hnseg.sam.sizing.predict_minutes(hnseg.sam.sizing.total_slices(files), "shards" in input.keys())


def predict_litemedsam_mb(wildcards, input):
    return hnseg.sam.sizing.predict_mb("shards" in input.keys())


def _finetune_sizes(input):
    sizing = hnseg.sam.sizing
    return sizing.total_slices(input.train), sizing.total_slices(input.val), config["litemedsam"]["finetune"]


def finetune_litemedsam_minutes(wildcards, input):
    train, val, ft = _finetune_sizes(input)
    lm = config["litemedsam"]
    return hnseg.sam.sizing.finetune_minutes(train, val, ft, lm["device"], lm["embedding_dtype"])


def finetune_litemedsam_mb(wildcards, input):
    train, val, ft = _finetune_sizes(input)
    return hnseg.sam.sizing.finetune_mb(train, val, ft, config["litemedsam"]["embedding_dtype"])


# ---- nnU-Net (workflow/rules/nnunet.smk): the cohort's nnunet branch ----

NNUNET_DATASETS = hnseg.nnunet.dataset_names(config["nnunet"])  # variant -> dataset folder name
# Minutes per nnU-Net epoch of 250 iterations on one data-centre GPU, 3d_fullres with 4-5 channels: the original
# nnU-Net averages about 30 s on an A100 (reference/nnunet.md), and 4-5 channels make the CPU augmentation the limit.
NNUNET_MINUTES_PER_EPOCH = 1.2


def nnunet_train_patients(wildcards=None):
    return cohort_members("nnunet", ["train"])


def nnunet_val_patients(wildcards=None):
    return cohort_members("nnunet", ["val"])


def nnunet_training_patients(wildcards=None):
    return cohort_members("nnunet", ["train", "val"])


def nnunet_evaluated_patients(wildcards=None):
    return cohort_members("nnunet", config["evaluate"]["subsets"])


def nnunet_variant(wildcards):
    if "nnunet_variant" in wildcards.keys():
        return wildcards.nnunet_variant
    return hnseg.nnunet.parse_dataset_name(wildcards.nnunet_dataset)[0]


def nnunet_dataset_id(wildcards):
    return config["nnunet"][f"dataset_id_{nnunet_variant(wildcards)}"]


def nnunet_volumes():
    """The volumes nnU-Net trains on, in channel order: those every patient of its training set has (ct, and pet,
    t1, t2 when all have them), decided by the cohort checkpoint (results/methods.tsv, column inputs)."""
    plans = _checkpoint_table("methods", hnseg.cohort.read_method_plans)
    return next((p.inputs for p in plans if p.branch == "nnunet" and p.inputs), hnseg.cohort.PAPER_VOLUMES)


def _nnunet_ct_folder(patient):
    """Where the CT and labels of nnU-Net are: registered beside the PET on the CT grid, or (no PET) imported."""
    return f"results/{'registered' if 'pet' in nnunet_volumes() else 'imported'}/{patient}"


def _nnunet_channels(wildcards, patients):
    """The channels of the patients on the CT grid (an empty list for a volume nnU-Net does not train on), and for
    the box dataset their prompts (the box channel)."""
    used = nnunet_volumes()
    volumes = {k: expand("results/registered/{patient}/{k}.nii.gz", patient=patients, k=k) if k in used else []
               for k in ("pet", "t1", "t2")}  # fmt: skip
    volumes["ct"] = [f"{_nnunet_ct_folder(p)}/ct.nii.gz" for p in patients]
    # the records of the stages that made them (a registration rerun reaches nnU-Net through them)
    records = [r for r, v in (("pet", "pet"), ("mri", "t1")) if v in used]
    volumes["records"] = expand("results/registered/{patient}/{r}.json", patient=patients, r=records)
    volumes["prompts"] = prompts_of(patients) if nnunet_variant(wildcards) == "box" else []
    return volumes


def nnunet_training_volumes(wildcards):
    patients = nnunet_training_patients()
    labels = [f"{_nnunet_ct_folder(p)}/labels.nii.gz" for p in patients]
    return {**_nnunet_channels(wildcards, patients), "labels": labels}


def nnunet_evaluated_volumes(wildcards):
    return _nnunet_channels(wildcards, nnunet_evaluated_patients())


def nnunet_predict_inputs(wildcards):
    dataset = NNUNET_DATASETS[wildcards.nnunet_variant]
    return {
        "raw": f"results/nnunet/raw/{dataset}",
        "images": f"results/nnunet/imagesTs/{dataset}",
        "model": f"results/nnunet/results/{dataset}/training.json",
        "references": labels_of(nnunet_evaluated_patients()),
    }


def nnunet_boxmask_inputs(wildcards):
    return {"predictions": "results/predictions/nnunet_nobox", "prompts": prompts_of(nnunet_evaluated_patients())}


def nnunet_training_minutes(wildcards):
    """SLURM time limit of one training: the configured epochs at NNUNET_MINUTES_PER_EPOCH, plus half an hour."""
    nn = config["nnunet"]
    epochs_of_250 = nn["epochs"] * nn["iterations_per_epoch"] / 250
    return 30 + math.ceil(epochs_of_250 * NNUNET_MINUTES_PER_EPOCH)


# ---- Evaluation (workflow/rules/evaluate.smk) ----


def evaluate_inputs(wildcards):
    """A method's predictions (its folder) and the reference labels of the patients it is scored on."""
    return {"predictions": f"results/predictions/{wildcards.method}", "references": labels_of(evaluated_patients(wildcards))}


def evaluate_minutes(wildcards, input):
    """About a second per patient and target on a realistic CT (benchmarks/RESULTS.md), with room to spare."""
    return 5 + len(input.references) // 20


def method_metrics(methods):
    return expand("results/metrics/{method}.csv", method=methods)


def metrics_of_methods_that_run(wildcards):
    return method_metrics(methods_that_run())


# ---- What a complete run builds ----


def per_patient_outputs():
    """What a user looks at per patient: prompts, slice previews of each fusion, registration QC."""
    subsets = ["train", "val", "test"]
    entered = sorted(set().union(*(cohort_members(branch, subsets) for branch in BRANCHES)))
    outputs = prompts_of(entered)
    for fusion in config["fusion"]["kinds"]:
        outputs += expand("results/slices/{fusion}/{patient}.png", fusion=fusion, patient=cohort_members(fusion, subsets))
    outputs += expand("results/registered/{patient}/qc.{ext}", patient=patients_reading(("t1", "t2"), subsets), ext=["json", "png"])
    return outputs


def branch_reads(branch):
    """The volumes a branch's methods read: its fusion's sources, or nnU-Net's channels (known after the checkpoint)."""
    return nnunet_volumes() if branch == "nnunet" else BRANCH_VOLUMES[branch]


def patients_reading(volumes, subsets):
    """Patients of the branches that read any of these volumes (e.g. t1: their MR registration has a QC)."""
    branches = [b for b in BRANCHES if set(volumes) & set(branch_reads(b))]
    return sorted(set().union(*(cohort_members(b, subsets) for b in branches)))


def outputs_after_the_cohort(wildcards):
    """What `rule all` builds once the cohort checkpoint has run: every method that can run, scored, and the report."""
    return [
        "results/cohort.tsv",
        *per_patient_outputs(),
        *metrics_of_methods_that_run(wildcards),
        "results/metrics/summary.csv",
        "results/report/index.html",
    ]


def print_cohort_summary():
    """At the end of a run: who was left out of which branch and why, and the methods that could not run."""
    if not os.path.exists("results/cohort.tsv") or not os.path.exists("results/methods.tsv"):
        return
    rows = hnseg.cohort.read_cohort("results/cohort.tsv")
    lines = hnseg.cohort.exclusion_summary(rows, BRANCHES)
    lines += [f"{p.method} did not run: {p.reason}" for p in hnseg.cohort.read_method_plans("results/methods.tsv") if not p.runs]
    print("\n".join(["hnseg cohort (results/cohort.tsv):", *lines]))


# ---- The report (workflow/rules/report.smk) ----


def report_files(wildcards):
    """Every file the report reads, by role, as hnseg.report.build.ReportInputs takes them: the methods that ran and
    their patients (through the cohort checkpoint), the case figure's candidates (test patients of the multimodal
    branch), timings, benchmarks, registration QC and checkpoints."""
    import hnseg.report

    subsets = ["train", "val", "test"]
    fusions = config["fusion"]["kinds"]
    running = methods_that_run()
    entered = sorted(set().union(*(cohort_members(branch, subsets) for branch in BRANCHES)))
    with_pet = patients_reading(("pet",), subsets)
    registered = patients_reading(("t1", "t2"), subsets)  # MR registered to the CT
    candidates = cohort_members("multimodal", ["test"]) if "multimodal" in fusions else []
    litemedsam = [m for m in running if m.startswith("litemedsam_")]
    finetuned = [f for f in fusions if f"litemedsam_finetuned_{f}" in running]
    nnunet_variants = [v for v in hnseg.nnunet.VARIANTS if f"nnunet_{v}" in running]
    per_patient = {"import_ct": entered, "import_pet": with_pet, "import_mri": registered}
    per_patient |= {"resample_pet": with_pet, "register_mri": registered}
    benchmarks = {rule: {p: f"results/benchmarks/{rule}/{p}.tsv" for p in patients} for rule, patients in per_patient.items()}
    benchmarks["finetune_litemedsam"] = {f: f"results/benchmarks/finetune_litemedsam/{f}.tsv" for f in finetuned}
    benchmarks["predict_litemedsam"] = {
        m.removeprefix("litemedsam_"): f"results/benchmarks/predict_litemedsam/{m.removeprefix('litemedsam_')}.tsv"
        for m in litemedsam
    }
    benchmarks["nnunet_train"] = {v: f"results/benchmarks/nnunet_train/{NNUNET_DATASETS[v]}.tsv" for v in nnunet_variants}
    benchmarks["nnunet_predict"] = {v: f"results/benchmarks/nnunet_predict/{v}.tsv" for v in nnunet_variants}
    return {
        "metrics": {m: f"results/metrics/{m}.csv" for m in running},
        "summary": "results/metrics/summary.csv",
        "split": "results/split.tsv",
        "cohort": "results/cohort.tsv",
        "methods": "results/methods.tsv",
        "published": str(hnseg.report.published_values_file()),
        "prompts": dict(zip(entered, prompts_of(entered))),
        "shards": {f: dict(zip(candidates, shards(f, candidates))) for f in fusions},
        "references": dict(zip(candidates, labels_of(candidates))),
        "predictions": {m: {p: f"results/predictions/{m}/{p}.nii.gz" for p in candidates} for m in litemedsam},
        "histories": {f: f"results/models/litemedsam/{f}/history.csv" for f in finetuned},
        "litemedsam_timings": {m: f"results/predictions/{m}/timings.json" for m in litemedsam},
        "nnunet_trainings": {v: f"results/nnunet/results/{NNUNET_DATASETS[v]}/training.json" for v in nnunet_variants},
        "nnunet_timings": {f"nnunet_{v}": f"results/predictions/nnunet_{v}/timings.json" for v in nnunet_variants},
        "benchmarks": benchmarks,
        "qc": {p: f"results/registered/{p}/qc.json" for p in registered},
        "qc_png": {p: f"results/registered/{p}/qc.png" for p in registered},
        "checkpoints": {f: f"results/models/litemedsam/{f}/best.pth" for f in finetuned},
    } | prompt_study_report_files()


def report_inputs(wildcards):
    """report_files as flat lists per role, for the DAG. A file inside a prediction folder (an output directory)
    is represented by its folder."""

    def paths(value):
        if isinstance(value, dict):
            return [p for v in value.values() for p in paths(v)]
        return [value]

    def as_output(path):
        parts = Path(path).parts
        return str(Path(*parts[:3])) if parts[:2] == ("results", "predictions") else path

    return {role: sorted({as_output(p) for p in paths(value)}) for role, value in report_files(wildcards).items()}


def report_options():
    return dict(config["report"])


# ---- Prompt studies (workflow/rules/studies.smk) ----

import hnseg.margin_study

MARGIN_STUDY = config["studies"]["margins"]


def margin_study_range(wildcards):
    """The range each side's margin is drawn from: [m, m] for the exact rule, [0, m] for the random one."""
    return list(hnseg.margin_study.margin_range(wildcards.box_rule, float(wildcards.margin)))


def margin_prompts_of(wildcards, patients):
    return expand(
        "results/studies/margins/{box_rule}_{margin}/prompts/{patient}.json",
        box_rule=wildcards.box_rule,
        margin=wildcards.margin,
        patient=patients,
    )


def margin_litemedsam_inputs(wildcards):
    """What predict_litemedsam reads (embeddings, checkpoint, reference grids), with the study's prompts."""
    inputs = litemedsam_predict_inputs(wildcards)
    inputs["prompts"] = margin_prompts_of(wildcards, litemedsam_evaluated_patients(wildcards))
    return inputs


def margin_nnunet_volumes(wildcards):
    """The evaluated patients' channels, the box channel drawn from the study's prompts."""
    volumes = nnunet_evaluated_volumes(wildcards)
    if nnunet_variant(wildcards) == "box":
        volumes["prompts"] = margin_prompts_of(wildcards, nnunet_evaluated_patients())
    return volumes


def margin_nnunet_predict_inputs(wildcards):
    """The trained model of the main study (never retrained) and the study's test images."""
    inputs = nnunet_predict_inputs(wildcards)
    dataset = NNUNET_DATASETS[wildcards.nnunet_variant]
    inputs["images"] = f"results/studies/margins/{wildcards.box_rule}_{wildcards.margin}/imagesTs/{dataset}"
    return inputs


def margin_evaluate_inputs(wildcards):
    folder = f"results/studies/margins/{wildcards.box_rule}_{wildcards.margin}"
    return {
        "predictions": f"{folder}/predictions/{wildcards.method}",
        "references": labels_of(evaluated_patients(wildcards)),
    }


def margin_study_methods():
    """The box-prompted methods that ran in the main study: LiteMedSAM (every variant and fusion), nnU-Net with box."""
    return [m for m in methods_that_run() if m.startswith("litemedsam_") or m == "nnunet_box"]


def margin_study_table_records(wildcards=None):
    """One score table per condition (rule, margin) and method: {rule, margin, method, path}."""
    return [
        {"rule": rule, "margin": margin, "method": method, "path": f"results/studies/margins/{rule}_{margin}/metrics/{method}.csv"}
        for rule, margin in hnseg.margin_study.conditions(MARGIN_STUDY["margins_mm"], MARGIN_STUDY["rules"])
        for method in margin_study_methods()
    ]


def margin_study_tables(wildcards):
    return [table["path"] for table in margin_study_table_records()]


MARGIN_STUDY_SUMMARY = "results/studies/margins/summary.csv"


PROPAGATION_STUDY = config["studies"]["propagation"]


def lesion_boxes_of(patients):
    return expand("results/studies/propagation/boxes/{patient}.json", patient=patients)


def box_embeddings_of(fusion, patients):
    return expand("results/studies/propagation/embeddings/{fusion}/{patient}.npz", fusion=fusion, patient=patients)


def box_slices_inputs(wildcards):
    """The volumes the fusion reads, the patient's lesion boxes and the main cache of its slices' embeddings."""
    return fusion_inputs(wildcards) | {
        "boxes": lesion_boxes_of([wildcards.patient])[0],
        "embeddings": embeddings_of(wildcards.fusion, [wildcards.patient])[0],
    }


def embed_box_slices_minutes(wildcards, input):
    from hnseg.lesion_prompts import read_lesion_boxes, slices_to_embed

    return hnseg.sam.sizing.embed_minutes(len(slices_to_embed(read_lesion_boxes(input.boxes))))


def propagation_inputs(wildcards):
    """Lesion boxes, reference grids and both embedding files of the evaluated patients; the fine-tuned checkpoint."""
    patients = litemedsam_evaluated_patients(wildcards)
    inputs = {
        "boxes": lesion_boxes_of(patients),
        "embeddings": embeddings_of(wildcards.fusion, patients),
        "box_embeddings": box_embeddings_of(wildcards.fusion, patients),
        "references": labels_of(patients),
    }
    if wildcards.variant == "finetuned":
        inputs["checkpoint"] = f"results/models/litemedsam/{wildcards.fusion}/best.pth"
    return inputs


def propagate_litemedsam_minutes(wildcards, input):
    slices = hnseg.sam.sizing.total_slices(input.embeddings) + hnseg.sam.sizing.total_slices(input.box_embeddings)
    return hnseg.sam.sizing.predict_minutes(slices, False)


def propagation_evaluate_inputs(wildcards):
    return {
        "predictions": f"results/studies/propagation/{wildcards.protocol}/predictions/{wildcards.method}",
        "references": labels_of(evaluated_patients(wildcards)),
    }


def propagation_study_methods():
    """LiteMedSAM methods that ran, of the variants studies.propagation.variants names, the fine-tuned ones only
    with the official encoder (propagation reads its embeddings)."""
    variants = PROPAGATION_STUDY["variants"]
    return [
        m
        for m in methods_that_run()
        if ("zeroshot" in variants and m.startswith("litemedsam_zeroshot_"))
        or ("finetuned" in variants and m.startswith("litemedsam_finetuned_") and frozen_encoder())
    ]


def propagation_study_table_records(wildcards=None):
    """Score tables {protocol, method, path}: the main study's (the per-slice oracle) and each protocol's."""
    records = []
    for method in propagation_study_methods():
        records.append({"protocol": "oracle", "method": method, "path": f"results/metrics/{method}.csv"})
        records += [
            {"protocol": p, "method": method, "path": f"results/studies/propagation/{p}/metrics/{method}.csv"}
            for p in PROPAGATION_STUDY["protocols"]
        ]
    return records


def propagation_study_tables(wildcards):
    return [table["path"] for table in propagation_study_table_records()]


def propagation_study_patients(wildcards=None):
    """The patients any propagated method is scored on."""
    fusions = {m.rsplit("_", 1)[1] for m in propagation_study_methods()}
    return sorted(set().union(*(cohort_members(f, config["evaluate"]["subsets"]) for f in fusions)))


def propagation_study_prompts(wildcards):
    return prompts_of(propagation_study_patients())


def propagation_study_boxes(wildcards):
    return lesion_boxes_of(propagation_study_patients())


PROPAGATION_STUDY_SUMMARY = "results/studies/propagation/summary.csv"




def prompt_study_report_files():
    """The studies' files for the report, when a study has run (the report builds without them)."""
    files = {}
    if os.path.exists(MARGIN_STUDY_SUMMARY):
        files["margin_study"] = {"summary": MARGIN_STUDY_SUMMARY, "figure": "results/studies/margins/margin_study.png"}
    if os.path.exists(PROPAGATION_STUDY_SUMMARY):
        files["propagation_study"] = {"summary": PROPAGATION_STUDY_SUMMARY}
    return files


# ---- DICOM export (workflow/rules/export.smk): on request only, never in rule all ----


def export_dicom_inputs(wildcards):
    """The patient's DICOM folder (the CT is found again in it), its CT import (the record and the volume whose
    grid the export checks) and the method's predictions."""
    imported = f"results/imported/{wildcards.patient}"
    return {
        "dicom": PATIENT_ROWS[wildcards.patient]["dicom_dir"],
        "import_record": f"{imported}/import.json",
        "ct": f"{imported}/ct.nii.gz",
        "predictions": f"results/predictions/{wildcards.method}",
    }


def _export_refusals(wildcards):
    """Evaluated patients of the method that cannot go back as DICOM (imported from NIfTI), with the reason."""
    import hnseg.dicom.export

    refusals = {}
    for patient in evaluated_patients(wildcards):
        ok, why = hnseg.dicom.export.exportable(f"results/imported/{patient}/import.json")
        if not ok:
            refusals[patient] = why
    return refusals


def exported_patients(wildcards):
    """Evaluated patients of the method that came in as DICOM: those the export writes."""
    refused = _export_refusals(wildcards)
    return [patient for patient in evaluated_patients(wildcards) if patient not in refused]


def export_skipped_patients(wildcards):
    return _export_refusals(wildcards)


def dicom_exports_of_method(wildcards):
    return expand(
        "export/{method}/{patient}/{name}.dcm",
        method=wildcards.method,
        patient=exported_patients(wildcards),
        name=["rtstruct", "seg"],
    )
