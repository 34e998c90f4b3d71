"""Registration settings: the `registration` section of the config as typed, checked objects.

Every number of the stage lives in config/config.yaml (documented key by key there) and reaches the rules through
`params:`; nothing here has a default of its own, so the config file is the single source of the protocol.
`load_options()` reads the repository's config files, for tests, benchmarks and interactive use.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hnseg.errors import ConfigError

SAMPLING = {"none": "None", "regular": "Regular", "random": "Random"}
METRICS = {"mattes": "Mattes", "mi": "MI"}
INITIALISATIONS = ("auto", "geometry", "center_of_mass")


@dataclass(frozen=True)
class StageOptions:
    """One antsRegistration stage (rigid or SyN)."""

    metric_bins: int
    sampling: str  # none | regular | random
    sampling_rate: float
    iterations: tuple[int, ...]
    shrink_factors: tuple[int, ...]
    smoothing_sigmas_mm: tuple[float, ...]
    gradient_step: float
    convergence_threshold: float
    convergence_window: int
    flow_sigma: float | None = None  # SyN only: update field variance (voxels of the working grid)
    total_sigma: float | None = None  # SyN only: total field variance


@dataclass(frozen=True)
class QcOptions:
    min_overlap: float  # overlap coefficient of the CT and MR bodies below which an MR "does not overlap" the CT
    max_mi_drop: float  # relative fall of the body mutual information that flags a registration as making it worse
    mr_body_fraction: float  # MR body = voxels above this fraction of the MR's 99th percentile
    histogram_bins: int  # bins of the mutual information reported in qc.json
    slices: int  # axial slices through the tumour in qc.png


@dataclass(frozen=True)
class RegistrationOptions:
    metric: str
    deterministic: bool
    random_seed: int
    threads: int  # ITK threads when not deterministic
    initialisation: str  # auto | geometry | center_of_mass
    ct_clip_hu: tuple[float, float]
    body_threshold_hu: float
    mr_clip_percentile: float
    working_spacing_mm: float
    crop_margin_mm: float
    rigid: StageOptions
    syn: StageOptions
    qc: QcOptions

    @property
    def itk_threads(self) -> int:
        return 1 if self.deterministic else self.threads

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _stage(name: str, params: dict[str, Any], syn: bool) -> StageOptions:
    levels = {k: len(params[k]) for k in ("iterations", "shrink_factors", "smoothing_sigmas_mm")}
    if len(set(levels.values())) != 1:
        raise ConfigError(
            f"config key 'registration.{name}': iterations, shrink_factors and smoothing_sigmas_mm need one entry per "
            f"resolution level, got {levels}"
        )
    if params["sampling"] not in SAMPLING:
        raise ConfigError(
            f"config key 'registration.{name}.sampling': {params['sampling']!r}; allowed: {', '.join(SAMPLING)}"
        )
    return StageOptions(
        metric_bins=int(params["metric_bins"]),
        sampling=params["sampling"],
        sampling_rate=float(params["sampling_rate"]),
        iterations=tuple(int(v) for v in params["iterations"]),
        shrink_factors=tuple(int(v) for v in params["shrink_factors"]),
        smoothing_sigmas_mm=tuple(float(v) for v in params["smoothing_sigmas_mm"]),
        gradient_step=float(params["gradient_step"]),
        convergence_threshold=float(params["convergence_threshold"]),
        convergence_window=int(params["convergence_window"]),
        flow_sigma=float(params["flow_sigma"]) if syn else None,
        total_sigma=float(params["total_sigma"]) if syn else None,
    )


def options_from_params(params: dict[str, Any]) -> RegistrationOptions:
    """RegistrationOptions from the `registration` section of the config (as the rules pass it in params)."""
    try:
        if params["metric"] not in METRICS:
            raise ConfigError(f"config key 'registration.metric': {params['metric']!r}; allowed: {', '.join(METRICS)}")
        if params["initialisation"] not in INITIALISATIONS:
            raise ConfigError(
                f"config key 'registration.initialisation': {params['initialisation']!r}; allowed: "
                f"{', '.join(INITIALISATIONS)}"
            )
        lo, hi = (float(v) for v in params["ct_clip_hu"])
        if not lo < hi:
            raise ConfigError(f"config key 'registration.ct_clip_hu': {[lo, hi]} must be [low, high] with low < high")
        qc = params["qc"]
        return RegistrationOptions(
            metric=params["metric"],
            deterministic=bool(params["deterministic"]),
            random_seed=int(params["random_seed"]),
            threads=int(params["threads"]),
            initialisation=params["initialisation"],
            ct_clip_hu=(lo, hi),
            body_threshold_hu=float(params["body_threshold_hu"]),
            mr_clip_percentile=float(params["mr_clip_percentile"]),
            working_spacing_mm=float(params["working_spacing_mm"]),
            crop_margin_mm=float(params["crop_margin_mm"]),
            rigid=_stage("rigid", params["rigid"], syn=False),
            syn=_stage("syn", params["syn"], syn=True),
            qc=QcOptions(
                min_overlap=float(qc["min_overlap"]),
                max_mi_drop=float(qc["max_mi_drop"]),
                mr_body_fraction=float(qc["mr_body_fraction"]),
                histogram_bins=int(qc["histogram_bins"]),
                slices=int(qc["slices"]),
            ),
        )
    except KeyError as exc:
        raise ConfigError(
            f"config key 'registration.{exc.args[0]}' is missing (config/config.yaml defines every key)"
        ) from None


def load_options(*overrides: str | Path, demo: bool = False, **changes: Any) -> RegistrationOptions:
    """Options from the repository's config/config.yaml (plus config/demo.yaml when `demo`, plus any further
    YAML files), with top-level `registration` keys replaced by `changes` (e.g. deterministic=False)."""
    from hnseg.config import REPO_ROOT, load_config

    files = [REPO_ROOT / "config" / "config.yaml"]
    if demo:
        files.append(REPO_ROOT / "config" / "demo.yaml")
    params = dict(load_config(*files, *overrides)["registration"])
    params.update(changes)
    return options_from_params(params)
