"""The random draws of one synthetic patient, gathered in a :class:`PatientModel` (nothing is written here).

Each part has its own random stream (see :mod:`.seeding`): identity, table offset, anatomy, contrast, MR pose,
series descriptions and protocols, ROI names, injected dose.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from hnseg.errors import InputError
from hnseg.synthetic import anatomy as an
from hnseg.synthetic import dicom_writer as dw
from hnseg.synthetic import imaging, rtstruct, series
from hnseg.synthetic.geometry import Grid, ds_exact, position
from hnseg.synthetic.identity import Identity, dicom_time, draw_identity
from hnseg.synthetic.pose import MrPose, draw_pose
from hnseg.synthetic.seeding import check_seed, rng, uid
from hnseg.synthetic.sizes import SIZES, SizeSpec

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass
class PatientModel:
    patient_id: str
    seed: int
    size: SizeSpec
    identity: Identity
    anatomy: an.Anatomy
    contrast: imaging.Contrast
    pose: MrPose
    ct_grid: Grid
    pet_grid: Grid
    mr_grid: Grid
    rois: list[rtstruct.RoiSpec]
    roi_order: list[int]
    studies: dict[str, dw.Study]
    series: dict[str, dw.Series]
    protocols: dict[str, series.MrProtocol]
    dose: series.PetDose


def _check_inputs(patient_id: str, size: str) -> SizeSpec:
    if not isinstance(patient_id, str) or not _ID_RE.match(patient_id):
        raise InputError(
            f"synthetic patient id {patient_id!r} is not usable: use letters, digits, '_', '-' or '.', "
            "starting with a letter or digit (e.g. SYN001)"
        )
    if size not in SIZES:
        raise InputError(f"unknown synthetic cohort size {size!r}: choose one of {', '.join(SIZES)}")
    return SIZES[size]


def build_model(patient_id: str, seed: int, size: str = "demo") -> PatientModel:
    """Everything about one patient that is drawn at random, without writing anything."""
    spec = _check_inputs(patient_id, size)
    seed = check_seed(seed)
    ident = draw_identity(rng(seed, patient_id, "identity"))
    r_off = rng(seed, patient_id, "offset")
    offset = (
        float(r_off.uniform(-8.0, 8.0)),
        float(r_off.uniform(-5.0, 20.0)),
        -0.5 * int(r_off.integers(300, 1200)),
    )
    anatomy = an.build_anatomy(rng(seed, patient_id, "anatomy"), ident.weight_kg, offset)
    contrast = imaging.draw_contrast(rng(seed, patient_id, "contrast"))

    # CT grid: centred on the scanner axis, z from the size's anatomical top
    c = spec.ct
    half = (c.matrix - 1) / 2.0 * c.pixel_mm
    z_top = c.top_z + offset[2]
    ct_grid = Grid(
        size=(c.matrix, c.matrix, c.n_slices),
        spacing=(position(c.pixel_mm), position(c.pixel_mm), position(c.slice_mm)),
        origin=(position(-half), position(-half), position(z_top - (c.n_slices - 1) * c.slice_mm)),
    )
    # PET grid: covers the CT range, slices at 2-decimal positions
    p = spec.pet
    extent = (c.n_slices - 1) * c.slice_mm
    n_pet = math.ceil(extent / p.slice_mm) + 1
    z_mid = z_top - extent / 2.0
    half_p = (p.matrix - 1) / 2.0 * p.pixel_mm
    pet_grid = Grid(
        size=(p.matrix, p.matrix, n_pet),
        spacing=(position(p.pixel_mm), position(p.pixel_mm), position(p.slice_mm)),
        origin=(position(-half_p), position(-half_p), position(round(z_mid - (n_pet - 1) / 2.0 * p.slice_mm, 2))),
    )
    # MR pose around C2, deformation peak measured over the CT field of view
    probe = np.stack(
        np.meshgrid(
            np.linspace(-90, 90, 7) + offset[0],
            np.linspace(-90, 90, 7) + offset[1],
            np.linspace(ct_grid.origin[2], z_top, 9),
            indexing="ij",
        ),
        axis=-1,
    ).reshape(-1, 3)
    r_pose = rng(seed, patient_id, "pose")
    pose = draw_pose(r_pose, np.asarray(anatomy.landmarks["c2_body"]), probe)
    m = spec.mr
    target = np.array([[offset[0], offset[1] - 5.0, offset[2] + float(r_pose.uniform(-30.0, -20.0))]])
    centre_mr = pose.ct_to_mr(target)[0][0]
    spacing_mr = position(m.spacing_mm)
    mr_grid = Grid(
        size=(m.columns, m.rows, m.n_slices),
        spacing=(position(m.pixel_mm), position(m.pixel_mm), spacing_mr),
        origin=(
            position(round(float(centre_mr[0]) - (m.columns - 1) / 2.0 * m.pixel_mm, 2)),
            position(round(float(centre_mr[1]) - (m.rows - 1) / 2.0 * m.pixel_mm, 2)),
            position(round(float(centre_mr[2]) - (m.n_slices - 1) / 2.0 * spacing_mr, 2)),
        ),
    )

    r_ser = rng(seed, patient_id, "series")
    studies = {
        "A": dw.Study(
            uid=uid(seed, patient_id, "study", "A"),
            date=ident.study_date_ct,
            time=dicom_time(ident.ct_time_s - 240),
            description=str(r_ser.choice(["RT PLANNING PET/CT HEAD NECK", "PETCT HEAD NECK RT PLANNING"])),
            accession=ident.accession_ct,
            study_id=f"{int(r_ser.integers(1000, 99999))}",
            frame_of_reference=uid(seed, patient_id, "for", "A"),
        ),
        "B": dw.Study(
            uid=uid(seed, patient_id, "study", "B"),
            date=ident.study_date_mr,
            time=dicom_time(ident.mr_time_s - 300),
            description=str(r_ser.choice(["MR HEAD NECK", "IRM ORL", "MRI NECK WO CONTRAST"])),
            accession=ident.accession_mr,
            study_id=f"{int(r_ser.integers(1000, 99999))}",
            frame_of_reference=uid(seed, patient_id, "for", "B"),
        ),
    }
    t1_s = ident.mr_time_s
    protocols = {
        "T1": series.MrProtocol(
            "T1",
            round(float(r_ser.uniform(500, 700))),
            round(float(r_ser.uniform(10, 15)), 1),
            3,
            "*tse2d1_3",
            float(r_ser.choice([1.5, 3.0])),
            90.0,
        ),
    }
    protocols["T2"] = series.MrProtocol(
        "T2",
        round(float(r_ser.uniform(3000, 5000))),
        round(float(r_ser.uniform(80, 100)), 1),
        15,
        "*tse2d1_15",
        protocols["T1"].field_t,
        150.0,
    )
    ser = {
        "CT": dw.Series(
            uid(seed, patient_id, "series", "CT"),
            2,
            str(r_ser.choice(["StandardFull", "CT IMAGES", "HEAD NECK 3.0 STD", "RT SIM HN"])),
            "CT",
            ident.study_date_ct,
            dicom_time(ident.ct_time_s),
        ),
        "PT": dw.Series(
            uid(seed, patient_id, "series", "PT"),
            3,
            str(r_ser.choice(["PET AC", "PET WB AC HN", "PET AC 3DIRHN"])),
            "PT",
            ident.study_date_ct,
            dicom_time(ident.pet_time_s),
        ),
        "RTSTRUCT": dw.Series(
            uid(seed, patient_id, "series", "RTSTRUCT"),
            1,
            str(r_ser.choice(["RTstruct", "RTSTRUCT CTsim", "RT STRUCT HN"])),
            "RTSTRUCT",
            ident.structure_set_date,
            dicom_time(ident.structure_set_time_s),
        ),
        "T1": dw.Series(
            uid(seed, patient_id, "series", "T1"),
            4,
            str(r_ser.choice(["T1 TSE AX", "t1_tse_tra", "AX T1 SE"])),
            "MR",
            ident.study_date_mr,
            dicom_time(t1_s),
        ),
        "T2": dw.Series(
            uid(seed, patient_id, "series", "T2"),
            5,
            str(r_ser.choice(["T2 TSE AX", "t2_tse_tra", "AX T2 FSE"])),
            "MR",
            ident.study_date_mr,
            dicom_time(t1_s + int(r_ser.integers(240, 600))),
        ),
    }
    r_roi = rng(seed, patient_id, "rois")
    rois = rtstruct.plan_rois(anatomy, r_roi)
    order = [int(i) for i in r_roi.permutation(len(rois))]
    dose = series.PetDose(
        dose_bq=float(round(float(rng(seed, patient_id, "dose").uniform(200e6, 400e6)), -4)),
        weight_kg=ds_exact(ident.weight_kg, 1),
        injection_s=ident.injection_time_s,
        series_s=ident.pet_time_s,
    )
    return PatientModel(
        patient_id=patient_id,
        seed=seed,
        size=spec,
        identity=ident,
        anatomy=anatomy,
        contrast=contrast,
        pose=pose,
        ct_grid=ct_grid,
        pet_grid=pet_grid,
        mr_grid=mr_grid,
        rois=rois,
        roi_order=order,
        studies=studies,
        series=ser,
        protocols=protocols,
        dose=dose,
    )
