"""Adapter for rule nnunet_test_images: the channels of the evaluated patients, as nnU-Net reads them to predict."""

from pathlib import Path

from hnseg.nnunet import parse_dataset_name
from hnseg.nnunet.dataset import CaseFiles, write_test_images
from hnseg.runlog import run_stage


def main(sm):
    out = Path(sm.output[0])
    variant, _ = parse_dataset_name(out.name)
    prompts = dict(zip(sm.params.patients, sm.input.prompts, strict=True)) if variant == "box" else {}
    cases = {
        p: CaseFiles(ct, pet, t1, t2, prompts=prompts.get(p))
        for p, ct, pet, t1, t2 in zip(
            sm.params.patients, sm.input.ct, sm.input.pet, sm.input.t1, sm.input.t2, strict=True
        )
    }
    write_test_images(out, variant, cases, processes=sm.threads)


if __name__ == "__main__":
    run_stage(snakemake.log[0], main, snakemake)
