"""Fake but realistic patient-identifying data, dates and clock times of one synthetic patient.

The identity deliberately differs from the pseudonymous id (SYN001, ...) so that later stages can be tested for
leaks: every value is also written to ``truth/phi.json``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

FAMILY_NAMES = (
    "Tremblay", "Gagnon", "Bouchard", "Gauthier", "Morin", "Lavoie", "Fortin", "Ouellet", "Pelletier",
    "Belanger", "Levesque", "Bergeron", "Paquette", "Girard", "Simard", "Boucher", "Beaulieu", "Cloutier",
    "Poirier", "Fournier", "Lapointe", "Leclerc", "Thibault", "Nadeau", "Desjardins", "Langlois", "Vachon",
    "Dionne", "Brassard", "Charbonneau", "Theriault", "Laflamme", "Whitfield", "Okonkwo", "Kowalczyk",
    "Haverkamp", "Lindqvist", "Castellano", "Nakashima", "Abernathy", "Vasquez", "Ferreira", "Szabo",
)  # fmt: skip
GIVEN_MALE = (
    "Jean", "Pierre", "Michel", "Andre", "Claude", "Gilles", "Rejean", "Normand", "Sylvain", "Gaetan", "Robert",
    "Thomas", "Malcolm", "Henrik", "Tadeusz", "Kenji", "Emeka", "Rafael", "Laszlo",
)  # fmt: skip
GIVEN_FEMALE = (
    "Marie", "Louise", "Francine", "Sylvie", "Ginette", "Johanne", "Nicole", "Diane", "Helene", "Lucie",
    "Margaret", "Ingrid", "Agnieszka", "Yuko", "Adaeze", "Carmen", "Beatriz", "Erzsebet",
)  # fmt: skip
PHYSICIANS = ("Rousseau^Etienne", "Marchand^Genevieve", "Okafor^Chidi", "Lindgren^Astrid", "Duval^Mathieu")
INSTITUTIONS = ("CENTRE HOSPITALIER SYNTHETIQUE", "SYNTHETIC REGIONAL CANCER CENTRE")


@dataclass(frozen=True)
class Identity:
    patient_name: str
    patient_id: str  # the hospital MRN, not the pseudonymous id
    birth_date: str  # YYYYMMDD
    sex: str
    age: str  # e.g. 063Y
    weight_kg: float
    size_m: float
    institution: str
    referring_physician: str
    operator: str
    accession_ct: str
    accession_mr: str
    study_date_ct: str  # YYYYMMDD of the planning PET/CT
    study_date_mr: str
    structure_set_date: str
    injection_time_s: int  # seconds after midnight on the PET/CT day
    ct_time_s: int
    pet_time_s: int
    mr_time_s: int
    structure_set_time_s: int

    def to_json(self) -> dict:
        return {
            "PatientName": self.patient_name,
            "PatientID": self.patient_id,
            "PatientBirthDate": self.birth_date,
            "PatientSex": self.sex,
            "PatientAge": self.age,
            "PatientWeight": self.weight_kg,
            "PatientSize": self.size_m,
            "InstitutionName": self.institution,
            "ReferringPhysicianName": self.referring_physician,
            "OperatorsName": self.operator,
            "AccessionNumbers": [self.accession_ct, self.accession_mr],
            "StudyDates": [self.study_date_ct, self.study_date_mr],
        }


def dicom_date(day: dt.date) -> str:
    return day.strftime("%Y%m%d")


def dicom_time(seconds: int) -> str:
    h, rem = divmod(int(seconds), 3600)
    m, s = divmod(rem, 60)
    return f"{h:02d}{m:02d}{s:02d}"


def draw_identity(rng: np.random.Generator) -> Identity:
    sex = "M" if rng.uniform() < 0.75 else "F"
    given = GIVEN_MALE if sex == "M" else GIVEN_FEMALE
    family = str(rng.choice(FAMILY_NAMES))
    name = f"{family}^{rng.choice(given)}"
    mrn = f"MRN{int(rng.integers(0, 10**7)):07d}"
    study_day = dt.date(2012, 1, 1) + dt.timedelta(days=int(rng.integers(0, 11 * 365)))
    age_years = int(rng.integers(40, 86))
    birth = study_day - dt.timedelta(days=age_years * 365 + int(rng.integers(0, 365)))
    years = study_day.year - birth.year - ((study_day.month, study_day.day) < (birth.month, birth.day))
    weight = round(float(rng.uniform(50.0, 110.0)), 1)
    size = round(float(rng.uniform(1.55, 1.78) if sex == "F" else rng.uniform(1.62, 1.92)), 2)
    mr_day = study_day - dt.timedelta(days=int(rng.integers(3, 21)))
    rs_day = study_day + dt.timedelta(days=int(rng.integers(1, 7)))
    injection = int(rng.integers(7 * 3600 + 30 * 60, 14 * 3600))
    pet = injection + int(rng.integers(60 * 60, 75 * 60 + 1))
    ct = pet - int(rng.integers(120, 300))
    return Identity(
        patient_name=name,
        patient_id=mrn,
        birth_date=dicom_date(birth),
        sex=sex,
        age=f"{years:03d}Y",
        weight_kg=weight,
        size_m=size,
        institution=str(rng.choice(INSTITUTIONS)),
        referring_physician=str(rng.choice(PHYSICIANS)),
        operator=f"{rng.choice(FAMILY_NAMES)}^{rng.choice(GIVEN_FEMALE + GIVEN_MALE)}",
        accession_ct=f"{int(rng.integers(10**7, 10**8))}",
        accession_mr=f"{int(rng.integers(10**7, 10**8))}",
        study_date_ct=dicom_date(study_day),
        study_date_mr=dicom_date(mr_day),
        structure_set_date=dicom_date(rs_day),
        injection_time_s=injection,
        ct_time_s=ct,
        pet_time_s=pet,
        mr_time_s=int(rng.integers(8 * 3600, 18 * 3600)),
        structure_set_time_s=int(rng.integers(8 * 3600, 18 * 3600)),
    )
