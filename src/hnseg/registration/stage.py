"""Stage register_mri, per patient: everything on the CT grid (DESIGN.md section 3.3).

Two entry points, one per workflow rule:

- :func:`resample_pet`: the CT and labels (already on the CT grid, copied byte for byte by :func:`copy_ct`) and the
  PET (SUVbw) onto the CT grid, linear; PET and CT share the frame of reference;
- :func:`register_mri`: T1w and T2w each registered to the CT (rigid, then SyN seeded with it; Mattes mutual
  information), warped onto the CT grid (linear), the transforms, qc.json and qc.png.

Two rules rather than one so that retuning the registration never reruns the PET, and an MR that fails says so
in its own log; the CT-only methods read the imported CT, so neither rule stands in their way.

What the metric sees (decided on the synthetic cohort, see config/config.yaml): the CT clipped to
`ct_clip_hu`, 0 outside the body (largest region above `body_threshold_hu`, so table and blankets never pull the
MR), coarsened to `working_spacing_mm` and cropped to the body the MR covers plus a margin (a planning CT often
reaches from the vertex to the shoulders, the MR only the neck); the MR clipped at a high percentile. The rigid
stage starts from a transform centred on that part of the body (rotations about the neck, not the scanner
origin), either trusting the scanner coordinates or aligning the body centres (`initialisation`).
"""

from __future__ import annotations

import json
import logging
import platform
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from hnseg.errors import InputError
from hnseg.registration import ants_register as ar
from hnseg.registration import masks, qc
from hnseg.registration.options import RegistrationOptions
from hnseg.registration.resample import (
    prepare_fixed,
    prepare_moving,
    resample_like,
    resample_pet_to_ct,
    working_grid,
)

log = logging.getLogger(__name__)

MR_LABELS = {"t1": "T1w", "t2": "T2w"}
TRUTH_FILES = ("landmarks.json", "gtvt_mr.nii.gz", "labels.nii.gz")
DICE_MARGIN_MM = 20.0


def _read(patient: str, path: str | Path, what: str) -> sitk.Image:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"patient {patient}: {what} {path} does not exist; run the import of this patient first")
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise InputError(
            f"patient {patient}: cannot read the {what} {path} ({str(exc).strip().splitlines()[-1]}); rerun its import"
        ) from None
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            f"patient {patient}: the {what} {path} is not a 3D scalar volume (dimension {image.GetDimension()}, "
            f"{image.GetNumberOfComponentsPerPixel()} components); rerun its import"
        )
    return image


def _same_grid(a: sitk.Image, b: sitk.Image, tol_mm: float = 1e-3) -> bool:
    return (
        a.GetSize() == b.GetSize()
        and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=1e-5)
        and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=tol_mm)
        and np.allclose(a.GetDirection(), b.GetDirection(), atol=1e-6)
    )


def _grid_json(image: sitk.Image) -> dict[str, Any]:
    return {
        "size_xyz": list(image.GetSize()),
        "spacing_xyz_mm": [round(v, 6) for v in image.GetSpacing()],
        "origin_xyz_mm": [round(v, 4) for v in image.GetOrigin()],
    }


def _extent(image: sitk.Image) -> str:
    from hnseg.registration.resample import physical_bounds

    lo, hi = physical_bounds(image)
    return ", ".join(f"{ax} {a:.0f}..{b:.0f}" for ax, a, b in zip("xyz", lo, hi, strict=True)) + " mm"


def _write(image: sitk.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), useCompression=True)


# ----------------------------------------------------------------------------------------------- CT and PET


def copy_ct(patient: str, ct_path: str | Path, labels_path: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """CT and labels into the registered folder, unchanged (they define the grid); checks the labels' grid."""
    ct, labels = _read(patient, ct_path, "CT"), _read(patient, labels_path, "labels")
    if not _same_grid(ct, labels):
        raise InputError(
            f"patient {patient}: the labels {labels_path} are not on the CT grid of {ct_path} (labels {_grid_json(labels)}, "
            f"CT {_grid_json(ct)}); rerun the import of this patient"
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ct_path, out_dir / "ct.nii.gz")
    shutil.copyfile(labels_path, out_dir / "labels.nii.gz")
    log.info("patient %s: CT %s and labels copied (grid %s)", patient, ct.GetSize(), _grid_json(ct))
    return {"patient": patient, "grid": _grid_json(ct)}


def resample_pet(
    patient: str,
    ct_path: str | Path,
    labels_path: str | Path,
    pet_path: str | Path,
    out_dir: str | Path,
    body_threshold_hu: float,
) -> dict[str, Any]:
    """ct.nii.gz and labels.nii.gz (copied, see :func:`copy_ct`) and pet.nii.gz: the PET (SUVbw) on the CT grid,
    linear, 0 outside its field of view. Refuses a PET that misses the CT body."""
    record = copy_ct(patient, ct_path, labels_path, out_dir)
    ct, pet = _read(patient, ct_path, "CT"), _read(patient, pet_path, "PET")
    body = masks.ct_body_mask(ct, body_threshold_hu)
    on_ct = resample_pet_to_ct(pet, ct)
    ones = sitk.Image(pet.GetSize(), sitk.sitkUInt8) + 1
    ones.CopyInformation(pet)
    fov = sitk.GetArrayFromImage(resample_like(ones, ct, sitk.sitkNearestNeighbor, 0, pixel_type=sitk.sitkUInt8))
    inside = sitk.GetArrayViewFromImage(body) > 0
    covered = float(np.count_nonzero(fov[inside])) / max(1, int(np.count_nonzero(inside)))
    if covered == 0.0:
        raise InputError(
            f"patient {patient}: the PET {pet_path} does not overlap the CT body ({_extent(pet)} against the CT's "
            f"{_extent(ct)}). PET and CT must share a frame of reference (the PET of the PET/CT); check the series "
            "chosen at import (pet.json)"
        )
    if covered < 0.5:
        log.warning(
            "patient %s: the PET covers only %.0f%% of the CT body (PET %s, CT %s); the rest is 0 on the CT grid",
            patient,
            100 * covered,
            _extent(pet),
            _extent(ct),
        )
    _write(on_ct, Path(out_dir) / "pet.nii.gz")
    log.info(
        "patient %s: PET %s resampled onto the CT grid %s; it covers %.1f%% of the body",
        patient, pet.GetSize(), ct.GetSize(), 100 * covered,
    )  # fmt: skip
    return {**record, "pet_body_coverage": round(covered, 4)}


# ----------------------------------------------------------------------------------------------- MRI


def _centroid(mask: sitk.Image) -> np.ndarray:
    idx = np.argwhere(sitk.GetArrayViewFromImage(mask) > 0).mean(axis=0)[::-1]
    return np.array(mask.TransformContinuousIndexToPhysicalPoint([float(v) for v in idx]))


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


class _Patient:
    """Per-patient state shared by the T1w and T2w registrations."""

    def __init__(self, patient: str, ct_path: Path, labels_path: Path, opts: RegistrationOptions, work: Path):
        self.patient, self.ct_path, self.opts, self.work = patient, ct_path, opts, work
        self.ct = _read(patient, ct_path, "CT")
        self.labels = _read(patient, labels_path, "labels")
        if not _same_grid(self.ct, self.labels):
            raise InputError(
                f"patient {patient}: the labels {labels_path} are not on the CT grid of {ct_path}; rerun the import"
            )
        self.body = masks.ct_body_mask(self.ct, opts.body_threshold_hu)
        if not sitk.GetArrayViewFromImage(self.body).any():
            raise InputError(
                f"patient {patient}: no voxel of the CT {ct_path} is above registration.body_threshold_hu = "
                f"{opts.body_threshold_hu} HU, so there is no body to register to; is it a CT in HU?"
            )
        self.centre = _centroid(self.body)
        self.grid = working_grid(self.ct, self.body, opts.working_spacing_mm, opts.crop_margin_mm)
        self.fixed = prepare_fixed(self.ct, self.body, self.grid, opts)
        self.body_w = resample_like(self.body, self.grid, sitk.sitkNearestNeighbor, 0, pixel_type=sitk.sitkUInt8)
        self.body_ml = masks.volume_ml(self.body)

    def crop_to(self, mr: sitk.Image, shift: np.ndarray, name: str) -> tuple[sitk.Image, sitk.Image, Path]:
        """The working grid cut down to the CT body the MR can see from its starting position (plus the margin):
        (fixed image, body mask, fixed image path). A CT often reaches from the vertex to the shoulders while the
        MR covers the neck; the rest would cost time and pull the metric towards more overlap."""
        ones = sitk.Image(mr.GetSize(), sitk.sitkUInt8) + 1
        ones.CopyInformation(mr)
        seen = resample_like(
            ones, self.grid, sitk.sitkNearestNeighbor, 0, sitk.TranslationTransform(3, [float(v) for v in shift]),
            pixel_type=sitk.sitkUInt8,
        )  # fmt: skip
        region = (sitk.GetArrayFromImage(seen) > 0) & (sitk.GetArrayViewFromImage(self.body_w) > 0)
        fixed, body = self.fixed, self.body_w
        if region.any():
            idx = np.argwhere(region)[:, ::-1]
            margin = np.ceil(self.opts.crop_margin_mm / np.array(self.grid.GetSpacing())).astype(int)
            lo = np.maximum(idx.min(axis=0) - margin, 0)
            hi = np.minimum(idx.max(axis=0) + margin, np.array(self.grid.GetSize()) - 1)
            size, start = [int(v) for v in hi - lo + 1], [int(v) for v in lo]
            fixed = sitk.RegionOfInterest(self.fixed, size, start)
            body = sitk.RegionOfInterest(self.body_w, size, start)
        path = self.work / f"fixed_{name}.nii"
        sitk.WriteImage(fixed, str(path))
        return fixed, body, path


def _mr_on(grid: sitk.Image, grid_path: Path, image_path: Path, image: sitk.Image, chain: list[str]) -> sitk.Image:
    """An MR-space image on `grid`: identity (scanner coordinates) when the chain is empty, else through ANTs."""
    if not chain:
        return resample_like(image, grid, sitk.sitkLinear, 0.0)
    return ar.apply_transforms(image_path, grid, grid_path, chain, "linear")


def _register_one(
    pt: _Patient, name: str, mr_path: Path, out_dir: Path, truth: dict[str, Any] | None
) -> tuple[dict[str, Any], sitk.Image, sitk.Image]:
    opts, patient, label = pt.opts, pt.patient, MR_LABELS.get(name, name)
    where = f"patient {patient}, {label} {mr_path}"
    mr = _read(patient, mr_path, label)
    values = sitk.GetArrayViewFromImage(mr)
    if not np.isfinite(values).all():
        raise InputError(f"{where}: the volume holds NaN or infinite values; rerun the import of this patient")
    mr_body = masks.mr_body_mask(mr, opts.qc.mr_body_fraction)
    mr_body_ml = masks.volume_ml(mr_body)
    if mr_body_ml == 0.0:
        raise InputError(f"{where}: the volume is blank (no signal above background); check the MR series at import")

    # where to start
    native = qc.overlap_coefficient(
        pt.body_w, resample_like(mr_body, pt.grid, sitk.sitkNearestNeighbor, 0, pixel_type=sitk.sitkUInt8), mr_body_ml
    )
    init = opts.initialisation
    if init == "auto":
        init = "geometry" if native >= opts.qc.min_overlap else "center_of_mass"
    if init == "geometry" and native == 0.0:
        raise InputError(
            f"{where}: in scanner coordinates the MR ({_extent(mr)}) does not overlap the CT body ({_extent(pt.ct)}), "
            "so a registration that trusts the coordinates cannot start. The MR has its own frame of reference: set "
            "registration.initialisation to auto or center_of_mass"
        )
    shift = _centroid(mr_body) - pt.centre if init == "center_of_mass" else np.zeros(3)
    fixed, body_w, fixed_path = pt.crop_to(mr, shift, name)
    # rotations about the centre of the CT body that the MR sees
    initial = ar.write_initial_transform(pt.work / f"initial_{name}.mat", _centroid(body_w), shift)
    moving_path = pt.work / f"moving_{name}.nii"
    sitk.WriteImage(prepare_moving(mr, opts), str(moving_path))
    log.info(
        "%s: registering on a %s grid (start: %s, body overlap in scanner coordinates %.2f)",
        where, "x".join(str(v) for v in fixed.GetSize()), init, native,
    )  # fmt: skip

    # rigid, then SyN
    transforms = ar.register(fixed_path, moving_path, out_dir / f"{name}_to_ct", opts, initial, pt.work)
    log.info("%s: rigid %.1f s, SyN %.1f s", where, transforms.seconds["rigid"], transforms.seconds["syn"])

    # QC on the working grid: similarity over the CT body, overlap of the bodies
    moving = sitk.ReadImage(str(moving_path))
    similarity = {}
    for stage, upto in zip(qc.STAGES, ("none", "rigid", "syn"), strict=True):
        on_grid = _mr_on(fixed, fixed_path, moving_path, moving, transforms.chain(upto))
        similarity[stage] = qc.similarity(fixed, on_grid, body_w, opts.qc.histogram_bins)
    body_path = pt.work / f"body_{name}.nii"
    sitk.WriteImage(sitk.Cast(mr_body, sitk.sitkFloat32), str(body_path))
    body_on_grid = ar.apply_transforms(body_path, fixed, fixed_path, transforms.chain("syn"), "linear") >= 0.5
    registered = qc.overlap_coefficient(body_w, body_on_grid, mr_body_ml)

    # the MR on the CT grid (the stage's output) and, for the figure, as the scanner coordinates put it
    start = time.perf_counter()
    warped = ar.apply_transforms(mr_path, pt.ct, pt.ct_path, transforms.chain("syn"), "linear")
    _write(warped, out_dir / f"{name}.nii.gz")
    before = resample_like(mr, pt.ct, sitk.sitkLinear, 0.0)
    transforms.seconds["resample"] = time.perf_counter() - start

    record: dict[str, Any] = {
        "input": str(mr_path),
        "grid": _grid_json(mr),
        "initialisation": init,
        "working_grid": _grid_json(fixed),
        "transforms": {
            "rigid": f"{name}_to_ct/{ar.RIGID_FILE}",
            "warp": f"{name}_to_ct/{ar.WARP_FILE}",
            "inverse_warp": f"{name}_to_ct/{ar.INVERSE_WARP_FILE}",
        },
        "overlap": {"scanner_coordinates": native, "registered": registered},
        "similarity": similarity,
        "seconds": {k: round(v, 2) for k, v in transforms.seconds.items()},
        "commands": {k: v.replace(str(pt.work), "<work>") for k, v in transforms.commands.items()},
    }
    if truth is not None:
        record["truth"] = _truth_qc(pt, name, transforms, truth)
    flags = qc.flags_for(label, record, opts.qc)
    record["flags"] = [flag for flag, _ in flags]
    for _, message in flags:
        log.warning("patient %s, %s", patient, message)
    return record, before, warped


def _truth_qc(pt: _Patient, name: str, transforms: ar.Transforms, truth: dict[str, Any]) -> dict[str, Any]:
    """TRE over the truth landmarks and Dice of the warped MR-space GTV-T, before / after rigid / after SyN."""
    out: dict[str, Any] = {"tre": {}, "gtvt_dice": {}}
    region = _dice_region(truth["labels_ct"])
    if region is not None:
        region_path = pt.work / "dice_region.nii"
        sitk.WriteImage(sitk.Cast(region, sitk.sitkFloat32), str(region_path))
        gtv_ct = sitk.GetArrayViewFromImage(region) == 1
        gtv_mr = sitk.Cast(sitk.ReadImage(str(truth["gtvt_mr"])), sitk.sitkFloat32)
    for stage, upto in zip(qc.STAGES, ("none", "rigid", "syn"), strict=True):
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
        pt.patient,
        MR_LABELS.get(name, name),
        *(tre[s][k] for s in qc.STAGES for k in ("mean_mm", "max_mm")),
        out["gtvt_dice"].get("syn"),
    )
    return out


def how_to_reapply(names: list[str]) -> dict[str, str]:
    n = names[0] if names else "t1"
    return {
        "convention": (
            f"{n}_to_ct/ maps CT points to MR points (ITK/ANTs); apply warp.nii.gz then rigid.mat. The native MR "
            "is results/imported/<patient>/<mr>.nii.gz; the CT grid is ct.nii.gz of this folder."
        ),
        "antsApplyTransforms": (
            f"antsApplyTransforms -d 3 -i {n}_native.nii.gz -r ct.nii.gz -n Linear -t {n}_to_ct/warp.nii.gz "
            f"-t {n}_to_ct/rigid.mat -o {n}.nii.gz"
        ),
        "ants.apply_transforms": (
            f"ants.apply_transforms(fixed=ants.image_read('ct.nii.gz'), moving=ants.image_read('{n}_native.nii.gz'), "
            f"transformlist=['{n}_to_ct/warp.nii.gz', '{n}_to_ct/rigid.mat'], interpolator='linear')"
        ),
        "ct_labels_to_mr": (
            f"ants.apply_transforms(fixed=ants.image_read('{n}_native.nii.gz'), moving=ants.image_read('labels.nii.gz'), "
            f"transformlist=['{n}_to_ct/rigid.mat', '{n}_to_ct/inverse_warp.nii.gz'], whichtoinvert=[True, False], "
            "interpolator='genericLabel')"
        ),
        "ct_points_to_mr": (
            "ants.apply_transforms_to_points(3, points_dataframe_xyz_lps, "
            f"['{n}_to_ct/warp.nii.gz', '{n}_to_ct/rigid.mat'])"
        ),
    }


def register_mri(
    patient: str,
    ct_path: str | Path,
    labels_path: str | Path,
    mr_paths: dict[str, str | Path],
    out_dir: str | Path,
    opts: RegistrationOptions,
    truth_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Register each MR of `mr_paths` ({"t1": path, "t2": path}) to the CT; write <name>.nii.gz on the CT grid,
    <name>_to_ct/, qc.json and qc.png into out_dir; returns the QC record."""
    started = time.perf_counter()
    ants = ar.configure_ants(opts.itk_threads, opts.random_seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    truth = _load_truth(patient, Path(truth_dir)) if truth_dir else None
    records: dict[str, Any] = {}
    rows: list[tuple[str, sitk.Image]] = []
    with ar.scratch_dir() as tmp:
        pt = _Patient(patient, Path(ct_path), Path(labels_path), opts, Path(tmp))
        for name, path in mr_paths.items():
            record, before, after = _register_one(pt, name, Path(path), out_dir, truth)
            records[name] = record
            label = MR_LABELS.get(name, name)
            rows += [(f"{label} scanner coordinates", before), (f"{label} registered", after)]
        slices = qc.qc_figure(out_dir / "qc.png", patient, pt.ct, pt.labels, pt.body, rows, opts.qc.slices)
        ct_record = {
            "input": str(ct_path),
            "grid": _grid_json(pt.ct),
            "body_ml": round(pt.body_ml, 1),
            "working_grid_whole_body": _grid_json(pt.grid),
        }
    flags = [f"{name}: {flag}" for name, r in records.items() for flag in r["flags"]]
    result = {
        "patient": patient,
        "status": "flagged" if flags else "ok",
        "flags": flags,
        "how_to_reapply": how_to_reapply(list(mr_paths)),
        "ct": ct_record,
        "mr": records,
        "truth": str(truth_dir) if truth_dir else None,
        "qc_png_slices": slices,
        "settings": {
            "deterministic": opts.deterministic,
            "itk_threads": opts.itk_threads,
            "random_seed": opts.random_seed,
            "options": opts.to_json(),
        },
        "versions": {
            "antspyx": getattr(ants, "__version__", "?"),
            "SimpleITK": sitk.Version.VersionString(),
            "python": platform.python_version(),
        },
        "seconds": round(time.perf_counter() - started, 2),
    }
    (out_dir / "qc.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    log.info("patient %s: registration done in %.1f s (%s)", patient, result["seconds"], result["status"])
    return result
