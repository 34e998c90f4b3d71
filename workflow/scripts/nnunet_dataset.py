"""Adapter for rule nnunet_dataset: the raw nnU-Net dataset of one variant (nobox or box) with the study's split."""

from pathlib import Path

from hnseg.nnunet import parse_dataset_name
from hnseg.nnunet.dataset import CaseFiles, convert_dataset
from hnseg.runlog import run_stage


def main(sm):
    out = Path(sm.output[0])
    variant, _ = parse_dataset_name(out.name)
    labels = dict(zip(sm.params.patients, sm.input.labels, strict=True))
    prompts = dict(zip(sm.params.patients, sm.input.prompts, strict=True)) if variant == "box" else {}
    cases = {
        p: CaseFiles(ct, pet, t1, t2, labels=labels.get(p), prompts=prompts.get(p))
        for p, ct, pet, t1, t2 in zip(
            sm.params.patients, sm.input.ct, sm.input.pet, sm.input.t1, sm.input.t2, strict=True
        )
    }
    return convert_dataset(out, variant, cases, sm.params.train, sm.params.val, [], processes=sm.threads)


if __name__ == "__main__":
    run_stage(snakemake.log[0], main, snakemake)
