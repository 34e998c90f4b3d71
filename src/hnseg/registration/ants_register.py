"""ANTs (antspyx 0.6.1) for MR-to-CT registration: threads and seed, the two antsRegistration stages, and applying
the transforms to images and points.

Determinism. antspyx 0.6.1 has no switch for it (`ants.config.set_ants_deterministic` arrived in 0.6.3). What
works, and gives bit-identical transforms and images across processes (reference/environment.md section 4):
`ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS=1` in the environment before ITK inside antspyx first runs, plus a fixed
seed for the metric's sample jitter (`ANTS_RANDOM_SEED`, and `--random-seed` on the command line). So ants is only
ever imported through :func:`configure_ants`, which sets both first. Several threads are faster and not
reproducible to the bit (`registration.deterministic: false`).

The stages are built as antsRegistration command lines (the same arguments the `antsRegistration` program takes)
and run in-process through antspyx's compiled entry point, because `ants.registration()` fixes some numbers that
the config owns (SyN shrink factors and smoothing follow from the number of levels there). The command line of
each stage is returned, so a run can be repeated with the ANTs programs.

Transforms (ITK/ANTs convention): the files map points of the fixed image (CT) to the moving image (MR), which is
what resampling the MR onto the CT grid needs. `rigid.mat` is the rigid stage (including its initialisation);
`warp.nii.gz` is the SyN displacement field on the working grid, applied before the rigid one; so an MR is brought
to the CT grid with the transform list [warp.nii.gz, rigid.mat] (antsApplyTransforms -t warp -t rigid), and
`inverse_warp.nii.gz` with the inverse of rigid.mat maps the other way.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from hnseg.registration.options import METRICS, SAMPLING, RegistrationOptions, StageOptions

log = logging.getLogger(__name__)

THREADS_ENV = "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"
SEED_ENV = "ANTS_RANDOM_SEED"
RIGID_FILE, WARP_FILE, INVERSE_WARP_FILE = "rigid.mat", "warp.nii.gz", "inverse_warp.nii.gz"

_state: dict[str, tuple[int, int] | None] = {"configured": None}  # (threads, seed) once ants is set up


class RegistrationFailed(RuntimeError):
    """antsRegistration returned an error code."""


def configure_ants(threads: int, seed: int):
    """Set ITK's thread count and the ANTs seed, then import ants; returns the ants module.

    The thread count only takes effect if it is set before ITK inside antspyx first runs, so this refuses (a
    RuntimeError: a programming error, not bad input) when ants was imported earlier with another thread count.
    """
    want = (int(threads), int(seed))
    _configured = _state["configured"]
    if _configured is not None and _configured[0] != want[0]:
        raise RuntimeError(
            f"ants was configured for {_configured[0]} ITK thread(s) in this process; {want[0]} cannot take effect "
            "now. Run registrations with another thread count in a separate process."
        )
    if _configured is None and "ants" in sys.modules and os.environ.get(THREADS_ENV) != str(want[0]):
        raise RuntimeError(
            f"ants was imported before hnseg.registration could set {THREADS_ENV}={want[0]}; import hnseg.registration "
            "and call configure_ants before anything imports ants (or set the variable in the environment)."
        )
    os.environ[THREADS_ENV] = str(want[0])
    os.environ[SEED_ENV] = str(want[1])
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(want[0])
    import ants

    _state["configured"] = want
    return ants


def _ants():
    if _state["configured"] is None:
        raise RuntimeError("call hnseg.registration.ants_register.configure_ants(threads, seed) before registering")
    import ants

    return ants


def _x(values) -> str:
    return "x".join(f"{v:g}" for v in values)


def _metric(name: str, fixed: Path, moving: Path, stage: StageOptions) -> str:
    sampling = SAMPLING[stage.sampling]
    tail = f",{sampling}" if stage.sampling == "none" else f",{sampling},{stage.sampling_rate:g}"
    return f"{METRICS[name]}[{fixed},{moving},1,{stage.metric_bins}{tail}]"


def stage_arguments(
    kind: str,
    fixed: Path,
    moving: Path,
    prefix: Path,
    stage: StageOptions,
    opts: RegistrationOptions,
    initial: Path,
) -> list[str]:
    """antsRegistration arguments of one stage: kind "rigid" or "syn", started from the transform file `initial`
    (see :func:`write_initial_transform`; the SyN stage starts from the rigid result)."""
    if kind == "rigid":
        transform = f"Rigid[{stage.gradient_step:g}]"
    elif kind == "syn":
        transform = f"SyN[{stage.gradient_step:g},{stage.flow_sigma:g},{stage.total_sigma:g}]"
    else:
        raise ValueError(f"unknown stage {kind!r}")
    args = ["--dimensionality", "3", "--float", "1", "--output", f"[{prefix}]"]
    args += ["--initial-moving-transform", str(initial)]
    args += [
        "--transform", transform,
        "--metric", _metric(opts.metric, fixed, moving, stage),
        "--convergence", f"[{_x(stage.iterations)},{stage.convergence_threshold:g},{stage.convergence_window}]",
        "--shrink-factors", _x(stage.shrink_factors),
        "--smoothing-sigmas", _x(stage.smoothing_sigmas_mm) + "mm",
        "--use-histogram-matching", "0",
        "--collapse-output-transforms", "1",
        "--write-composite-transform", "0",
        "--random-seed", str(opts.random_seed),
        "--verbose", "0",
    ]  # fmt: skip
    return args


def run_ants_registration(args: list[str]) -> float:
    """Run antsRegistration in-process; returns wall seconds."""
    ants = _ants()
    start = time.perf_counter()
    code = ants.lib.antsRegistration(args)
    if code != 0:
        raise RegistrationFailed(f"antsRegistration exited with {code}: antsRegistration {' '.join(args)}")
    return time.perf_counter() - start


@dataclass
class Transforms:
    """The files of one MR-to-CT registration (see the module docstring for the convention)."""

    folder: Path
    seconds: dict[str, float] = field(default_factory=dict)
    commands: dict[str, str] = field(default_factory=dict)

    @property
    def rigid(self) -> Path:
        return self.folder / RIGID_FILE

    @property
    def warp(self) -> Path:
        return self.folder / WARP_FILE

    @property
    def inverse_warp(self) -> Path:
        return self.folder / INVERSE_WARP_FILE

    def chain(self, upto: str = "syn") -> list[str]:
        """Transform list, fixed-to-moving, for images: [] (identity), [rigid] or [warp, rigid]."""
        return {"none": [], "rigid": [str(self.rigid)], "syn": [str(self.warp), str(self.rigid)]}[upto]


def write_initial_transform(path: Path, centre_ct: np.ndarray, shift_mm: np.ndarray) -> Path:
    """The rigid stage's starting point: a translation by `shift_mm` (CT point + shift = MR point; zero to trust
    the scanner coordinates) whose centre of rotation is `centre_ct`, the centre of the CT body.

    The centre matters: without an initial transform antsRegistration rotates about the physical origin, often
    several hundred mm from the neck, which couples rotation and translation so badly that gradient descent
    crawls (on the synthetic cohort: rigid TRE 1.5-3 mm after 375 iterations instead of 0.5 mm).
    """
    transform = sitk.AffineTransform(3)
    transform.SetCenter([float(v) for v in centre_ct])
    transform.SetTranslation([float(v) for v in shift_mm])
    sitk.WriteTransform(transform, str(path))
    return path


def register(
    fixed: Path, moving: Path, out_dir: Path, opts: RegistrationOptions, initial: Path, work: Path
) -> Transforms:
    """Rigid, then SyNOnly seeded with the rigid transform; writes rigid.mat, warp.nii.gz, inverse_warp.nii.gz."""
    out_dir.mkdir(parents=True, exist_ok=True)
    result = Transforms(out_dir)
    prefix = work / "rigid_"
    args = stage_arguments("rigid", fixed, moving, prefix, opts.rigid, opts, initial)
    result.commands["rigid"] = "antsRegistration " + " ".join(args)
    result.seconds["rigid"] = run_ants_registration(args)
    shutil.copyfile(f"{prefix}0GenericAffine.mat", result.rigid)

    prefix = work / "syn_"
    args = stage_arguments("syn", fixed, moving, prefix, opts.syn, opts, result.rigid)
    result.commands["syn"] = "antsRegistration " + " ".join(args)
    result.seconds["syn"] = run_ants_registration(args)
    warps = sorted(work.glob("syn_*Warp.nii.gz"))
    forward = [w for w in warps if not w.name.endswith("InverseWarp.nii.gz")]
    inverse = [w for w in warps if w.name.endswith("InverseWarp.nii.gz")]
    if len(forward) != 1 or len(inverse) != 1:
        raise RegistrationFailed(f"SyN wrote {[w.name for w in warps]}; expected one Warp and one InverseWarp")
    shutil.copyfile(forward[0], result.warp)
    shutil.copyfile(inverse[0], result.inverse_warp)
    return result


def apply_transforms(
    moving: Path | str, reference: sitk.Image, reference_path: Path | str, transforms: list[str], interpolator: str
) -> sitk.Image:
    """The moving image resampled onto `reference` (read from reference_path) through `transforms` (ANTs order,
    at least one); returns a float32 SimpleITK image with the reference's geometry; outside the moving image: 0."""
    ants = _ants()
    fixed_img = ants.image_read(str(reference_path))
    moving_img = ants.image_read(str(moving))
    out = ants.apply_transforms(fixed_img, moving_img, transformlist=transforms, interpolator=interpolator)
    image = sitk.GetImageFromArray(np.ascontiguousarray(out.numpy().transpose(2, 1, 0), dtype=np.float32))
    image.CopyInformation(reference)
    return image


def ct_points_to_mr(points_ct: np.ndarray, transforms: list[str]) -> np.ndarray:
    """Map CT points (N, 3; LPS mm) to the MR through the registration's fixed-to-moving transform list."""
    if not transforms:
        return np.array(points_ct, dtype=np.float64)
    import pandas as pd

    ants = _ants()
    frame = pd.DataFrame(np.asarray(points_ct, dtype=np.float64), columns=["x", "y", "z"])
    mapped = ants.apply_transforms_to_points(3, frame, transforms)
    return mapped[["x", "y", "z"]].to_numpy(dtype=np.float64)


def scratch_dir(parent: Path | None = None) -> tempfile.TemporaryDirectory:
    """A scratch folder for the working images and the raw antsRegistration outputs."""
    return tempfile.TemporaryDirectory(prefix="hnseg-reg-", dir=parent)
