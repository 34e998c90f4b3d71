"""PET to SUVbw (hnseg.dicom.pet): vendor cases, timing rules, per-instance rescale and every refusal.

Header values marked "real" are those quoted in shared/reference/dicom.md from the vendor fixtures of
cornerstonejs/calculate-suv (GE BQML: half-life 6586.2 s, StartDateTime "20201217084500.00 "; Philips CNTS:
SUVScaleFactor "0.000728", half-life 6588 s, SeriesTime 13:45:51 before AcquisitionTime 14:13:36, FrameReferenceTime
1 755 000 ms). Other values are realistic but illustrative. Expected factors are written out as arithmetic on the
header numbers, independent of the module's code path.
"""

import copy
import itertools
import random
import warnings

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from hnseg.dicom.pet import suv_details, suv_factors, suv_pixels
from hnseg.errors import InputError

PATIENT_NAME = "Doe^Jane"
PATIENT_ID = "SECRET-ID-42"
SERIES_UID = "1.2.840.113619.2.55.3.604688119.971.1607.88776655"
PET_STORAGE = "1.2.840.10008.5.1.4.1.1.128"
GE_CORRECTED = ["DECY", "ATTN", "SCAT", "DTIM", "RAN", "RADL", "DCAL", "SLSENS", "NORM"]
PHILIPS_CORRECTED = ["DECY", "RADL", "ATTN", "SCAT", "DTIM", "RAN", "NORM"]


def _instance(i: int, slope: float, acq_time: str, rows: int = 4) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = PET_STORAGE
    ds.SOPInstanceUID = f"1.2.826.0.1.3680043.8.498.{1000 + i}"
    ds.Modality = "PT"
    ds.PatientName = PATIENT_NAME
    ds.PatientID = PATIENT_ID
    ds.PatientSex = "F"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    ds.SeriesInstanceUID = SERIES_UID
    ds.InstanceNumber = i + 1
    ds.ImagePositionPatient = [-225.0, -225.0, -3.27 * i]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [3.515625, 3.515625]
    ds.SliceThickness = 3.27
    ds.AcquisitionTime = acq_time
    ds.FrameReferenceTime = 1755000
    ds.ActualFrameDuration = 180000
    ds.Rows = ds.Columns = rows
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleSlope = slope
    ds.RescaleIntercept = 0
    ds.PixelData = np.zeros((rows, rows), np.int16).tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def ge_bqml(n: int = 3) -> list[Dataset]:
    """GE Discovery ST, BQML, StartDateTime with fraction and trailing space; scan 09:45, injection 08:45."""
    series = []
    for i in range(n):
        ds = _instance(i, slope=1.0 if i == 0 else 0.731 + 0.05 * i, acq_time=f"0945{i:02d}")
        ds.Manufacturer = "GE MEDICAL SYSTEMS"
        ds.SeriesDescription = "PET AC 3D"
        ds.SeriesDate = ds.AcquisitionDate = "20201217"
        ds.SeriesTime = "094500"
        ds.Units = "BQML"
        ds.DecayCorrection = "START"
        ds.CorrectedImage = list(GE_CORRECTED)
        ds.PatientWeight = "72.5"
        item = Dataset()
        item.Radiopharmaceutical = "Fluorodeoxyglucose"
        item.RadiopharmaceuticalStartTime = "084500.00"
        item.RadiopharmaceuticalStartDateTime = "20201217084500.00 "  # real: fraction and trailing space
        item.RadionuclideTotalDose = "333000000.0"
        item.RadionuclideHalfLife = "6586.2"  # real
        ds.RadiopharmaceuticalInformationSequence = [item]
        series.append(ds)
    return series


def philips_cnts(n: int = 3, suv_scale: str | None = "0.000728", activity_scale: str | None = None) -> list[Dataset]:
    """Philips Gemini CNTS with the private SUV (7053,1000) or activity-concentration (7053,1009) scale factor."""
    series = []
    for i in range(n):
        ds = _instance(i, slope=1.0 if i == 0 else 2.5 + i, acq_time="141336")  # real: 14:13:36
        ds.Manufacturer = "Philips Medical Systems"
        ds.SeriesDescription = "PET WB CTAC"
        ds.SeriesDate = ds.AcquisitionDate = "20110412"
        ds.SeriesTime = "134551"  # real: 13:45:51, earlier than the acquisition
        ds.Units = "CNTS"
        ds.DecayCorrection = "START"
        ds.CorrectedImage = list(PHILIPS_CORRECTED)
        ds.PatientWeight = "81"
        item = Dataset()
        item.Radiopharmaceutical = "FDG -- fluorodeoxyglucose"
        item.RadiopharmaceuticalStartTime = "124500"
        item.RadionuclideTotalDose = "296000000"
        item.RadionuclideHalfLife = "6588"  # real
        ds.RadiopharmaceuticalInformationSequence = [item]
        block = ds.private_block(0x7053, "Philips PET Private Group", create=True)
        if suv_scale is not None:
            block.add_new(0x00, "DS", suv_scale)
        if activity_scale is not None:
            block.add_new(0x09, "DS", activity_scale)
        series.append(ds)
    return series


def refuses(datasets, match, weight_kg=None) -> str:
    """The series is refused with a message matching `match`, naming the series and never the patient."""
    with pytest.raises(InputError, match=match) as info:
        suv_factors(datasets, weight_kg=weight_kg)
    message = str(info.value)
    assert "PET AC 3D" in message or "88776655" in message or "PET WB CTAC" in message
    for secret in (PATIENT_NAME, "Doe", "Jane", PATIENT_ID):
        assert secret not in message
    return message


def radiopharm(ds: Dataset) -> Dataset:
    return ds.RadiopharmaceuticalInformationSequence[0]


# --- vendor cases ----------------------------------------------------------------------------------------------------


def test_ge_bqml_real_header_values():
    series = ge_bqml()
    # scan 09:45:00 (SeriesTime, not after the earliest AcquisitionTime 09:45:00); injection 08:45:00.00 -> 3600 s
    expected = 72.5 * 1000 / (333e6 * 2 ** (-3600 / 6586.2))
    assert expected == pytest.approx(3.18006499e-4, rel=1e-8)  # 72500 / (333e6 * 0.68463292)
    factors = suv_factors(series)
    assert factors == pytest.approx([expected] * 3, rel=1e-12)

    details = suv_details(series)
    assert details.units == "BQML"
    assert details.uptake_seconds == pytest.approx(3600.0)
    assert details.scan_datetime_source == "SeriesDate/SeriesTime"
    assert details.injection_datetime_source == "RadiopharmaceuticalStartDateTime"
    assert details.weight_source.startswith("PatientWeight")
    assert details.half_life_s == 6586.2
    assert details.warnings == []
    record = details.to_dict()
    assert record["scan_time"] == "09:45:00"
    assert record["injection_time"] == "08:45:00"
    assert "20201217" not in repr(record) and "2020-12-17" not in repr(record)  # no calendar dates in import.json


def test_ge_post_processed_series_uses_ge_private_scan_datetime():
    series = ge_bqml()
    for ds in series:
        ds.SeriesTime = "103000"  # reconstructed 45 min after the acquisition
        block = ds.private_block(0x0009, "GEMS_PETD_01", create=True)
        block.add_new(0x0D, "DT", "20201217094400.00")
    details = suv_details(series)
    assert details.scan_datetime_source.startswith("GE private scan datetime (0009,100D)")
    assert details.uptake_seconds == pytest.approx(3540.0)  # 09:44:00 - 08:45:00
    assert details.factors[0] == pytest.approx(72.5 * 1000 / (333e6 * 2 ** (-3540 / 6586.2)), rel=1e-12)
    assert any("post-processed" in w for w in details.warnings)


def test_post_processed_series_without_ge_tag_uses_earliest_acquisition():
    series = ge_bqml(4)
    for ds, acq in zip(series, ["100500", "095230.5", "101000", "095900"], strict=True):
        ds.SeriesTime = "103000"
        ds.AcquisitionTime = acq
    details = suv_details(series)
    assert details.scan_datetime_source.startswith("earliest AcquisitionDate/AcquisitionTime")
    assert details.uptake_seconds == pytest.approx(4050.5)  # 09:52:30.5 - 08:45:00
    assert details.factors[0] == pytest.approx(72.5 * 1000 / (333e6 * 2 ** (-4050.5 / 6586.2)), rel=1e-12)


def test_series_time_earlier_than_acquisition_keeps_series_time():
    series = ge_bqml()
    for ds in series:
        ds.AcquisitionTime = "100000"
    assert suv_details(series).uptake_seconds == pytest.approx(3600.0)


def test_philips_cnts_suv_scale_factor_real_values():
    series = philips_cnts()
    details = suv_details(series)
    assert details.factors == pytest.approx([0.000728] * 3)
    assert details.units == "CNTS"
    assert "7053,1000" in details.method


def test_philips_cnts_activity_concentration_scale_factor():
    series = philips_cnts(suv_scale=None, activity_scale="3.2")
    # rescaled * 3.2 = Bq/ml; scan 13:45:51 (SeriesTime before AcquisitionTime 14:13:36); injection 12:45:00 -> 3651 s
    expected = 3.2 * 81 * 1000 / (296e6 * 2 ** (-3651 / 6588))
    assert expected == pytest.approx(1.2857926e-3, rel=1e-6)  # 259200 / (296e6 * 0.681060)
    details = suv_details(series)
    assert details.factors == pytest.approx([expected] * 3, rel=1e-12)
    assert details.scan_datetime_source == "SeriesDate/SeriesTime"
    assert details.injection_datetime_source == "RadiopharmaceuticalStartTime on the scan date"


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_philips_round_trip_through_a_file(tmp_path, syntax):
    """Private tags survive dcmwrite/dcmread (implicit VR included, where the VR comes from pydicom's dictionary)."""
    read = []
    for i, ds in enumerate(philips_cnts()):
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = syntax
        path = tmp_path / f"1-{i + 1:03d}.dcm"
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
        read.append(pydicom.dcmread(path))
    assert suv_factors(read) == pytest.approx([0.000728] * 3)


def test_gml_is_already_suv():
    series = ge_bqml()
    for ds in series:
        ds.Units = "GML"
        del ds.PatientWeight  # not needed
    assert suv_factors(series) == [1.0, 1.0, 1.0]


def test_decay_correction_admin_has_no_decay_factor():
    series = ge_bqml()
    for ds in series:
        ds.DecayCorrection = "ADMIN"
    details = suv_details(series)
    assert details.factors == pytest.approx([72.5 * 1000 / 333e6] * 3, rel=1e-12)
    assert details.decay_factor == 1.0


# --- injection time -------------------------------------------------------------------------------------------------


def test_start_time_only_on_the_scan_date():
    series = ge_bqml()
    for ds in series:
        del radiopharm(ds).RadiopharmaceuticalStartDateTime
        radiopharm(ds).RadiopharmaceuticalStartTime = "083015.25"
    details = suv_details(series)
    assert details.uptake_seconds == pytest.approx(4484.75)  # 09:45:00 - 08:30:15.25
    assert details.injection_datetime_source == "RadiopharmaceuticalStartTime on the scan date"


def test_empty_start_datetime_falls_back_to_start_time():
    series = ge_bqml()
    for ds in series:
        radiopharm(ds).RadiopharmaceuticalStartDateTime = ""
    assert suv_details(series).uptake_seconds == pytest.approx(3600.0)


def test_study_crossing_midnight_takes_the_previous_day():
    series = ge_bqml()
    for ds in series:
        ds.SeriesDate = ds.AcquisitionDate = "20210102"
        ds.SeriesTime = ds.AcquisitionTime = "004000"
        del radiopharm(ds).RadiopharmaceuticalStartDateTime
        radiopharm(ds).RadiopharmaceuticalStartTime = "233000"
    details = suv_details(series)
    assert details.uptake_seconds == pytest.approx(4200.0)  # 23:30 -> 00:40 next day = 70 min
    assert details.factors[0] == pytest.approx(72.5 * 1000 / (333e6 * 2 ** (-4200 / 6586.2)), rel=1e-12)
    assert any("midnight" in w for w in details.warnings)


def test_start_datetime_with_timezone_offset():
    series = ge_bqml()
    for ds in series:
        radiopharm(ds).RadiopharmaceuticalStartDateTime = "20201217094500+0100"
    # no TimezoneOffsetFromUTC: the offset is dropped, wall-clock 09:45 is taken as local -> 0 s
    assert suv_details(series).uptake_seconds == pytest.approx(0.0)
    for ds in series:
        ds.TimezoneOffsetFromUTC = "+0000"
    # header times in UTC: 09:45+01:00 is 08:45 UTC -> 3600 s
    assert suv_details(series).uptake_seconds == pytest.approx(3600.0)


# --- weight ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("header", [None, "", "0"])
def test_sheet_weight_used_when_header_has_none(header):
    series = ge_bqml()
    for ds in series:
        if header is None:
            del ds.PatientWeight
        else:
            ds.PatientWeight = header
    details = suv_details(series, weight_kg=64.0)
    assert details.weight_kg == 64.0
    assert "sheet" in details.weight_source
    assert details.factors[0] == pytest.approx(64.0 * 1000 / (333e6 * 2 ** (-3600 / 6586.2)), rel=1e-12)


def test_header_weight_wins_over_a_different_sheet_weight_with_a_warning():
    details = suv_details(ge_bqml(), weight_kg=90.0)
    assert details.weight_kg == 72.5
    assert any("weight_kg" in w for w in details.warnings)
    assert suv_details(ge_bqml(), weight_kg=float("nan")).warnings == []  # an empty sheet cell


# --- per-instance rescale and order ---------------------------------------------------------------------------------


def test_per_instance_slope_first_slice_slope_one_others_fractional():
    """Stored values quantised with each slice's own slope; SUV recovered from each slice's own slope."""
    rng = np.random.default_rng(7)
    series = ge_bqml(3)
    factor = suv_factors(series)[0]
    truths = []
    for ds in series:
        truth_suv = rng.uniform(0.5, 8.0, size=(4, 4))  # at slope 1.0, 8 SUV is about 25 000 Bq/ml: fits int16
        activity = truth_suv / factor  # Bq/ml
        slope = float(ds.RescaleSlope)
        ds.PixelData = np.round(activity / slope).astype(np.int16).tobytes()
        truths.append(truth_suv)
    assert float(series[0].RescaleSlope) == 1.0
    assert all(float(ds.RescaleSlope) != 1.0 for ds in series[1:])
    for ds, truth in zip(series, truths, strict=True):
        suv = suv_pixels(ds, factor)
        assert suv.dtype == np.float32
        np.testing.assert_allclose(suv, truth, atol=1e-3)
    # the trap: applying the first slice's slope (1.0) to every slice is off by the slope ratio
    wrong = np.frombuffer(series[1].PixelData, np.int16).reshape(4, 4) * 1.0 * factor
    assert not np.allclose(wrong, truths[1], atol=1e-3)


def test_factors_are_invariant_to_instance_order():
    series = ge_bqml(5)
    for ds, acq in zip(series, ["100500", "095230", "101000", "095900", "100100"], strict=True):
        ds.SeriesTime = "103000"  # post-processed: the earliest acquisition over all instances is used
        ds.AcquisitionTime = acq
    reference = dict(zip((ds.SOPInstanceUID for ds in series), suv_factors(series), strict=True))
    orders = list(itertools.permutations(range(5)))
    for order in random.Random(2024).sample(orders, 20):
        shuffled = [series[i] for i in order]
        factors = suv_factors(shuffled)
        assert factors == [reference[ds.SOPInstanceUID] for ds in shuffled]

    cnts = philips_cnts(4, suv_scale=None, activity_scale="3.2")
    ref = dict(zip((ds.SOPInstanceUID for ds in cnts), suv_factors(cnts), strict=True))
    assert suv_factors(cnts[::-1]) == [ref[ds.SOPInstanceUID] for ds in cnts[::-1]]


# --- refusals -------------------------------------------------------------------------------------------------------


def _set(keyword, value):
    def apply(series):
        for ds in series:
            if value is None:
                delattr(ds, keyword)
            else:
                setattr(ds, keyword, value)

    return apply


def _set_radiopharm(keyword, value):
    def apply(series):
        for ds in series:
            if value is None:
                delattr(radiopharm(ds), keyword)
            else:
                with warnings.catch_warnings():  # pydicom warns on invalid values, which are the point here
                    warnings.simplefilter("ignore")
                    setattr(radiopharm(ds), keyword, value)

    return apply


def _only_last(keyword, value, radiopharm_item=False):
    def apply(series):
        target = radiopharm(series[-1]) if radiopharm_item else series[-1]
        setattr(target, keyword, value)

    return apply


def _no_injection_time(series):
    for ds in series:
        del radiopharm(ds).RadiopharmaceuticalStartDateTime
        del radiopharm(ds).RadiopharmaceuticalStartTime


REFUSALS = {
    "units missing": (_set("Units", None), r"Units \(0054,1001\) is missing"),
    "units empty": (_set("Units", ""), r"Units \(0054,1001\) is missing"),
    "units PROPCNTS": (_set("Units", "PROPCNTS"), r"Units \(0054,1001\) is 'PROPCNTS'"),
    "units NONE": (_set("Units", "NONE"), r"Units \(0054,1001\) is 'NONE'"),
    "no ATTN": (_set("CorrectedImage", ["DECY", "SCAT", "NORM"]), r"CorrectedImage.*without ATTN.*attenuation-corr"),
    "no DECY": (_set("CorrectedImage", ["ATTN", "SCAT"]), r"CorrectedImage.*without DECY"),
    "CorrectedImage missing": (_set("CorrectedImage", None), r"CorrectedImage \(0028,0051\) is missing"),
    "decay NONE": (_set("DecayCorrection", "NONE"), r"DecayCorrection \(0054,1102\) is 'NONE'"),
    "decay missing": (_set("DecayCorrection", None), r"DecayCorrection \(0054,1102\) is missing"),
    "dose in MBq": (_set_radiopharm("RadionuclideTotalDose", "370"), r"RadionuclideTotalDose.*looks like MBq"),
    "dose missing": (_set_radiopharm("RadionuclideTotalDose", None), r"RadionuclideTotalDose \(0018,1074\).*missing"),
    "half-life missing": (
        _set_radiopharm("RadionuclideHalfLife", None),
        r"RadionuclideHalfLife \(0018,1075\).*missing",
    ),
    "injection after scan": (
        _set_radiopharm("RadiopharmaceuticalStartDateTime", "20201217100000"),
        r"injection .* is after the scan",
    ),
    "uptake over 24 h": (
        _set_radiopharm("RadiopharmaceuticalStartDateTime", "20201215084500"),
        r"RadiopharmaceuticalStartDateTime.*49\.0 h.*implausible",
    ),
    "start datetime garbage": (
        _set_radiopharm("RadiopharmaceuticalStartDateTime", "yesterday"),
        r"RadiopharmaceuticalStartDateTime \(0018,1078\) 'yesterday'",
    ),
    "no injection time": (_no_injection_time, r"RadiopharmaceuticalStartTime \(0018,1072\).*injection time is unknown"),
    "no radiopharmaceutical sequence": (
        _set("RadiopharmaceuticalInformationSequence", None),
        r"RadiopharmaceuticalInformationSequence \(0054,0016\) is missing",
    ),
    "weight missing": (_set("PatientWeight", None), r"PatientWeight \(0010,1030\) is missing or 0.*weight_kg"),
    "weight zero": (_set("PatientWeight", "0"), r"PatientWeight \(0010,1030\) is missing or 0.*weight_kg"),
    "weight in grams": (_set("PatientWeight", "72500"), r"PatientWeight \(0010,1030\) is 72500.*grams"),
    "units differ": (_only_last("Units", "CNTS"), r"Units \(0054,1001\) differs between instances"),
    "dose differs": (
        _only_last("RadionuclideTotalDose", "334000000", radiopharm_item=True),
        r"RadionuclideTotalDose \(0018,1074\) differs between instances",
    ),
    "injection time differs": (
        _only_last("RadiopharmaceuticalStartDateTime", "20201217084600.00", radiopharm_item=True),
        r"RadiopharmaceuticalStartDateTime \(0018,1078\) differs between instances",
    ),
    "weight differs": (_only_last("PatientWeight", "73"), r"PatientWeight \(0010,1030\) differs between instances"),
    "not PET": (_set("Modality", "CT"), r"Modality \(0008,0060\).*not PT"),
    "two series": (_only_last("SeriesInstanceUID", "1.2.3.4"), r"2 different series"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refusals_name_the_tag_and_the_series_never_the_patient(case):
    mutate, match = REFUSALS[case]
    series = ge_bqml()
    mutate(series)
    refuses(series, match)


def test_cnts_without_philips_private_tags_is_refused():
    refuses(philips_cnts(suv_scale=None), r"CNTS.*\(7053,1000\).*\(7053,1009\).*both missing")


def test_cnts_without_attenuation_correction_is_refused():
    series = philips_cnts()
    for ds in series:
        ds.CorrectedImage = ["DECY", "RADL", "NORM"]
    refuses(series, r"CorrectedImage.*without ATTN.*attenuation-corrected PET series")


def test_sheet_weight_that_looks_like_grams_is_refused():
    series = ge_bqml()
    for ds in series:
        del ds.PatientWeight
    refuses(series, r"weight_kg is 64000.*grams", weight_kg=64000)


def test_empty_series_is_refused():
    with pytest.raises(InputError, match="no instances"):
        suv_factors([])


def test_inputs_are_not_modified():
    series = ge_bqml()
    before = [copy.deepcopy(ds) for ds in series]
    suv_details(series, weight_kg=80)
    assert series == before
