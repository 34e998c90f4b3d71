"""One synthetic patient end to end: draw the model (:mod:`.model`), make the volumes (:mod:`.volumes`), write
the DICOM (:mod:`.series`, :mod:`.rtstruct`) and the truth.

Truth written to ``truth_dir`` (pseudonymous, except phi.json which holds the fake identity on purpose):

- ``labels.nii.gz``: uint8 on the CT grid, 0 background, 1 GTV-T, 2 GTV-N. Overlap rule: GTV-T wins
  (a voxel inside both a GTV-T and a GTV-N polygon is 1); the generator keeps them 4 mm apart anyway.
- ``masks/<safe ROI name>.nii.gz``: uint8 per ROI, from exactly the polygons in the RTSTRUCT (even-odd).
- ``rois.json``: ROI name, number, role (gtv_t, gtv_n, body, oar, expansion, ring), node ids, mask file.
- ``suv.nii.gz``: float32 SUVbw on the PET grid, what the PET DICOM encodes (before int16 quantisation).
- ``mr_pose.json``, ``displacement_ct.nii.gz``, ``landmarks.json``: the MR pose (see :mod:`.pose`).
- ``labels_mr.nii.gz`` (0/1/2) and ``gtvt_mr.nii.gz`` (0/1) on the T1/T2 grid: the analytic truth seen by MR.
- ``phi.json``: the fake identifying data written into the DICOM headers, and the DICOM UIDs.
- ``patient.json``: parameters of the synthetic anatomy and images, grids and series (no identifying data).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk

from hnseg.errors import InputError
from hnseg.synthetic import dicom_writer as dw
from hnseg.synthetic import rtstruct, series
from hnseg.synthetic.identity import dicom_time
from hnseg.synthetic.model import build_model
from hnseg.synthetic.seeding import uid
from hnseg.synthetic.volumes import ct_volume, displacement_field, mr_volumes, suv_volume

GENERATOR = "hnseg.synthetic 1"


def patient_ids(n_patients: int) -> list[str]:
    """Pseudonymous ids of a cohort of n patients: SYN001, SYN002, ..."""
    if isinstance(n_patients, bool) or not isinstance(n_patients, int) or n_patients < 1:
        raise InputError(f"the number of synthetic patients must be a positive integer, got {n_patients!r}")
    return [f"SYN{i:03d}" for i in range(1, n_patients + 1)]


def _round(obj):
    """Floats to 10 significant digits (readable JSON that still resolves 1e-7 mm)."""
    if isinstance(obj, float | np.floating):
        return float(f"{float(obj):.10g}") + 0.0
    if isinstance(obj, dict):
        return {k: _round(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_round(v) for v in obj]
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _write_json(path: Path, data) -> None:
    path.write_text(json.dumps(_round(data), indent=2) + "\n", encoding="utf-8")


def _is_ours(path: Path) -> bool:
    """A DICOM file written by this generator (its file meta names the generator)."""
    if path.suffix != ".dcm":
        return False
    try:
        meta = pydicom.filereader.read_file_meta_info(path)
    except (OSError, ValueError, pydicom.errors.InvalidDicomError):
        return False
    return meta.get("ImplementationVersionName") == dw.IMPLEMENTATION_VERSION


def _previous_files(dicom_dir: Path) -> list[Path]:
    """Files of an earlier run into the same folder, or an error if the folder holds anything else."""
    existing = [p for p in dicom_dir.rglob("*") if p.is_file()] if dicom_dir.exists() else []
    foreign = [p for p in existing if not _is_ours(p)]
    if foreign:
        raise InputError(
            f"{dicom_dir} already holds files that this generator did not write (e.g. {foreign[0]}); "
            "give an empty or new folder for the synthetic patient"
        )
    return existing


def _clear(dicom_dir: Path, files: list[Path]) -> None:
    if not files:
        return
    for f in files:
        f.unlink()
    for d in sorted((p for p in dicom_dir.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        if not any(d.iterdir()):
            d.rmdir()


def _write_nifti(img: sitk.Image, path: Path) -> None:
    sitk.WriteImage(img, str(path), useCompression=True)


def generate_patient(patient_id: str, seed: int, dicom_dir: Path, truth_dir: Path, size: str = "demo") -> dict:
    """Write one synthetic patient's DICOM (PACS-style tree) and truth; returns a small summary."""
    start = time.perf_counter()
    model = build_model(patient_id, seed, size)
    dicom_dir, truth_dir = Path(dicom_dir), Path(truth_dir)
    _clear(dicom_dir, _previous_files(dicom_dir))
    dicom_dir.mkdir(parents=True, exist_ok=True)
    (truth_dir / "masks").mkdir(parents=True, exist_ok=True)
    for old in (truth_dir / "masks").glob("*.nii.gz"):
        old.unlink()
    ident, st, se = model.identity, model.studies, model.series
    written: dict[str, list[Path]] = {}

    # CT
    ct = ct_volume(model)
    ct_uids = [uid(seed, patient_id, "sop", "CT", k) for k in range(model.ct_grid.size[2])]
    written["CT"] = series.write_ct(
        dw.series_dir(dicom_dir, st["A"], se["CT"]),
        ident=ident,
        study=st["A"],
        series=se["CT"],
        grid=model.ct_grid,
        stored=ct,
        sop_uids=ct_uids,
    )
    del ct
    # PET
    suv = suv_volume(model)
    pet_uids = [uid(seed, patient_id, "sop", "PT", k) for k in range(model.pet_grid.size[2])]
    written["PT"] = series.write_pet(
        dw.series_dir(dicom_dir, st["A"], se["PT"]),
        ident=ident,
        study=st["A"],
        series=se["PT"],
        grid=model.pet_grid,
        suv=suv,
        dose=model.dose,
        sop_uids=pet_uids,
        bed_slices=model.size.pet.bed_slices,
    )
    _write_nifti(model.pet_grid.image(suv), truth_dir / "suv.nii.gz")
    del suv
    # MR
    t1, t2, labels_mr = mr_volumes(model)
    for key, pixels in (("T1", t1), ("T2", t2)):
        sop = [uid(seed, patient_id, "sop", key, k) for k in range(model.mr_grid.size[2])]
        written[key] = series.write_mr(
            dw.series_dir(dicom_dir, st["B"], se[key]),
            ident=ident,
            study=st["B"],
            series=se[key],
            grid=model.mr_grid,
            thickness=model.size.mr.thickness_mm,
            pixels=pixels,
            protocol=model.protocols[key],
            sop_uids=sop,
        )
    _write_nifti(model.mr_grid.image(labels_mr), truth_dir / "labels_mr.nii.gz")
    _write_nifti(model.mr_grid.image((labels_mr == 1).astype(np.uint8)), truth_dir / "gtvt_mr.nii.gz")
    del t1, t2, labels_mr
    # RTSTRUCT and the polygon truth
    z_text = series.slice_z_strings(model.ct_grid)
    contours = rtstruct.contour_rois(model.rois, model.ct_grid, z_text)
    rs_path = dw.series_dir(dicom_dir, st["A"], se["RTSTRUCT"]) / "1-1.dcm"
    rtstruct.write_rtstruct(
        rs_path,
        ident=ident,
        study=st["A"],
        series=se["RTSTRUCT"],
        ct_series_uid=se["CT"].uid,
        ct_sop_uids=ct_uids,
        rois=contours,
        sop_uid=uid(seed, patient_id, "sop", "RTSTRUCT", 0),
        date=ident.structure_set_date,
        time=dicom_time(ident.structure_set_time_s),
        order=model.roi_order,
    )
    written["RTSTRUCT"] = [rs_path]
    labels = np.zeros(model.ct_grid.shape_zyx, dtype=np.uint8)
    roi_records, used = [], set()
    for roi in contours:
        spec = roi.spec
        name = rtstruct.safe_name(spec.name)
        while name in used:
            name += "_2"
        used.add(name)
        mask = roi.mask(model.ct_grid)
        if spec.role == "gtv_n":
            labels[(mask > 0) & (labels == 0)] = 2
        elif spec.role == "gtv_t":
            labels[mask > 0] = 1
        _write_nifti(model.ct_grid.image(mask), truth_dir / "masks" / f"{name}.nii.gz")
        roi_records.append(
            {
                "name": spec.name,
                "number": spec.number,
                "role": spec.role,
                "interpreted_type": spec.interpreted_type,
                "nodes": list(spec.nodes),
                "mask": f"masks/{name}.nii.gz",
                "voxels": int(mask.sum()),
                "slices_with_contours": len(roi.slices),
            }
        )
    _write_nifti(model.ct_grid.image(labels), truth_dir / "labels.nii.gz")

    # pose truth
    dgrid, disp, residual, iterations = displacement_field(model)
    _write_nifti(dgrid.image(disp, vector=True), truth_dir / "displacement_ct.nii.gz")
    pose_json = model.pose.to_json()
    pose_json["displacement_field"] = {
        "file": "displacement_ct.nii.gz",
        "grid": dgrid.to_json(),
        "note": (
            "the CT grid (same origin: voxel centres are CT voxel centres) subsampled by "
            f"{list(model.size.displacement_stride)} in (x, y, z); vectors are LPS mm"
        ),
        "max_inverse_residual_mm": residual,
        "fixed_point_iterations": iterations,
    }
    pose_json["mr_grid"] = model.mr_grid.to_json()
    _write_json(truth_dir / "mr_pose.json", pose_json)
    landmarks = dict(model.anatomy.landmarks)
    gtv = np.argwhere(labels == 1)
    if gtv.size:
        k, j, i = gtv.mean(axis=0)
        g = model.ct_grid
        landmarks["gtvt_centroid"] = (
            g.origin[0] + i * g.spacing[0],
            g.origin[1] + j * g.spacing[1],
            g.origin[2] + k * g.spacing[2],
        )
    names = sorted(landmarks)
    ct_pts = np.array([landmarks[n] for n in names], dtype=np.float64)
    mr_pts, lm_residual, _ = model.pose.ct_to_mr(ct_pts)
    _write_json(
        truth_dir / "landmarks.json",
        {
            "convention": "ct_mm and mr_mm are LPS patient coordinates of the CT and MR series; M(mr_mm) = ct_mm "
            "with M from mr_pose.json",
            "max_residual_mm": lm_residual,
            "landmarks": {n: {"ct_mm": ct_pts[i].tolist(), "mr_mm": mr_pts[i].tolist()} for i, n in enumerate(names)},
        },
    )
    _write_json(
        truth_dir / "rois.json",
        {
            "labels": {"0": "background", "1": "GTV-T", "2": "GTV-N"},
            "overlap_rule": "GTV-T wins: a voxel in a GTV-T and a GTV-N mask is labelled 1",
            "mask_rule": "voxel centre inside polygon, even-odd over the ROI's polygons on the slice",
            "rois": roi_records,
        },
    )
    phi = ident.to_json()
    phi["uids"] = {
        "studies": {k: v.uid for k, v in st.items()},
        "series": {k: v.uid for k, v in se.items()},
        "frames_of_reference": {k: v.frame_of_reference for k, v in st.items()},
    }
    _write_json(truth_dir / "phi.json", phi)

    n_files = sum(len(v) for v in written.values())
    anat = model.anatomy
    _write_json(
        truth_dir / "patient.json",
        {
            "patient_id": patient_id,
            "seed": seed,
            "size": model.size.name,
            "generator": GENERATOR,
            "tumour": {
                "site": anat.tumour.site,
                "diameter_mm": anat.tumour.diameter_mm,
                "volume_ml": float((labels == 1).sum()) * float(np.prod(model.ct_grid.spacing)) / 1000.0,
            },
            "nodes": [
                {"id": i + 1, "level": n.level, "side": n.side, "diameter_mm": n.diameter_mm}
                for i, n in enumerate(anat.nodes)
            ],
            "anatomy": {k: v for k, v in anat.params.items()},
            "contrast": model.contrast.to_json(),
            "pet": {
                "injected_dose_bq": model.dose.dose_bq,
                "uptake_s": model.dose.series_s - model.dose.injection_s,
                "decayed_dose_bq": model.dose.decayed_dose_bq,
            },
            "grids": {
                "CT": model.ct_grid.to_json(),
                "PT": model.pet_grid.to_json(),
                "T1": model.mr_grid.to_json(),
                "T2": model.mr_grid.to_json(),
            },
            "series": {
                key: {
                    "modality": s.modality,
                    "description": s.description,
                    "series_number": s.number,
                    "study": "A" if key in ("CT", "PT", "RTSTRUCT") else "B",
                    "files": len(written[key]),
                }
                for key, s in se.items()
            },
        },
    )
    return {
        "patient_id": patient_id,
        "size": model.size.name,
        "n_files": n_files,
        "n_slices": {k: len(v) for k, v in written.items() if k != "RTSTRUCT"},
        "roi_names": [r.name for r in model.rois],
        "n_nodes": len(anat.nodes),
        "seconds": round(time.perf_counter() - start, 3),
    }
