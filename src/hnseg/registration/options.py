"""Registration settings: the `registration` section of the config as typed, checked objects.

Every number of the stage lives in config/config.yaml (documented key by key there) and reaches the rules through
`params:`; nothing here has a default of its own, so the config file is the single source of the protocol.
`load_options()` and `load_qc_options()` read the repository's config files, for tests, benchmarks and interactive
use.

Two rules read the section. register_mri reads everything but `qc`, except the two `qc` keys that decide where a
registration starts and what counts as the MR's body (:data:`REGISTRATION_QC_KEYS`); registration_qc reads `qc`
(:class:`QcOptions`) and takes what the registration saw from its record. So a QC number (a flag threshold, the
slices of the figure) reruns the QC alone, never a registration.
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


# The keys of registration.qc that the registration itself reads: `auto` initialisation trusts the scanner coordinates
# when the bodies overlap by at least min_overlap; the MR body is the voxels above mr_body_fraction of its 99th
# percentile. The other qc keys only shape qc.json and qc.png.
REGISTRATION_QC_KEYS = ("min_overlap", "mr_body_fraction")


@dataclass(frozen=True)
class QcOptions:
    """What registration_qc reads of `registration.qc` (mr_body_fraction is the registration's: the QC takes the MR
    body as the registration defined it, from its record)."""

    min_overlap: float  # overlap coefficient of the CT and MR bodies below which an MR "does not overlap" the CT
    max_mi_drop: float  # relative fall of the body mutual information that flags a registration as making it worse
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
    min_overlap: float  # registration.qc.min_overlap (see REGISTRATION_QC_KEYS)
    mr_body_fraction: float  # registration.qc.mr_body_fraction

    @property
    def itk_threads(self) -> int:
        return 1 if self.deterministic else self.threads

    def to_json(self) -> dict[str, Any]:
        """The options in the config's shape: :func:`options_from_params` of this gives them back."""
        params = asdict(self)
        params["ct_clip_hu"] = list(self.ct_clip_hu)
        params["qc"] = {key: params.pop(key) for key in REGISTRATION_QC_KEYS}
        for stage in ("rigid", "syn"):
            params[stage] = {
                k: list(v) if isinstance(v, tuple) else v for k, v in params[stage].items() if v is not None
            }
        return params


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


def _qc_key(qc: dict[str, Any], key: str) -> Any:
    if key not in qc:
        raise ConfigError(f"config key 'registration.qc.{key}' is missing (config/config.yaml defines every key)")
    return qc[key]


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
            min_overlap=float(_qc_key(params["qc"], "min_overlap")),
            mr_body_fraction=float(_qc_key(params["qc"], "mr_body_fraction")),
        )
    except KeyError as exc:
        raise ConfigError(
            f"config key 'registration.{exc.args[0]}' is missing (config/config.yaml defines every key)"
        ) from None


def registration_params(section: dict[str, Any]) -> dict[str, Any]:
    """What register_mri reads of the config's `registration` section: all of it but the QC-only keys."""
    params = {k: v for k, v in section.items() if k != "qc"}
    params["qc"] = {k: section["qc"][k] for k in REGISTRATION_QC_KEYS}
    return params


def qc_options_from_params(qc: dict[str, Any]) -> QcOptions:
    """QcOptions from the `registration.qc` section of the config (as the registration_qc rule passes it)."""
    try:
        return QcOptions(
            min_overlap=float(qc["min_overlap"]),
            max_mi_drop=float(qc["max_mi_drop"]),
            histogram_bins=int(qc["histogram_bins"]),
            slices=int(qc["slices"]),
        )
    except KeyError as exc:
        raise ConfigError(
            f"config key 'registration.qc.{exc.args[0]}' is missing (config/config.yaml defines every key)"
        ) from None


def _section(overrides: tuple[str | Path, ...], demo: bool) -> dict[str, Any]:
    from hnseg.config import REPO_ROOT, load_config

    files = [REPO_ROOT / "config" / "config.yaml"]
    if demo:
        files.append(REPO_ROOT / "config" / "demo.yaml")
    return dict(load_config(*files, *overrides)["registration"])


def load_options(*overrides: str | Path, demo: bool = False, **changes: Any) -> RegistrationOptions:
    """Options from the repository's config/config.yaml (plus config/demo.yaml when `demo`, plus any further
    YAML files), with top-level `registration` keys replaced by `changes` (e.g. deterministic=False)."""
    params = _section(overrides, demo)
    params.update(changes)
    return options_from_params(params)


def load_qc_options(*overrides: str | Path, demo: bool = False, **changes: Any) -> QcOptions:
    """QC options from the repository's config files, like :func:`load_options`, `changes` replacing qc keys."""
    return qc_options_from_params({**_section(overrides, demo)["qc"], **changes})
