"""PET to SUVbw by the QIBA vendor-neutral method.

`suv_factors` gives, per instance, the factor that turns the rescaled value (stored * RescaleSlope +
RescaleIntercept, each instance with its own slope and intercept) into SUVbw. `suv_details` returns the same
factors with the decisions made on the way (scan time and why, injection time and why, weight source, warnings)
so that the importer can record them.

Supported units (0054,1001):

- ``BQML``: SUVbw = rescaled * weight_kg * 1000 / (dose_Bq * 2^(-(scan - injection) / half_life_s)) with
  DecayCorrection START; with DecayCorrection ADMIN the image is already decay-corrected to the administration
  time, so the decay factor is 1.
- ``CNTS`` (Philips): the private SUV scale factor (7053,1000) is the factor; without it, the private
  activity-concentration scale factor (7053,1009) turns the rescaled value into Bq/ml and the BQML formula follows.
- ``GML``: already SUVbw, factor 1.

Scan time: SeriesDate/SeriesTime, unless it is after the earliest AcquisitionDate/AcquisitionTime of the
instances (a post-processed series); then the GE private scan datetime (0009,xx0D) of private creator
"GEMS_PETD_01" if present, else the earliest acquisition datetime.

Injection time: RadiopharmaceuticalStartDateTime if present; else RadiopharmaceuticalStartTime on the date of the
scan datetime, moved to the previous day if that puts the injection after the scan (a study crossing midnight).

Everything that makes SUV impossible or doubtful raises `hnseg.errors.InputError`. Messages name the series (its
SeriesDescription and the last digits of its SeriesInstanceUID) and the tag, never the patient's name or id.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

import numpy as np
import pydicom
from pydicom.datadict import tag_for_keyword

from hnseg.errors import InputError

__all__ = ["SuvResult", "suv_details", "suv_factors", "suv_pixels"]

#: Doses below this (in Bq) look like MBq (e.g. 370) and are refused.
MIN_DOSE_BQ = 1e5
#: Weights above this (in kg) look like grams and are refused.
MAX_WEIGHT_KG = 400.0
#: Longest plausible time between injection and scan.
MAX_UPTAKE_S = 24 * 3600.0
#: Uptake times outside this range give a warning (FDG protocols use about 45 to 120 minutes).
USUAL_UPTAKE_S = (10 * 60.0, 4 * 3600.0)
#: A sheet weight that differs from the header's PatientWeight by more than this fraction gives a warning.
WEIGHT_MISMATCH_FRACTION = 0.05

GE_PRIVATE_CREATOR = "GEMS_PETD_01"
GE_SCAN_DATETIME = (0x0009, 0x0D)  # (0009,xx0D) DT "PET scan_datetime"
PHILIPS_PRIVATE_CREATOR = "Philips PET Private Group"
PHILIPS_SUV_SCALE = (0x7053, 0x00)  # (7053,xx00) DS SUV scale factor
PHILIPS_ACTIVITY_SCALE = (0x7053, 0x09)  # (7053,xx09) DS activity-concentration scale factor

_PICK_AC = "use the attenuation-corrected PET series (CorrectedImage with ATTN and DECY, often named 'PET AC')"
_EXPORT_BQML = "export the attenuation-corrected PET series from the scanner or PACS in Bq/ml (Units BQML)"


@dataclass
class SuvResult:
    """SUVbw factors of one PET series and the decisions behind them.

    `factors` is in the order of the datasets given. Datetimes are naive local times, as in the DICOM header.
    `to_dict` gives a JSON-ready record without calendar dates (times of day and durations only).
    """

    factors: list[float]
    units: str
    method: str
    decay_correction: str | None = None
    scan_datetime: datetime | None = None
    scan_datetime_source: str | None = None
    injection_datetime: datetime | None = None
    injection_datetime_source: str | None = None
    uptake_seconds: float | None = None
    decay_factor: float | None = None
    dose_bq: float | None = None
    half_life_s: float | None = None
    weight_kg: float | None = None
    weight_source: str | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable summary for import.json (no dates, no UIDs, no patient identifiers)."""
        return {
            "units": self.units,
            "method": self.method,
            "decay_correction": self.decay_correction,
            "n_instances": len(self.factors),
            "factor_min": min(self.factors) if self.factors else None,
            "factor_max": max(self.factors) if self.factors else None,
            "scan_time": self.scan_datetime.time().isoformat() if self.scan_datetime else None,
            "scan_time_source": self.scan_datetime_source,
            "injection_time": self.injection_datetime.time().isoformat() if self.injection_datetime else None,
            "injection_time_source": self.injection_datetime_source,
            "uptake_seconds": self.uptake_seconds,
            "decay_factor": self.decay_factor,
            "dose_bq": self.dose_bq,
            "half_life_s": self.half_life_s,
            "weight_kg": self.weight_kg,
            "weight_source": self.weight_source,
            "warnings": list(self.warnings),
        }


def suv_factors(datasets: list[pydicom.Dataset], weight_kg: float | None = None) -> list[float]:
    """Per instance (same order), the factor that turns the rescaled value into SUVbw.

    `weight_kg` (the patients sheet's weight) is used only when PatientWeight is missing, empty or 0.
    Raises `InputError` when SUV cannot be computed.
    """
    return suv_details(datasets, weight_kg=weight_kg).factors


def suv_pixels(ds: pydicom.Dataset, factor: float) -> np.ndarray:
    """SUVbw of one instance as float32: (stored * its own RescaleSlope + its own RescaleIntercept) * factor."""
    slope = _plain_float(ds.get("RescaleSlope"))
    intercept = _plain_float(ds.get("RescaleIntercept"))
    stored = np.asarray(ds.pixel_array, dtype=np.float64)
    rescaled = stored * (1.0 if slope is None else slope) + (0.0 if intercept is None else intercept)
    return (rescaled * factor).astype(np.float32)


def suv_details(datasets: Sequence[pydicom.Dataset], weight_kg: float | None = None) -> SuvResult:
    """`suv_factors` with the decisions made: units, method, scan and injection times and why, weight, warnings."""
    datasets = list(datasets)
    if not datasets:
        raise InputError("PET series: no instances were given; pass every instance of one PET series.")
    series = _Series(datasets)
    series.check_single_series()
    series.check_modality()
    series.check_agreement()

    units = series.text("Units").upper()
    if not units:
        series.fail(f"{_tag('Units')} is missing, so the pixel values have no known unit; {_EXPORT_BQML}")
    if units == "GML":
        return SuvResult(
            factors=[1.0] * len(datasets),
            units=units,
            method="gml: already SUVbw",
            decay_correction=series.text("DecayCorrection").upper() or None,
        )
    if units not in ("BQML", "CNTS"):
        series.fail(
            f"{_tag('Units')} is '{units}'; hnseg computes SUVbw only from BQML, Philips CNTS (with the private "
            f"SUV or activity-concentration scale factor) or GML; {_EXPORT_BQML}"
        )
    series.check_corrected_image()

    if units == "CNTS":
        suv_scale = [_private_float(ds, PHILIPS_PRIVATE_CREATOR, *PHILIPS_SUV_SCALE, series) for ds in datasets]
        if all(v is not None and v > 0 for v in suv_scale):
            result = SuvResult(
                factors=[float(v) for v in suv_scale],  # type: ignore[arg-type]
                units=units,
                method="philips_suv_scale_factor: Philips private (7053,1000) SUV scale factor",
                decay_correction=series.text("DecayCorrection").upper() or None,
            )
            if len(set(result.factors)) > 1:
                result.warnings.append("the Philips SUV scale factor (7053,1000) differs between instances")
            return result
        activity = [_private_float(ds, PHILIPS_PRIVATE_CREATOR, *PHILIPS_ACTIVITY_SCALE, series) for ds in datasets]
        if not all(v is not None and v > 0 for v in activity):
            partly = any(v is not None for v in suv_scale) or any(v is not None for v in activity)
            series.fail(
                f"{_tag('Units')} is CNTS but the Philips private SUV scale factor (7053,1000) and "
                f"activity-concentration scale factor (7053,1009) of private creator '{PHILIPS_PRIVATE_CREATOR}' "
                f"are {'missing or 0 in some instances' if partly else 'both missing'}, so counts cannot be "
                f"converted; export the series with its private tags kept, or {_EXPORT_BQML}"
            )
        result = _bqml(series, weight_kg)
        result.units = units
        result.method = (
            "philips_activity_concentration: rescaled * Philips private (7053,1009) gives Bq/ml, then BQML "
            "decay-corrected SUVbw"
        )
        result.factors = [f * float(a) for f, a in zip(result.factors, activity, strict=True)]  # type: ignore[arg-type]
        return result
    return _bqml(series, weight_kg)


# --- BQML ---------------------------------------------------------------------------------------------------------


def _bqml(series: _Series, weight_kg: float | None) -> SuvResult:
    warnings: list[str] = []
    decay_correction = series.text("DecayCorrection").upper()
    if decay_correction not in ("START", "ADMIN"):
        shown = f"'{decay_correction}'" if decay_correction else "missing"
        series.fail(
            f"{_tag('DecayCorrection')} is {shown}; SUVbw needs images decay-corrected to the scan start (START) or "
            "to the administration time (ADMIN); export the attenuation-corrected PET series decay-corrected "
            "(DecayCorrection START), in Bq/ml"
        )
    dose = series.radiopharm_float("RadionuclideTotalDose")
    if dose is None or dose <= 0:
        series.fail(
            f"{_tag('RadionuclideTotalDose')} (injected dose) is missing or not positive; it must be in the "
            "header (Bq) for SUV; fix the export or the header"
        )
    if dose < MIN_DOSE_BQ:
        series.fail(
            f"{_tag('RadionuclideTotalDose')} is {dose:g}, which looks like MBq rather than Bq (a typical FDG dose "
            f"is 2e8 to 4e8 Bq); correct the header so that the dose is in Bq (e.g. {dose:g} MBq = {dose * 1e6:.4g})"
        )
    weight, weight_source = _weight(series, weight_kg, warnings)

    result = SuvResult(
        factors=[],
        units="BQML",
        method="bqml: decay-corrected SUVbw (QIBA)",
        decay_correction=decay_correction,
        dose_bq=dose,
        weight_kg=weight,
        weight_source=weight_source,
        warnings=warnings,
    )
    if decay_correction == "ADMIN":
        result.decay_factor = 1.0
        result.method = "bqml: SUVbw, images already decay-corrected to the administration time (ADMIN)"
        factor = weight * 1000.0 / dose
    else:
        half_life = series.radiopharm_float("RadionuclideHalfLife")
        if half_life is None or half_life <= 0:
            series.fail(
                f"{_tag('RadionuclideHalfLife')} is missing or not positive; it is needed to decay the dose to the "
                "scan time; fix the export or the header (F-18: 6586.2 s)"
            )
        scan, scan_source = _scan_datetime(series, warnings)
        injection, injection_source = _injection_datetime(series, scan, warnings)
        uptake = (scan - injection).total_seconds()
        if uptake < 0:
            series.fail(
                f"the injection ({injection_source}, {injection.time().isoformat()}) is after the scan "
                f"({scan_source}, {scan.time().isoformat()}) by {-uptake / 60:.1f} min; check "
                f"{_tag('RadiopharmaceuticalStartDateTime')} and the series and acquisition times"
            )
        if uptake > MAX_UPTAKE_S:
            series.fail(
                f"the time from injection ({injection_source}) to scan ({scan_source}) is {uptake / 3600:.1f} h, "
                f"more than {MAX_UPTAKE_S / 3600:.0f} h, which is implausible; check "
                f"{_tag('RadiopharmaceuticalStartDateTime')} and the series date and time"
            )
        if not USUAL_UPTAKE_S[0] <= uptake <= USUAL_UPTAKE_S[1]:
            warnings.append(f"unusual uptake time of {uptake / 60:.1f} min between injection and scan")
        decay_factor = 2.0 ** (-uptake / half_life)
        factor = weight * 1000.0 / (dose * decay_factor)
        result.half_life_s = half_life
        result.scan_datetime, result.scan_datetime_source = scan, scan_source
        result.injection_datetime, result.injection_datetime_source = injection, injection_source
        result.uptake_seconds = uptake
        result.decay_factor = decay_factor
    result.factors = [factor] * len(series.datasets)
    return result


def _weight(series: _Series, weight_kg: float | None, warnings: list[str]) -> tuple[float, str]:
    header = series.number("PatientWeight")
    sheet = None if weight_kg is None or (isinstance(weight_kg, float) and math.isnan(weight_kg)) else weight_kg
    if header is not None and header != 0:
        if header < 0:
            series.fail(f"{_tag('PatientWeight')} is {header:g} kg; correct the header or set weight_kg in the sheet")
        if header > MAX_WEIGHT_KG:
            series.fail(
                f"{_tag('PatientWeight')} is {header:g}, which looks like grams rather than kg; correct the header"
            )
        if sheet is not None and sheet > 0 and abs(sheet - header) > WEIGHT_MISMATCH_FRACTION * header:
            warnings.append(
                f"the sheet's weight_kg ({sheet:g}) differs from PatientWeight ({header:g} kg); the header is used"
            )
        return header, "PatientWeight (0010,1030)"
    if sheet is None:
        series.fail(
            f"{_tag('PatientWeight')} is missing or 0, and SUVbw needs the patient's weight; add the weight in kg "
            "to the patients sheet's weight_kg column"
        )
    try:
        sheet = float(sheet)
    except (TypeError, ValueError):
        series.fail(f"the sheet's weight_kg ({sheet!r}) is not a number; give the weight in kg")
    if not math.isfinite(sheet) or sheet <= 0:
        series.fail(f"the sheet's weight_kg ({sheet:g}) is not a positive weight; give the weight in kg")
    if sheet > MAX_WEIGHT_KG:
        series.fail(f"the sheet's weight_kg is {sheet:g}, which looks like grams rather than kg; give it in kg")
    return sheet, "patients sheet weight_kg (PatientWeight missing or 0)"


def _scan_datetime(series: _Series, warnings: list[str]) -> tuple[datetime, str]:
    series_dt = series.series_datetime()
    acquisitions = [dt for dt in (series.acquisition_datetime(ds) for ds in series.datasets) if dt is not None]
    earliest = min(acquisitions) if acquisitions else None
    if series_dt is None:
        if earliest is None:
            series.fail(
                f"neither {_tag('SeriesDate')}/{_tag('SeriesTime')} nor AcquisitionDate/AcquisitionTime is "
                "present, so the scan time is unknown; fix the export"
            )
        warnings.append("SeriesDate/SeriesTime missing: the earliest AcquisitionDate/AcquisitionTime is the scan time")
        return earliest, "earliest AcquisitionDate/AcquisitionTime (SeriesDate/SeriesTime missing)"
    if earliest is None or series_dt <= earliest:
        return series_dt, "SeriesDate/SeriesTime"
    ge = [dt for dt in (series.ge_scan_datetime(ds) for ds in series.datasets) if dt is not None]
    late = (series_dt - earliest).total_seconds() / 60
    if ge:
        warnings.append(
            f"SeriesTime is {late:.1f} min after the earliest AcquisitionTime (post-processed series): "
            "the GE private scan datetime (0009,100D) is the scan time"
        )
        return min(ge), "GE private scan datetime (0009,100D), SeriesTime after AcquisitionTime"
    warnings.append(
        f"SeriesTime is {late:.1f} min after the earliest AcquisitionTime (post-processed series): "
        "the earliest AcquisitionDate/AcquisitionTime is the scan time"
    )
    return earliest, "earliest AcquisitionDate/AcquisitionTime, SeriesTime after AcquisitionTime"


def _injection_datetime(series: _Series, scan: datetime, warnings: list[str]) -> tuple[datetime, str]:
    item = series.radiopharm_item()
    raw_dt = _text_value(item.get("RadiopharmaceuticalStartDateTime"))
    if raw_dt:
        parsed = _parse_dt(raw_dt)
        if parsed is None:
            series.fail(
                f"{_tag('RadiopharmaceuticalStartDateTime')} '{raw_dt}' is not a DICOM datetime with at least hours "
                "and minutes; fix the header"
            )
        if parsed.tzinfo is not None:
            local = _parse_offset(series.text("TimezoneOffsetFromUTC"))
            if local is not None:
                parsed = parsed.astimezone(local).replace(tzinfo=None)
                return parsed, "RadiopharmaceuticalStartDateTime (converted to TimezoneOffsetFromUTC)"
            return parsed.replace(tzinfo=None), "RadiopharmaceuticalStartDateTime (offset ignored: local time)"
        return parsed, "RadiopharmaceuticalStartDateTime"
    raw_t = _text_value(item.get("RadiopharmaceuticalStartTime"))
    if not raw_t:
        series.fail(
            f"neither {_tag('RadiopharmaceuticalStartDateTime')} nor {_tag('RadiopharmaceuticalStartTime')} is "
            "present, so the injection time is unknown; fix the export or the header"
        )
    start = _parse_tm(raw_t)
    if start is None:
        series.fail(f"{_tag('RadiopharmaceuticalStartTime')} '{raw_t}' is not a DICOM time; fix the header")
    injection = datetime.combine(scan.date(), start)
    if injection > scan:
        warnings.append(
            "injection time of day is after the scan time: the injection was taken on the previous day "
            "(study crossing midnight)"
        )
        return injection - timedelta(days=1), "RadiopharmaceuticalStartTime on the day before the scan (midnight)"
    return injection, "RadiopharmaceuticalStartTime on the scan date"


# --- reading the header -------------------------------------------------------------------------------------------

# Series-level attributes that must be identical in every instance; True: shown in messages.
_SERIES_LEVEL = {
    "Units": True,
    "DecayCorrection": True,
    "CorrectedImage": True,
    "PatientWeight": True,
    "SeriesDate": False,
    "SeriesTime": True,
    "TimezoneOffsetFromUTC": True,
}
_RADIOPHARM_LEVEL = {
    "RadionuclideTotalDose": True,
    "RadionuclideHalfLife": True,
    "RadiopharmaceuticalStartTime": True,
    "RadiopharmaceuticalStartDateTime": False,
}


class _Series:
    """The instances of one PET series, with helpers that raise `InputError` naming the series and tag."""

    def __init__(self, datasets: list[pydicom.Dataset]):
        self.datasets = datasets
        self.first = datasets[0]
        self.label = _series_label(self.first)

    def fail(self, message: str) -> Any:
        raise InputError(f"{self.label}: {message}.")

    # values of the first instance (series-level attributes agree, see check_agreement)
    def text(self, keyword: str) -> str:
        return _text_value(self._get(self.first, keyword))

    def number(self, keyword: str) -> float | None:
        return self._float(self.first, keyword)

    def _get(self, ds: pydicom.Dataset, keyword: str) -> Any:
        try:
            return ds.get(keyword)
        except (ValueError, TypeError, OverflowError) as exc:
            self.fail(f"{_tag(keyword)} cannot be read ({exc}); fix the header")

    def _float(self, ds: pydicom.Dataset, keyword: str) -> float | None:
        value = self._get(ds, keyword)
        try:
            return _plain_float(value)
        except (TypeError, ValueError):
            self.fail(f"{_tag(keyword)} '{value}' is not a number; fix the header")

    def radiopharm_item(self, ds: pydicom.Dataset | None = None) -> pydicom.Dataset:
        seq = self._get(self.first if ds is None else ds, "RadiopharmaceuticalInformationSequence")
        if not seq:
            self.fail(
                f"{_tag('RadiopharmaceuticalInformationSequence')} is missing or empty, so the dose, half-life and "
                "injection time are unknown; fix the export"
            )
        return seq[0]

    def radiopharm_float(self, keyword: str) -> float | None:
        return self._float(self.radiopharm_item(), keyword)

    def series_datetime(self) -> datetime | None:
        raw_date, raw_time = self.text("SeriesDate"), self.text("SeriesTime")
        if not raw_date or not raw_time:
            return None
        day, moment = _parse_da(raw_date), _parse_tm(raw_time)
        if day is None or moment is None:
            self.fail(f"{_tag('SeriesDate')}/{_tag('SeriesTime')} cannot be parsed ('{raw_time}'); fix the header")
        return datetime.combine(day, moment)

    def acquisition_datetime(self, ds: pydicom.Dataset) -> datetime | None:
        raw_dt = _text_value(self._get(ds, "AcquisitionDateTime"))
        if raw_dt:
            parsed = _parse_dt(raw_dt)
            if parsed is not None:
                return parsed.replace(tzinfo=None)
        raw_time = _text_value(self._get(ds, "AcquisitionTime"))
        if not raw_time:
            return None
        raw_date = _text_value(self._get(ds, "AcquisitionDate")) or self.text("SeriesDate")
        day, moment = _parse_da(raw_date), _parse_tm(raw_time)
        if day is None or moment is None:
            self.fail(
                f"{_tag('AcquisitionDate')}/{_tag('AcquisitionTime')} cannot be parsed ('{raw_time}'); fix the header"
            )
        return datetime.combine(day, moment)

    def ge_scan_datetime(self, ds: pydicom.Dataset) -> datetime | None:
        value = _private_value(ds, GE_PRIVATE_CREATOR, *GE_SCAN_DATETIME)
        if value is None:
            return None
        if isinstance(value, datetime):
            return value.replace(tzinfo=None)
        parsed = _parse_dt(_text_value(value))
        if parsed is None:
            self.fail(f"the GE private scan datetime (0009,100D) '{_text_value(value)}' cannot be parsed")
        return parsed.replace(tzinfo=None)

    # checks
    def check_single_series(self) -> None:
        uids = {_text_value(ds.get("SeriesInstanceUID")) for ds in self.datasets}
        if len(uids) > 1:
            self.fail(f"the instances belong to {len(uids)} different series (SeriesInstanceUID); pass one series")

    def check_modality(self) -> None:
        modalities = {_text_value(ds.get("Modality")).upper() for ds in self.datasets} - {""}
        if modalities - {"PT"}:
            self.fail(f"{_tag('Modality')} is {sorted(modalities)}, not PT; pass the instances of a PET series")

    def check_agreement(self) -> None:
        for keyword, show in _SERIES_LEVEL.items():
            self._agree(keyword, [self._get(ds, keyword) for ds in self.datasets], show)
        items = []
        for ds in self.datasets:
            seq = self._get(ds, "RadiopharmaceuticalInformationSequence")
            items.append(seq[0] if seq else None)
        if any(item is None for item in items) and not all(item is None for item in items):
            self.fail(f"{_tag('RadiopharmaceuticalInformationSequence')} is missing in some instances only")
        if items[0] is not None:
            for keyword, show in _RADIOPHARM_LEVEL.items():
                self._agree(keyword, [self._get(item, keyword) for item in items], show)

    def _agree(self, keyword: str, values: list[Any], show: bool) -> None:
        normalised = {_normalise(v) for v in values}
        if len(normalised) > 1:
            detail = ""
            if show:
                shown = sorted(("missing" if v is None else str(v)) for v in normalised)
                detail = f" ({', '.join(shown[:4])}{', ...' if len(shown) > 4 else ''})"
            self.fail(
                f"{_tag(keyword)} differs between instances{detail}, but it must be the same for the whole series; "
                "check that all files come from one series and fix the header"
            )

    def check_corrected_image(self) -> None:
        value = self._get(self.first, "CorrectedImage")
        values = [] if value is None else [value] if isinstance(value, str | bytes) else list(value)
        flags = {_text_value(v).upper() for v in values}
        missing = [flag for flag in ("ATTN", "DECY") if flag not in flags]
        if missing:
            shown = "\\".join(sorted(flags)) if flags else "missing"
            self.fail(
                f"{_tag('CorrectedImage')} is {shown}, without {' and '.join(missing)}: this series is not "
                f"attenuation- and decay-corrected and cannot give SUV; {_PICK_AC}"
            )


def _series_label(ds: pydicom.Dataset) -> str:
    """How messages name the series: number and description, never a UID (identifiers stay out of messages)."""
    try:
        description = _text_value(ds.get("SeriesDescription"))
        number = _text_value(ds.get("SeriesNumber"))
    except (ValueError, TypeError):
        description, number = "", ""
    parts = []
    if number:
        parts.append(f"#{number}")
    if description:
        parts.append(f"'{description}'")
    return "PET series " + (" ".join(parts) if parts else "(no SeriesNumber or SeriesDescription)")


def _tag(keyword: str) -> str:
    tag = tag_for_keyword(keyword)
    if tag is None:
        return keyword
    return f"{keyword} ({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _normalise(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, str | bytes):
        text = _text_value(value).upper()
        return text or None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, Sequence):
        return tuple(_normalise(v) for v in value) or None
    return str(value).strip().upper() or None


def _text_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    if isinstance(value, datetime | date | time):
        return str(value).strip()
    return str(value).strip(" \x00")


def _plain_float(value: Any) -> float | None:
    """A DS/IS/FD value as float; None for missing or empty values. Raises ValueError for non-numbers."""
    if value is None:
        return None
    if isinstance(value, bytes):
        text = value.decode("ascii", errors="replace").strip(" \x00")
        if not text:
            return None
        try:
            return float(text)
        except ValueError:
            if len(value) == 8:
                return float(struct.unpack("<d", value)[0])
            if len(value) == 4:
                return float(struct.unpack("<f", value)[0])
            raise
    if isinstance(value, str):
        text = value.strip(" \x00")
        return float(text) if text else None
    if isinstance(value, Sequence):
        return _plain_float(value[0]) if len(value) else None
    result = float(value)
    if not math.isfinite(result):
        raise ValueError(f"{value} is not finite")
    return result


def _private_value(ds: pydicom.Dataset, creator: str, group: int, offset: int) -> Any:
    try:
        block = ds.private_block(group, creator)
    except KeyError:
        return None
    tag = block.get_tag(offset)
    if tag not in ds:
        return None
    value = ds[tag].value
    return None if value in (None, "", b"") else value


def _private_float(ds: pydicom.Dataset, creator: str, group: int, offset: int, series: _Series) -> float | None:
    value = _private_value(ds, creator, group, offset)
    try:
        return _plain_float(value)
    except (TypeError, ValueError, struct.error):
        series.fail(
            f"the private tag ({group:04X},10{offset:02X}) of '{creator}' holds '{_text_value(value)}', not a number"
        )


_DA_RE = re.compile(r"(\d{4})[.\-]?(\d{2})[.\-]?(\d{2})")
_TM_RE = re.compile(r"(\d{2})(?::?(\d{2})(?::?(\d{2})(?:\.(\d{1,6}))?)?)?")
_DT_RE = re.compile(r"(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,6}))?([+\-]\d{4})?")


def _parse_da(text: str) -> date | None:
    m = _DA_RE.fullmatch(text.strip())
    if not m:
        return None
    try:
        return date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError:
        return None


def _parse_tm(text: str) -> time | None:
    m = _TM_RE.fullmatch(text.strip())
    if not m:
        return None
    micro = int((m[4] or "0").ljust(6, "0"))
    try:
        return time(int(m[1]), int(m[2] or 0), min(int(m[3] or 0), 59), micro)  # 60: leap second
    except ValueError:
        return None


def _parse_offset(text: str) -> timezone | None:
    m = re.fullmatch(r"([+\-])(\d{2})(\d{2})", text.strip())
    if not m:
        return None
    minutes = int(m[2]) * 60 + int(m[3])
    return timezone(timedelta(minutes=minutes if m[1] == "+" else -minutes))


def _parse_dt(text: str) -> datetime | None:
    """A DICOM DT (YYYYMMDDHHMMSS.FFFFFF&ZZXX, trailing parts optional) with at least hours and minutes."""
    m = _DT_RE.fullmatch(text.strip())
    if not m or m[4] is None or m[5] is None:
        return None
    micro = int((m[7] or "0").ljust(6, "0"))
    tz = _parse_offset(m[8]) if m[8] else None
    try:
        return datetime(
            int(m[1]), int(m[2] or 1), int(m[3] or 1), int(m[4]), int(m[5]), min(int(m[6] or 0), 59), micro, tz
        )
    except ValueError:
        return None
