"""The `hnseg` command: small entry points for what a user does outside the workflow.

`hnseg --help` lists every command with what it does (argparse builds the list from the commands themselves, so
it cannot fall behind); `hnseg COMMAND --help` shows a command's arguments.
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


def _cmd_import(args: argparse.Namespace) -> int:
    """One patient's DICOM folder to the NIfTIs and JSON records the workflow's import rules write."""
    import re

    import yaml

    from hnseg.cohort import OK, run_patient_stage
    from hnseg.config import SCHEMA_DIR, load_config
    from hnseg.dicom.importer import (
        ImportOptions,
        import_ct_and_labels,
        import_mri,
        import_pet,
        options_from_params,
    )

    pattern = yaml.safe_load((SCHEMA_DIR / "patients.schema.yaml").read_text())["properties"]["patient"]["pattern"]
    if not re.fullmatch(pattern, args.patient):
        raise InputError(
            f"--patient {args.patient!r} is not a valid pseudonymous id: letters, digits, '_' and '-' only, "
            "starting with a letter or digit, at most 64 characters (the same rule as the patients sheet)"
        )
    if not Path(args.dicom_dir).is_dir():  # never named: folders are often named after the patient
        raise InputError(f"patient {args.patient}: the DICOM folder given does not exist")
    opts = options_from_params(load_config(*args.config)["import"]) if args.config else ImportOptions()
    out = Path(args.out_dir)
    logs = Path(args.log_dir) if args.log_dir else out / "logs"
    # the three stages of the workflow's import rules, each recorded on its own (ok or failed, with the reason)
    stages = [
        ("import_ct", import_ct_and_labels, "import.json", ["ct.nii.gz", "labels.nii.gz"], {}),
        ("import_pet", import_pet, "pet.json", ["pet.nii.gz"], {"weight_kg": args.weight_kg}),
        ("import_mri", import_mri, "mri.json", ["t1.nii.gz", "t2.nii.gz"], {}),
    ]
    failed = 0
    terminal = sys.stderr
    for stage, fn, record_name, volumes, kwargs in stages:
        try:
            record = run_patient_stage(
                out / record_name,
                logs / f"{stage}.log",
                args.patient,
                stage,
                fn,
                args.patient,
                args.dicom_dir,
                out,
                opts,
                outputs=[out / v for v in volumes],
                **kwargs,
            )
        finally:
            sys.stderr = terminal  # the stage's log took stderr over; give it back to the terminal
        if record["status"] == OK:
            print(f"{args.patient}: {stage} ok -> {', '.join(volumes)}, {record_name}")
        else:
            failed += 1
            print(f"{args.patient}: {stage} {record['status']} (see {record_name}): {record.get('reason', '')}")
    print(f"patient {args.patient}: {len(stages) - failed} of {len(stages)} import stages ok; outputs in {out}")
    return 2 if failed else 0


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


def _cmd_cohort(args: argparse.Namespace) -> int:
    from hnseg.nifti import layouts

    if args.layout == "from-hecktor":
        result = layouts.hecktor_sheet(args.folder, args.out)
    else:
        result = layouts.nnunet_sheet(args.folder, args.out, layouts.parse_channel_mapping(args.channels))
    path = layouts.write_sheet(result, args.out)
    for line in result.notes:
        print(line)
    for line in result.left_out:
        print(f"left out: {line}")
    print(f"patients sheet with {len(result.rows)} patients written to {path}; set `patients: {path}` in your config")
    return 0


def _cmd_export_send(args: argparse.Namespace) -> int:
    from hnseg.dicom.export import SendError, send

    try:
        files = send(args.dir, args.host, args.port, args.aet, calling_aet=args.calling_aet, timeout_s=args.timeout)
    except SendError as exc:
        print(f"hnseg export send: {exc}", file=sys.stderr)
        return 3
    print(f"{len(files)} file(s) sent to {args.aet}@{args.host}:{args.port}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hnseg", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", title="commands")

    p = sub.add_parser("check-env", help="versions, LiteMedSAM weights, devices; non-zero exit if anything is missing")
    p.set_defaults(func=_cmd_check_env)

    p = sub.add_parser("synth", help="write the deterministic synthetic DICOM cohort")
    p.add_argument("out", help="output folder; gets dicom/<id>/, truth/<id>/ and patients.tsv")
    p.add_argument("--n", type=int, default=12, help="number of patients (default 12)")
    p.add_argument("--seed", type=int, default=2024, help="cohort seed (default 2024)")
    p.add_argument("--size", choices=["demo", "tiny", "realistic"], default="demo", help="grid sizes (default demo)")
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser("split", help="show the train/val/test split, or freeze it into a file")
    p.add_argument(
        "--config", nargs="+", default=["config/config.yaml"], help="config files, later ones layered over earlier"
    )
    p.add_argument("--freeze", metavar="TSV", help="write the split here (e.g. config/split.tsv) to freeze it")
    p.add_argument("--force", action="store_true", help="overwrite an existing frozen split")
    p.add_argument("--out", metavar="TSV", help="write the split here without freezing it")
    p.set_defaults(func=_cmd_split)

    p = sub.add_parser(
        "import",
        help="one patient's DICOM folder to the NIfTIs and JSON records the workflow writes",
        description="Import one patient's DICOM folder as the workflow's import_ct, import_pet and import_mri rules "
        "do: ct.nii.gz, labels.nii.gz, import.json; pet.nii.gz, pet.json; t1.nii.gz, t2.nii.gz, mri.json, each "
        "record with status ok or failed and the reason. Outputs, logs and messages carry the --patient id only, "
        "never the folder's name. Exit status 2 when a stage refused the data.",
    )
    p.add_argument("dicom_dir", metavar="DICOM_DIR", help="the patient's DICOM folder (any layout)")
    p.add_argument("out_dir", metavar="OUT_DIR", help="where the volumes and records go")
    p.add_argument(
        "--patient",
        required=True,
        metavar="ID",
        help="the pseudonymous id every output carries (required: never derived from the folder)",
    )
    p.add_argument(
        "--config",
        nargs="+",
        metavar="YAML",
        help="config files whose `import` section to use, later ones layered over earlier (default: the shipped "
        "config/config.yaml values)",
    )
    p.add_argument("--weight-kg", type=float, help="body weight for SUV when the PET header has none")
    p.add_argument("--log-dir", help="where the stages' logs go (default: OUT_DIR/logs)")
    p.set_defaults(func=_cmd_import)

    p = sub.add_parser("cohort", help="write a patients sheet from a NIfTI cohort (HECKTOR 2022, nnU-Net raw)")
    layouts = p.add_subparsers(dest="layout", required=True, metavar="LAYOUT")
    for name, folder, text in (
        (
            "from-hecktor",
            "DIR",
            "a HECKTOR 2022 folder: imagesTr/<id>__CT.nii.gz, <id>__PT.nii.gz, labelsTr/<id>.nii.gz",
        ),
        ("from-nnunet", "DATASET_DIR", "an nnU-Net raw dataset: dataset.json, imagesTr/<case>_XXXX, labelsTr/<case>"),
    ):
        q = layouts.add_parser(name, help=text, description=f"Write a patients sheet from {text}.")
        q.add_argument("folder", metavar=folder)
        q.add_argument("--out", default="config/patients.tsv", help="the sheet (default config/patients.tsv)")
        if name == "from-nnunet":
            q.add_argument(
                "--channels",
                metavar="MAP",
                help="what each channel is, e.g. 0=ct,1=pet (ct, pet, t1, t2, skip); needed for channel names "
                "hnseg does not recognise",
            )
        q.set_defaults(func=_cmd_cohort)

    p = sub.add_parser("export", help="send a DICOM export (RTSTRUCT and SEG of predictions) to a DICOM node")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    q = actions.add_parser(
        "send",
        help="C-STORE every .dcm file under DIR to a DICOM node",
        description="C-STORE the files of an export (e.g. export/<method>, written by `snakemake "
        "export/<method>/README.md`) to a DICOM node (a PACS, a planning system, 3D Slicer's DICOM listener). Exit "
        "status 3 when the node cannot be reached, refuses the association, does not answer or fails a store.",
    )
    q.add_argument("dir", metavar="DIR", help="folder of the export (searched recursively for .dcm files)")
    q.add_argument("--host", required=True, help="the node's host name or address")
    q.add_argument("--port", required=True, type=int, help="the node's port")
    q.add_argument("--aet", required=True, help="the node's AE title (the called AE title)")
    q.add_argument("--calling-aet", default="HNSEG", help="hnseg's AE title (default HNSEG)")
    q.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the node (default 30)")
    q.set_defaults(func=_cmd_export_send)

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
