"""Adapter for rule nnunet_dataset: the raw nnU-Net dataset of one variant (nobox or box) with the study's split, on
the volumes every patient of the training set has (decided at the cohort checkpoint)."""

from pathlib import Path

from hnseg.nnunet import parse_dataset_name
from hnseg.nnunet.dataset import VOLUMES, CaseFiles, convert_dataset
from hnseg.runlog import run_stage


def main(sm):
    out = Path(sm.output[0])
    variant, _ = parse_dataset_name(out.name)
    # the volumes nnU-Net trains on: those the rule was given (common.smk gives none of the others)
    volumes = tuple(v for v in VOLUMES if v in sm.input.keys() and len(sm.input[v]))
    labels = dict(zip(sm.params.patients, sm.input.labels, strict=True))
    prompts = dict(zip(sm.params.patients, sm.input.prompts, strict=True)) if variant == "box" else {}
    files = {v: dict(zip(sm.params.patients, sm.input[v], strict=True)) for v in volumes}
    cases = {
        p: CaseFiles(**{v: files[v][p] for v in volumes}, labels=labels.get(p), prompts=prompts.get(p))
        for p in sm.params.patients
    }
    return convert_dataset(
        out, variant, cases, sm.params.train, sm.params.val, [], processes=sm.threads, volumes=volumes
    )


if __name__ == "__main__":
    run_stage(snakemake.log[0], main, snakemake)
