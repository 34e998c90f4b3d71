"""The `hnseg` command: small entry points for what a user does outside the workflow.

hnseg check-env                 is this environment able to run the study?
hnseg synth OUT [--n 12 ...]    write the synthetic DICOM cohort, its truth and a patients sheet
hnseg split --config ...        print or freeze the train/val/test split
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from hnseg.errors import InputError


def _cmd_check_env(args: argparse.Namespace) -> int:
    from hnseg import envcheck

    return envcheck.main()


def _cmd_synth(args: argparse.Namespace) -> int:
    from hnseg import synthetic
    from hnseg.config import write_patients_sheet

    out = Path(args.out)
    ids = synthetic.patient_ids(args.n)
    rows = []
    for pid in ids:
        start = time.perf_counter()
        dicom_dir, truth_dir = out / "dicom" / pid, out / "truth" / pid
        synthetic.generate_patient(pid, args.seed, dicom_dir, truth_dir, size=args.size)
        rows.append({"patient": pid, "dicom_dir": str(dicom_dir)})
        print(f"{pid}: {time.perf_counter() - start:.1f} s -> {dicom_dir}", flush=True)
    write_patients_sheet(out / "patients.tsv", rows)
    print(f"patients sheet: {out / 'patients.tsv'}")
    return 0


def _cmd_split(args: argparse.Namespace) -> int:
    from hnseg.config import load_config, read_patients_sheet
    from hnseg.workflow import cohort_patients, split_from_config

    config = load_config(*args.config)
    patients = cohort_patients(config)
    strata = None
    if config["split"].get("stratify_by") and not config["synthetic"]["enabled"]:
        column = config["split"]["stratify_by"]
        strata = {r["patient"]: r[column] for r in read_patients_sheet(config["patients"], column)}
    split = split_from_config(config, [p["patient"] for p in patients], strata)
    counts = split.counts()
    print(f"{len(split.subset)} patients: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    if args.freeze:
        target = Path(args.freeze)
        if target.exists() and not args.force:
            raise InputError(f"{target} exists; pass --force to overwrite a frozen split")
        split.to_tsv(target)
        print(f"frozen split written to {target}; set `split: frozen: {target}` in your config to use it")
    elif args.out:
        split.to_tsv(args.out)
    else:
        for p in sorted(split.subset):
            print(f"{p}\t{split.subset[p]}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from hnseg.fusion import window_ct
    from hnseg.gpu import job_device
    from hnseg.sam.infer import segment_slice
    from hnseg.sam.model import load_litemedsam

    path = Path(args.image)
    if not path.is_file():
        raise InputError(f"{path} does not exist")
    nifti = path.name.endswith((".nii", ".nii.gz"))
    if nifti:
        import SimpleITK as sitk

        if args.slice is None:
            raise InputError("a NIfTI input needs --slice (the axial slice index, z)")
        reference = sitk.ReadImage(str(path))
        volume = sitk.GetArrayFromImage(reference)
        if not 0 <= args.slice < volume.shape[0]:
            raise InputError(f"--slice {args.slice} is outside 0..{volume.shape[0] - 1} of {path}")
        image = window_ct(volume[args.slice], args.window[0], args.window[1])
    elif path.suffix == ".npy":
        image = np.load(path)
    else:
        from PIL import Image

        image = np.asarray(Image.open(path).convert("RGB"))
    if image.dtype != np.uint8:
        raise InputError(f"{path}: expected an 8-bit image (uint8), got {image.dtype}; window it first")
    torch.set_num_threads(args.threads)
    with job_device(args.device) as device:
        model = load_litemedsam(args.checkpoint, device=device)
        mask = segment_slice(model, image, [tuple(args.box)])[0]
    out = Path(args.out)
    if nifti and out.name.endswith((".nii", ".nii.gz")):
        labels = np.zeros(volume.shape, dtype=np.uint8)
        labels[args.slice] = mask
        result = sitk.GetImageFromArray(labels)
        result.CopyInformation(reference)
        sitk.WriteImage(result, str(out), useCompression=True)
    elif out.suffix == ".npy":
        np.save(out, mask)
    else:
        from PIL import Image

        Image.fromarray((mask * 255).astype(np.uint8)).save(out)
    print(f"{int(mask.sum())} pixels in the mask -> {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hnseg", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("check-env", help="versions, LiteMedSAM weights, devices; non-zero exit if anything is missing")
    p.set_defaults(func=_cmd_check_env)

    p = sub.add_parser("synth", help="write the deterministic synthetic DICOM cohort")
    p.add_argument("out", help="output folder; gets dicom/<id>/, truth/<id>/ and patients.tsv")
    p.add_argument("--n", type=int, default=12, help="number of patients (default 12)")
    p.add_argument("--seed", type=int, default=2024, help="cohort seed (default 2024)")
    p.add_argument("--size", choices=["demo", "realistic"], default="demo", help="grid sizes (default demo)")
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser("split", help="show the train/val/test split, or freeze it into a file")
    p.add_argument(
        "--config", nargs="+", default=["config/config.yaml"], help="config files, later ones layered over earlier"
    )
    p.add_argument("--freeze", metavar="TSV", help="write the split here (e.g. config/split.tsv) to freeze it")
    p.add_argument("--force", action="store_true", help="overwrite an existing frozen split")
    p.add_argument("--out", metavar="TSV", help="write the split here without freezing it")
    p.set_defaults(func=_cmd_split)

    p = sub.add_parser("predict", help="LiteMedSAM on one slice with one box")
    p.add_argument("image", help="an 8-bit PNG or NPY slice, or a CT NIfTI (HU) with --slice")
    p.add_argument(
        "--box", type=int, nargs=4, required=True, metavar=("X0", "Y0", "X1", "Y1"), help="inclusive pixel box"
    )
    p.add_argument("--slice", type=int, help="axial slice index (z) of a NIfTI input")
    p.add_argument(
        "--window",
        type=float,
        nargs=2,
        default=(40.0, 400.0),
        metavar=("LEVEL", "WIDTH"),
        help="CT window for NIfTI input",
    )
    p.add_argument("--checkpoint", help="a fine-tuned checkpoint (default: the official LiteMedSAM weights)")
    p.add_argument("--out", required=True, help="mask: .png, .npy, or .nii.gz (NIfTI input: the mask on its grid)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--threads", type=int, default=2)
    p.set_defaults(func=_cmd_predict)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("hnseg").setLevel(logging.INFO)
    try:
        return args.func(args)
    except InputError as exc:
        print(f"hnseg {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
