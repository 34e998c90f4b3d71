"""Patients sheets from NIfTI cohorts on disk: the HECKTOR 2022 layout and nnU-Net raw datasets.

- HECKTOR 2022: `imagesTr/<id>__CT.nii.gz` (HU), `imagesTr/<id>__PT.nii.gz` (SUVbw), `labelsTr/<id>.nii.gz`
  (1 GTVp, 2 GTVn); no MRI.
- nnU-Net raw (`DatasetXXX_Name/`): `dataset.json` (channel_names, labels, file_ending), `imagesTr/<case>_<XXXX>` per
  channel, `labelsTr/<case>`. Channel names are free text: the usual names are recognised (CT; PET, PT, SUV; T1,
  T1w; T2, T2w), anything else needs an explicit mapping such as {0: "ct", 1: "pet"} ("skip" leaves a channel out).

Each writes a sheet with paths relative to the sheet (hnseg.config reads them so), one row per case that has a CT
and labels; the cases left out and why are returned for the caller to print. The case ids become the patient ids,
so they must be pseudonymous (HECKTOR's and nnU-Net's are) and fit the sheet's pattern (letters, digits, _ and -).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from hnseg.config import write_patients_sheet
from hnseg.errors import InputError

VOLUMES = ("ct", "pet", "t1", "t2")
SKIP = "skip"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
KNOWN_CHANNELS = {
    "ct": "ct", "cect": "ct", "ctscan": "ct",
    "pet": "pet", "pt": "pet", "suv": "pet", "fdgpet": "pet", "petsuv": "pet",
    "t1": "t1", "t1w": "t1", "t1weighted": "t1", "mrt1": "t1", "t1mri": "t1",
    "t2": "t2", "t2w": "t2", "t2weighted": "t2", "mrt2": "t2", "t2mri": "t2",
}  # fmt: skip
GTV_T_NAMES = {"gtvp", "gtvt", "gtvprimary", "primary", "tumour", "tumor", "gtv", "gtvtumour", "gtvtumor"}
GTV_N_NAMES = {"gtvn", "gtvnode", "gtvnodes", "node", "nodes", "lymphnode", "lymphnodes", "gtvln"}


@dataclass
class Sheet:
    rows: list[dict[str, str]]
    left_out: list[str] = field(default_factory=list)  # "case: why"
    notes: list[str] = field(default_factory=list)  # what the user must know (channels, label values)


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _relative(path: Path, sheet: Path) -> str:
    return os.path.relpath(path.resolve(), sheet.resolve().parent)


def _check_id(case: str, left_out: list[str]) -> bool:
    if _ID.match(case):
        return True
    left_out.append(f"{case}: not usable as a patient id (letters, digits, _ and - only, at most 64); rename it")
    return False


def hecktor_sheet(root: str | Path, sheet: str | Path) -> Sheet:
    """The rows of a HECKTOR 2022 cohort (training layout) for a sheet written at `sheet`."""
    root, sheet = Path(root), Path(sheet)
    images, labels = root / "imagesTr", root / "labelsTr"
    if not images.is_dir() or not labels.is_dir():
        raise InputError(
            f"{root} is not a HECKTOR 2022 folder: it needs imagesTr/<id>__CT.nii.gz, imagesTr/<id>__PT.nii.gz and "
            "labelsTr/<id>.nii.gz (found: " + (", ".join(sorted(p.name for p in root.iterdir())) or "nothing") + ")"
            if root.is_dir()
            else f"{root} does not exist; give the HECKTOR 2022 folder (with imagesTr and labelsTr)"
        )
    cases = sorted({p.name.split("__")[0] for p in images.glob("*__CT.nii.gz")} | {
        p.name.removesuffix(".nii.gz") for p in labels.glob("*.nii.gz")})  # fmt: skip
    result = Sheet([])
    for case in cases:
        ct, pet, lab = images / f"{case}__CT.nii.gz", images / f"{case}__PT.nii.gz", labels / f"{case}.nii.gz"
        missing = [p.relative_to(root).as_posix() for p in (ct, lab) if not p.is_file()]
        if missing:
            result.left_out.append(f"{case}: no {' and no '.join(missing)}")
            continue
        if not _check_id(case, result.left_out):
            continue
        row = {"patient": case, "ct": _relative(ct, sheet), "labels": _relative(lab, sheet)}
        if pet.is_file():
            row["pet"] = _relative(pet, sheet)
        else:
            result.notes.append(f"{case}: no PET ({pet.name}); it is left out of what needs the PET")
        result.rows.append(row)
    if not result.rows:
        raise InputError(f"{root}: no case with imagesTr/<id>__CT.nii.gz and labelsTr/<id>.nii.gz")
    result.notes.append("label values: HECKTOR's 1 = GTVp (GTV-T), 2 = GTVn (GTV-N), the config's default "
                        "(import.nifti_labels)")  # fmt: skip
    result.notes.append("no MRI in HECKTOR: add a CT-PET fusion and drop multimodal in your config (README, 'Your own "
                        "cohort in NIfTI')")  # fmt: skip
    return result


def parse_channel_mapping(text: str | None) -> dict[int, str]:
    """'0=ct,1=pet' -> {0: 'ct', 1: 'pet'}; InputError on anything else."""
    if not text:
        return {}
    mapping = {}
    for item in text.split(","):
        index, _, volume = item.partition("=")
        if not index.strip().isdigit() or volume.strip().lower() not in (*VOLUMES, SKIP):
            raise InputError(
                f"--channels {text!r}: each item is INDEX=VOLUME with VOLUME one of {', '.join((*VOLUMES, SKIP))}"
                f" (got {item!r})"
            )
        mapping[int(index)] = volume.strip().lower()
    return mapping


def channel_volumes(channel_names: Mapping[str, str], mapping: Mapping[int, str] | None = None) -> dict[int, str]:
    """nnU-Net channel index -> volume (ct, pet, t1, t2; skipped channels left out), from the recognised names and an
    explicit mapping, which wins. InputError listing the names found when a name is not recognised and not mapped,
    when no channel is the CT, or when two channels are one volume."""
    mapping = dict(mapping or {})
    found = {int(i): str(n) for i, n in channel_names.items()}
    unknown = sorted(i for i in found if i not in mapping and _key(found[i]) not in KNOWN_CHANNELS)
    if unknown:
        names = ", ".join(f"{i}={found[i]!r}" for i in sorted(found))
        raise InputError(
            f"nnU-Net channel names not recognised: {', '.join(f'{i}={found[i]!r}' for i in unknown)} (channels: "
            f"{names}); say what each channel is, e.g. --channels "
            + ",".join(f"{i}={KNOWN_CHANNELS.get(_key(found[i]), 'ct' if i == 0 else 'pet')}" for i in sorted(found))
            + f" (volumes: {', '.join(VOLUMES)}; {SKIP} leaves a channel out)"
        )
    extra = sorted(set(mapping) - set(found))
    if extra:
        raise InputError(f"--channels maps channel(s) {extra}, which dataset.json does not have (channels: {found})")
    volumes = {i: mapping.get(i, KNOWN_CHANNELS.get(_key(found[i]))) for i in sorted(found)}
    volumes = {i: v for i, v in volumes.items() if v != SKIP}
    taken: dict[str, list[int]] = {}
    for i, v in volumes.items():
        taken.setdefault(v, []).append(i)
    twice = {v: idx for v, idx in taken.items() if len(idx) > 1}
    if twice:
        raise InputError(f"channels {twice} would be the same volume; map one of them to another volume or to {SKIP}")
    if "ct" not in taken:
        raise InputError(f"no channel is the CT (channels: {found}); map it, e.g. --channels 0=ct")
    return volumes


def label_values(labels: Mapping[str, object]) -> tuple[dict[str, int], list[str]]:
    """GTV-T and GTV-N values from an nnU-Net dataset.json `labels` ({name: value}); notes for the user."""
    values, notes = {}, []
    for name, value in labels.items():
        if not isinstance(value, int):
            continue  # region-based (a list of labels): not a single value
        key = _key(name)
        if key in GTV_T_NAMES:
            values.setdefault("gtv_t", value)
        elif key in GTV_N_NAMES:
            values.setdefault("gtv_n", value)
    if set(values) != {"gtv_t", "gtv_n"}:
        notes.append(f"label names {dict(labels)} not all recognised; set import.nifti_labels: {{gtv_t: ..., "
                     "gtv_n: ...}} in your config to the values of GTV-T and GTV-N")  # fmt: skip
    return values, notes


def nnunet_sheet(dataset_dir: str | Path, sheet: str | Path, mapping: Mapping[int, str] | None = None) -> Sheet:
    """The rows of an nnU-Net raw dataset (its training cases) for a sheet written at `sheet`."""
    root, sheet = Path(dataset_dir), Path(sheet)
    dataset_json = root / "dataset.json"
    if not dataset_json.is_file():
        raise InputError(f"{root} is not an nnU-Net raw dataset: no dataset.json (expected DatasetXXX_Name/)")
    dataset = json.loads(dataset_json.read_text())
    names = dataset.get("channel_names") or dataset.get("modality")  # nnU-Net v2, or v1
    if not names:
        raise InputError(f"{dataset_json} has no channel_names (nnU-Net v2) or modality (v1)")
    volumes = channel_volumes(names, mapping)
    ending = dataset.get("file_ending", ".nii.gz")
    if ending not in (".nii.gz", ".nii"):
        raise InputError(f"{dataset_json}: file_ending {ending!r}; hnseg reads NIfTI (.nii.gz, .nii) only")
    images, labels = root / "imagesTr", root / "labelsTr"
    result = Sheet([])
    values, result.notes = label_values(dataset.get("labels") or {})
    for label in sorted(labels.glob(f"*{ending}")):
        case = label.name.removesuffix(ending)
        files = {v: images / f"{case}_{i:04d}{ending}" for i, v in volumes.items()}
        missing = [f"imagesTr/{p.name}" for v, p in files.items() if v == "ct" and not p.is_file()]
        if missing:
            result.left_out.append(f"{case}: no {missing[0]}")
            continue
        if not _check_id(case, result.left_out):
            continue
        row = {"patient": case, "ct": _relative(files["ct"], sheet), "labels": _relative(label, sheet)}
        for v in ("pet", "t1", "t2"):
            if v in files and files[v].is_file():
                row[v] = _relative(files[v], sheet)
        result.rows.append(row)
    if not result.rows:
        raise InputError(f"{root}: no training case with labelsTr/<case>{ending} and its CT channel")
    result.notes.insert(0, "channels: " + ", ".join(f"{i} {names[str(i)]!r} -> {v}" for i, v in volumes.items()))
    if values:
        result.notes.insert(1, "label values: " + ", ".join(f"{k} {v}" for k, v in values.items())
                            + " (set import.nifti_labels in your config if they are not the default gtv_t 1, gtv_n 2)")  # fmt: skip
    return result


def write_sheet(result: Sheet, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_patients_sheet(path, result.rows)
    return path
