"""Stage registration_qc, per patient: how good each MR-to-CT registration is, from its record and its transforms.

For T1w and T2w: mutual information and correlation with the CT over the CT body, before registration (scanner
coordinates), after the rigid stage (rigid.mat alone) and after SyN (warp then rigid), on the very images the
registration's metric saw (rebuilt from the CT and the settings in the record); how much the MR body overlaps the CT
body; on the synthetic cohort, the landmark TRE and the Dice of the MR-space GTV-T warped onto the CT against its CT
truth, at the same three stages. Flags (MI fell, bodies barely overlap) go into qc.json and the job's log, naming
the patient; they are findings, not failures. qc.png shows CT/MR checkerboards through the tumour.

A rule of its own (DESIGN.md section 3.3), so that editing a QC measure or the picture never reruns a registration:
register_mri's import closure holds neither this module nor `qc`.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from hnseg.errors import InputError
from hnseg.registration import ants_register as ar
from hnseg.registration import masks, qc
from hnseg.registration.images import exact_grid_json, grid_json, read_volume
from hnseg.registration.options import QcOptions, RegistrationOptions, options_from_params
from hnseg.registration.resample import crop, fixed_side, prepare_moving, resample_like

log = logging.getLogger(__name__)

MR_LABELS = {"t1": "T1w", "t2": "T2w"}
TRUTH_FILES = ("landmarks.json", "gtvt_mr.nii.gz", "labels.nii.gz")
DICE_MARGIN_MM = 20.0
CHAINS = dict(zip(qc.STAGES, ("none", "rigid", "syn"), strict=True))  # QC stage -> transforms applied


def require_ok(patient: str, records: Mapping[str, Mapping[str, Any]]) -> None:
    """Refuse to run the QC of a patient whose registration records ({stage: record}) are not all ok."""
    for stage, record in records.items():
        if record.get("status") != "ok":
            raise InputError(
                f"patient {patient}: {stage} is {record.get('status')!r} ({record.get('reason', 'no reason given')}), "
                "so there is no registration to check. results/cohort.tsv leaves this patient out; ask for qc.json "
                "only for patients whose registration is ok"
            )


def _load_truth(patient: str, truth_dir: Path) -> dict[str, Any]:
    missing = [f for f in TRUTH_FILES if not (truth_dir / f).is_file()]
    if missing:
        raise InputError(
            f"patient {patient}: the truth folder {truth_dir} lacks {', '.join(missing)}; regenerate the synthetic "
            "patient (rule synthesize_patient) or leave the truth out"
        )
    landmarks = json.loads((truth_dir / "landmarks.json").read_text())["landmarks"]
    names = sorted(landmarks)
    return {
        "names": names,
        "ct_mm": np.array([landmarks[n]["ct_mm"] for n in names], dtype=np.float64),
        "mr_mm": np.array([landmarks[n]["mr_mm"] for n in names], dtype=np.float64),
        "gtvt_mr": truth_dir / "gtvt_mr.nii.gz",
        "labels_ct": sitk.ReadImage(str(truth_dir / "labels.nii.gz")),
    }


def _dice_region(labels_ct: sitk.Image) -> sitk.Image | None:
    """The CT sub-grid around the truth GTV-T (plus a margin) on which the warped MR GTV-T is compared."""
    gtv = sitk.GetArrayViewFromImage(labels_ct) == 1
    if not gtv.any():
        return None
    idx = np.argwhere(gtv)[:, ::-1]
    spacing = np.array(labels_ct.GetSpacing())
    margin = np.ceil(DICE_MARGIN_MM / spacing).astype(int)
    lo = np.maximum(idx.min(axis=0) - margin, 0)
    hi = np.minimum(idx.max(axis=0) + margin, np.array(labels_ct.GetSize()) - 1)
    return sitk.RegionOfInterest(labels_ct, [int(v) for v in hi - lo + 1], [int(v) for v in lo])


def _mr_on(grid: sitk.Image, grid_path: Path, image_path: Path, image: sitk.Image, chain: list[str]) -> sitk.Image:
    """An MR-space image on `grid`: identity (scanner coordinates) when the chain is empty, else through ANTs."""
    if not chain:
        return resample_like(image, grid, sitk.sitkLinear, 0.0)
    return ar.apply_transforms(image_path, grid, grid_path, chain, "linear")


def _truth_qc(patient: str, name: str, transforms: ar.Transforms, truth: dict[str, Any], work: Path) -> dict[str, Any]:
    """TRE over the truth landmarks and Dice of the warped MR-space GTV-T, before / after rigid / after SyN."""
    out: dict[str, Any] = {"tre": {}, "gtvt_dice": {}}
    region = _dice_region(truth["labels_ct"])
    if region is not None:
        region_path = work / "dice_region.nii"
        sitk.WriteImage(sitk.Cast(region, sitk.sitkFloat32), str(region_path))
        gtv_ct = sitk.GetArrayViewFromImage(region) == 1
        gtv_mr = sitk.Cast(sitk.ReadImage(str(truth["gtvt_mr"])), sitk.sitkFloat32)
    for stage, upto in CHAINS.items():
        chain = transforms.chain(upto)
        mapped = ar.ct_points_to_mr(truth["ct_mm"], chain)
        out["tre"][stage] = qc.tre_summary(mapped, truth["mr_mm"], truth["names"])
        if region is not None:
            warped = _mr_on(region, region_path, truth["gtvt_mr"], gtv_mr, chain)
            out["gtvt_dice"][stage] = qc.dice(sitk.GetArrayViewFromImage(warped) >= 0.5, gtv_ct)
    tre = out["tre"]
    log.info(
        "patient %s, %s: landmark TRE mean / max (mm): before %.2f / %.2f, rigid %.2f / %.2f, SyN %.2f / %.2f; "
        "GTV-T Dice after SyN %s",
        patient,
        MR_LABELS.get(name, name),
        *(tre[s][k] for s in qc.STAGES for k in ("mean_mm", "max_mm")),
        out["gtvt_dice"].get("syn"),
    )
    return out


class _CtSide:
    """The CT as the registration saw it, rebuilt from the CT and the record's settings, checked against the record."""

    def __init__(self, patient: str, registered: Path, ct_record: dict[str, Any], reg: RegistrationOptions):
        self.ct_path = registered / "ct.nii.gz"
        self.ct = read_volume(patient, self.ct_path, "CT")
        self.labels = read_volume(patient, registered / "labels.nii.gz", "labels")
        self.body = masks.ct_body_mask(self.ct, reg.body_threshold_hu)
        grid, self.fixed, self.body_w = fixed_side(self.ct, self.body, reg)
        if grid_json(self.ct) != ct_record["grid"] or exact_grid_json(grid) != ct_record["working_grid_whole_body"]:
            raise InputError(
                f"patient {patient}: the CT {self.ct_path} is not the CT the registration ran on "
                f"({ct_record['input']}, grid {ct_record['grid']}); rerun resample_pet and register_mri of this patient"
            )


def _qc_one(
    patient: str,
    name: str,
    record: dict[str, Any],
    ct: _CtSide,
    registered: Path,
    reg: RegistrationOptions,
    opts: QcOptions,
    truth: dict[str, Any] | None,
    work: Path,
) -> tuple[dict[str, Any], sitk.Image, sitk.Image]:
    label = MR_LABELS.get(name, name)
    mr_path = Path(record["input"])
    mr = read_volume(patient, mr_path, label)
    transforms = ar.Transforms(registered / f"{name}_to_ct")
    missing = [str(p) for p in (transforms.rigid, transforms.warp) if not p.is_file()]
    if missing:
        raise InputError(
            f"patient {patient}, {label}: {', '.join(missing)} missing; rerun register_mri of this patient"
        )

    # similarity on the working grid the metric saw: the CT body, before / rigid / SyN
    crop_at = record["working_grid_crop"]
    fixed, body_w = crop(ct.fixed, **crop_at), crop(ct.body_w, **crop_at)
    fixed_path, moving_path = work / f"fixed_{name}.nii", work / f"moving_{name}.nii"
    sitk.WriteImage(fixed, str(fixed_path))
    moving = prepare_moving(mr, reg)
    sitk.WriteImage(moving, str(moving_path))
    similarity = {
        stage: qc.similarity(
            fixed, _mr_on(fixed, fixed_path, moving_path, moving, transforms.chain(upto)), body_w, opts.histogram_bins
        )
        for stage, upto in CHAINS.items()
    }

    # overlap of the bodies after registration (before: the registration measured it to decide where to start)
    mr_body = masks.mr_body_mask(mr, reg.mr_body_fraction)
    body_path = work / f"body_{name}.nii"
    sitk.WriteImage(sitk.Cast(mr_body, sitk.sitkFloat32), str(body_path))
    body_on_grid = ar.apply_transforms(body_path, fixed, fixed_path, transforms.chain("syn"), "linear") >= 0.5
    registered_overlap = masks.overlap_coefficient(body_w, body_on_grid, masks.volume_ml(mr_body))

    result = {k: v for k, v in record.items() if k != "overlap_scanner_coordinates"}
    result["overlap"] = {"scanner_coordinates": record["overlap_scanner_coordinates"], "registered": registered_overlap}
    result["similarity"] = similarity
    if truth is not None:
        result["truth"] = _truth_qc(patient, name, transforms, truth, work)
    flags = qc.flags_for(label, result, opts)
    result["flags"] = [flag for flag, _ in flags]
    for _, message in flags:
        log.warning("patient %s, %s", patient, message)

    # for the figure: the MR as the scanner coordinates put it, and as registered (the stage's output)
    before = resample_like(mr, ct.ct, sitk.sitkLinear, 0.0)
    after = read_volume(patient, registered / f"{name}.nii.gz", f"registered {label}")
    return result, before, after


def registration_qc(
    patient: str,
    mri_record: dict[str, Any],
    registered_dir: str | Path,
    opts: QcOptions,
    truth_dir: str | Path | None = None,
) -> dict[str, Any]:
    """QC of the registration that `mri_record` (register_mri's record) describes, whose outputs are in
    registered_dir (with resample_pet's ct.nii.gz and labels.nii.gz); writes qc.json and qc.png there and returns
    the qc.json content. `truth_dir`: the synthetic patient's truth, for TRE and GTV-T Dice."""
    started = time.perf_counter()
    reg = options_from_params(mri_record["settings"]["options"])
    ants = ar.configure_ants(1, reg.random_seed)  # applying transforms is exact whatever the thread count
    registered = Path(registered_dir)
    truth = _load_truth(patient, Path(truth_dir)) if truth_dir else None
    records: dict[str, Any] = {}
    rows: list[tuple[str, sitk.Image]] = []
    with ar.scratch_dir() as tmp:
        ct = _CtSide(patient, registered, mri_record["ct"], reg)
        for name, record in mri_record["mr"].items():
            records[name], before, after = _qc_one(patient, name, record, ct, registered, reg, opts, truth, Path(tmp))
            label = MR_LABELS.get(name, name)
            rows += [(f"{label} scanner coordinates", before), (f"{label} registered", after)]
        slices = qc.qc_figure(registered / "qc.png", patient, ct.ct, ct.labels, ct.body, rows, opts.slices)
    flags = [f"{name}: {flag}" for name, r in records.items() for flag in r["flags"]]
    result = {
        "patient": patient,
        "status": "flagged" if flags else "ok",
        "flags": flags,
        "how_to_reapply": mri_record["how_to_reapply"],
        "ct": mri_record["ct"],
        "mr": records,
        "truth": str(truth_dir) if truth_dir else None,
        "qc_png_slices": slices,
        "settings": {**mri_record["settings"], "qc": asdict(opts)},
        "versions": {
            **mri_record["versions"],
            "qc": {
                "antspyx": getattr(ants, "__version__", "?"),
                "SimpleITK": sitk.Version.VersionString(),
                "python": platform.python_version(),
            },
        },
        "seconds": mri_record["seconds"],
        "qc_seconds": round(time.perf_counter() - started, 2),
    }
    (registered / "qc.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    log.info("patient %s: registration QC done in %.1f s (%s)", patient, result["qc_seconds"], result["status"])
    return result
