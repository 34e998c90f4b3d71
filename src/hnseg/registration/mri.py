"""Stage register_mri, per patient: T1w and T2w each registered to the CT (rigid, then SyN seeded with it; mutual
information), warped onto the CT grid (linear), the transforms, and the record of how (DESIGN.md section 3.3).

What the metric sees (decided on the synthetic cohort, see config/config.yaml): the CT clipped to `ct_clip_hu`, 0
outside the body (largest region above `body_threshold_hu`, so table and blankets never pull the MR), coarsened to
`working_spacing_mm` and cropped to the body the MR covers plus a margin (a planning CT often reaches from the vertex
to the shoulders, the MR only the neck); the MR clipped at a high percentile. The rigid stage starts from a transform
centred on that part of the body (rotations about the neck, not the scanner origin), either trusting the scanner
coordinates or aligning the body centres (`initialisation`).

The record (the rule's mri.json) holds what only the registration knows and the QC needs: where each registration
started and why, the working grid it ran on, the exact antsRegistration commands, timings and settings. The QC
(similarity, overlap, TRE, figure) is the registration_qc rule's (`qc_stage`), which re-applies the transforms;
nothing here imports it, so editing the QC never reruns a registration.
"""

from __future__ import annotations

import logging
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from hnseg.errors import InputError
from hnseg.registration import ants_register as ar
from hnseg.registration import masks
from hnseg.registration.images import exact_grid_json, extent, grid_json, read_volume, write_volume
from hnseg.registration.options import RegistrationOptions
from hnseg.registration.resample import crop, fixed_side, prepare_moving, resample_like

log = logging.getLogger(__name__)

MR_LABELS = {"t1": "T1w", "t2": "T2w"}


def output_paths(out_dir: str | Path, names: list[str]) -> list[Path]:
    """What register_mri writes for the MRs `names`: <name>.nii.gz on the CT grid and the folder <name>_to_ct/."""
    out_dir = Path(out_dir)
    return [path for name in names for path in (out_dir / f"{name}.nii.gz", out_dir / f"{name}_to_ct")]


def centroid(mask: sitk.Image) -> np.ndarray:
    """Centre (LPS mm) of the voxels of a mask."""
    idx = np.argwhere(sitk.GetArrayViewFromImage(mask) > 0).mean(axis=0)[::-1]
    return np.array(mask.TransformContinuousIndexToPhysicalPoint([float(v) for v in idx]))


class _Patient:
    """The CT side, shared by the T1w and T2w registrations."""

    def __init__(self, patient: str, ct_path: Path, opts: RegistrationOptions, work: Path):
        self.patient, self.ct_path, self.opts, self.work = patient, ct_path, opts, work
        self.ct = read_volume(patient, ct_path, "CT")
        self.body = masks.ct_body_mask(self.ct, opts.body_threshold_hu)
        if not sitk.GetArrayViewFromImage(self.body).any():
            raise InputError(
                f"patient {patient}: no voxel of the CT {ct_path} is above registration.body_threshold_hu = "
                f"{opts.body_threshold_hu} HU, so there is no body to register to; is it a CT in HU?"
            )
        self.centre = centroid(self.body)
        self.grid, self.fixed, self.body_w = fixed_side(self.ct, self.body, opts)
        self.body_ml = masks.volume_ml(self.body)

    def crop_for(self, mr: sitk.Image, shift: np.ndarray) -> tuple[list[int], list[int]]:
        """(start, size) of the working grid cut down to the CT body the MR can see from its starting position
        (plus the margin); the whole grid when it sees none. The rest would cost time and pull the metric towards
        more overlap."""
        ones = sitk.Image(mr.GetSize(), sitk.sitkUInt8) + 1
        ones.CopyInformation(mr)
        seen = resample_like(
            ones, self.grid, sitk.sitkNearestNeighbor, 0, sitk.TranslationTransform(3, [float(v) for v in shift]),
            pixel_type=sitk.sitkUInt8,
        )  # fmt: skip
        region = (sitk.GetArrayFromImage(seen) > 0) & (sitk.GetArrayViewFromImage(self.body_w) > 0)
        if not region.any():
            return [0, 0, 0], list(self.grid.GetSize())
        idx = np.argwhere(region)[:, ::-1]
        margin = np.ceil(self.opts.crop_margin_mm / np.array(self.grid.GetSpacing())).astype(int)
        lo = np.maximum(idx.min(axis=0) - margin, 0)
        hi = np.minimum(idx.max(axis=0) + margin, np.array(self.grid.GetSize()) - 1)
        return [int(v) for v in lo], [int(v) for v in hi - lo + 1]


def _register_one(pt: _Patient, name: str, mr_path: Path, out_dir: Path) -> dict[str, Any]:
    opts, patient, label = pt.opts, pt.patient, MR_LABELS.get(name, name)
    where = f"patient {patient}, {label} {mr_path}"
    mr = read_volume(patient, mr_path, label)
    if not np.isfinite(sitk.GetArrayViewFromImage(mr)).all():
        raise InputError(f"{where}: the volume holds NaN or infinite values; rerun the import of this patient")
    mr_body = masks.mr_body_mask(mr, opts.mr_body_fraction)
    mr_body_ml = masks.volume_ml(mr_body)
    if mr_body_ml == 0.0:
        raise InputError(f"{where}: the volume is blank (no signal above background); check the MR series at import")

    # where to start
    native = masks.overlap_coefficient(
        pt.body_w, resample_like(mr_body, pt.grid, sitk.sitkNearestNeighbor, 0, pixel_type=sitk.sitkUInt8), mr_body_ml
    )
    init = opts.initialisation
    if init == "auto":
        init = "geometry" if native >= opts.min_overlap else "center_of_mass"
    if init == "geometry" and native == 0.0:
        raise InputError(
            f"{where}: in scanner coordinates the MR ({extent(mr)}) does not overlap the CT body ({extent(pt.ct)}), "
            "so a registration that trusts the coordinates cannot start. The MR has its own frame of reference: set "
            "registration.initialisation to auto or center_of_mass"
        )
    shift = centroid(mr_body) - pt.centre if init == "center_of_mass" else np.zeros(3)
    start, size = pt.crop_for(mr, shift)
    fixed, body_w = crop(pt.fixed, start, size), crop(pt.body_w, start, size)
    fixed_path = pt.work / f"fixed_{name}.nii"
    sitk.WriteImage(fixed, str(fixed_path))
    # rotations about the centre of the CT body that the MR sees
    initial = ar.write_initial_transform(pt.work / f"initial_{name}.mat", centroid(body_w), shift)
    moving_path = pt.work / f"moving_{name}.nii"
    sitk.WriteImage(prepare_moving(mr, opts), str(moving_path))
    log.info(
        "%s: registering on a %s grid (start: %s, body overlap in scanner coordinates %.2f)",
        where, "x".join(str(v) for v in fixed.GetSize()), init, native,
    )  # fmt: skip

    # rigid, then SyN
    transforms = ar.register(fixed_path, moving_path, out_dir / f"{name}_to_ct", opts, initial, pt.work)
    log.info("%s: rigid %.1f s, SyN %.1f s", where, transforms.seconds["rigid"], transforms.seconds["syn"])

    # the MR on the CT grid: the stage's output
    begin = time.perf_counter()
    write_volume(ar.apply_transforms(mr_path, pt.ct, pt.ct_path, transforms.chain("syn"), "linear"),
                 out_dir / f"{name}.nii.gz")  # fmt: skip
    transforms.seconds["resample"] = time.perf_counter() - begin
    return {
        "input": str(mr_path),
        "grid": grid_json(mr),
        "initialisation": init,
        "overlap_scanner_coordinates": native,
        "initial_shift_mm": [round(float(v), 4) for v in shift],
        "working_grid": grid_json(fixed),
        "working_grid_crop": {"start_xyz": start, "size_xyz": size},
        "transforms": {
            "rigid": f"{name}_to_ct/{ar.RIGID_FILE}",
            "warp": f"{name}_to_ct/{ar.WARP_FILE}",
            "inverse_warp": f"{name}_to_ct/{ar.INVERSE_WARP_FILE}",
        },
        "seconds": {k: round(v, 2) for k, v in transforms.seconds.items()},
        "commands": {k: v.replace(str(pt.work), "<work>") for k, v in transforms.commands.items()},
    }


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
    mr_paths: dict[str, str | Path],
    out_dir: str | Path,
    opts: RegistrationOptions,
) -> dict[str, Any]:
    """Register each MR of `mr_paths` ({"t1": path, "t2": path}) to the CT; write <name>.nii.gz on the CT grid and
    <name>_to_ct/ into out_dir; returns the stage's record (how each registration started and ran, the settings)."""
    started = time.perf_counter()
    ants = ar.configure_ants(opts.itk_threads, opts.random_seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with ar.scratch_dir() as tmp:
        pt = _Patient(patient, Path(ct_path), opts, Path(tmp))
        records = {name: _register_one(pt, name, Path(path), out_dir) for name, path in mr_paths.items()}
    result = {
        "patient": patient,
        "how_to_reapply": how_to_reapply(list(mr_paths)),
        "ct": {
            "input": str(ct_path),
            "grid": grid_json(pt.ct),
            "body_ml": round(pt.body_ml, 1),
            "working_grid_whole_body": exact_grid_json(pt.grid),
        },
        "mr": records,
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
    log.info("patient %s: registration done in %.1f s", patient, result["seconds"])
    return result
