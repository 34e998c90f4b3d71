"""Adapter for rule nnunet_test_images: the channels of the evaluated patients, as nnU-Net reads them to predict."""

from pathlib import Path

from hnseg.nnunet import parse_dataset_name
from hnseg.nnunet.dataset import VOLUMES, CaseFiles, write_test_images
from hnseg.runlog import run_stage


def main(sm):
    out = Path(sm.output[0])
    variant, _ = parse_dataset_name(out.name)
    # the volumes nnU-Net trains on: those the rule was given (common.smk gives none of the others)
    volumes = tuple(v for v in VOLUMES if v in sm.input.keys() and len(sm.input[v]))
    prompts = dict(zip(sm.params.patients, sm.input.prompts, strict=True)) if variant == "box" else {}
    files = {v: dict(zip(sm.params.patients, sm.input[v], strict=True)) for v in volumes}
    cases = {p: CaseFiles(**{v: files[v][p] for v in volumes}, prompts=prompts.get(p)) for p in sm.params.patients}
    write_test_images(out, variant, cases, processes=sm.threads, volumes=volumes)


if __name__ == "__main__":
    run_stage(snakemake.log[0], main, snakemake)
