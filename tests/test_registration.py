"""Registration with real ANTs on the synthetic cohort: rigid recovers a known pose, rigid then SyN recovers pose plus
deformation, deterministic reruns are bit-identical, and the QC flags an MR that does not overlap the CT."""

import json
import logging
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from hnseg.config import REPO_ROOT, load_config
from hnseg.dicom.importer import ImportOptions, import_ct_and_labels, import_mri, import_pet
from hnseg.errors import ConfigError, InputError
from hnseg.registration import ants_register as ar
from hnseg.registration import copy_ct, load_options, options_from_params, qc, register_mri, resample_pet
from hnseg.synthetic import build_model, generate_patient
from hnseg.synthetic.volumes import mr_volumes

PATIENT = "SYN001"


def demo_params(**changes) -> dict:
    params = json.loads(json.dumps(load_config(REPO_ROOT / "config/config.yaml", REPO_ROOT / "config/demo.yaml")))
    params = params["registration"]
    params.update(changes)
    return params


def fast_params(**changes) -> dict:
    """Short schedules, for tests where accuracy does not matter (determinism, flags)."""
    params = demo_params(**changes)
    params["rigid"].update(iterations=[40, 20], shrink_factors=[4, 2], smoothing_sigmas_mm=[2, 1])
    params["syn"].update(iterations=[10], shrink_factors=[6], smoothing_sigmas_mm=[3])
    return params


def array(path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """One synthetic demo patient, generated and imported: MR in a known pose plus a smooth deformation."""
    root = tmp_path_factory.mktemp("reg")
    generate_patient(PATIENT, 2024, root / "dicom", root / "truth", size="demo")
    imported = root / "imported"
    opts = ImportOptions()
    import_ct_and_labels(PATIENT, root / "dicom", imported, opts)
    import_pet(PATIENT, root / "dicom", imported, opts)
    import_mri(PATIENT, root / "dicom", imported, opts)
    return root


@pytest.fixture(scope="module")
def registered(demo):
    """The three registration steps of the demo patient with the demo settings and the truth."""
    imp, out = demo / "imported", demo / "registered"
    resample_pet(PATIENT, imp / "ct.nii.gz", imp / "labels.nii.gz", imp / "pet.nii.gz", out, -400.0)
    mrs = {"t1": imp / "t1.nii.gz", "t2": imp / "t2.nii.gz"}
    record = register_mri(PATIENT, imp / "ct.nii.gz", imp / "labels.nii.gz", mrs, out, load_options(demo=True),
                          truth_dir=demo / "truth")  # fmt: skip
    return out, record


# ----------------------------------------------------------------------------------------------- accuracy


def test_rigid_recovers_a_known_rigid_pose(demo, tmp_path):
    """The demo patient's MR drawn again with the deformation switched off: rigid TRE below 1 mm."""
    model = build_model(PATIENT, 2024, "demo")
    pose = replace(model.pose, rbf_amplitudes=tuple((0.0, 0.0, 0.0) for _ in model.pose.rbf_amplitudes))
    model = replace(model, pose=pose)
    t1, _, labels_mr = mr_volumes(model)
    sitk.WriteImage(sitk.Cast(model.mr_grid.image(t1), sitk.sitkFloat32), str(tmp_path / "t1.nii.gz"))
    truth = tmp_path / "truth"
    truth.mkdir()
    sitk.WriteImage(model.mr_grid.image((labels_mr == 1).astype(np.uint8)), str(truth / "gtvt_mr.nii.gz"))
    sitk.WriteImage(sitk.ReadImage(str(demo / "truth" / "labels.nii.gz")), str(truth / "labels.nii.gz"))
    names = sorted(model.anatomy.landmarks)
    ct_mm = np.array([model.anatomy.landmarks[n] for n in names])
    mr_mm = pose.ct_to_mr(ct_mm)[0]
    landmarks = {n: {"ct_mm": c.tolist(), "mr_mm": m.tolist()} for n, c, m in zip(names, ct_mm, mr_mm, strict=True)}
    (truth / "landmarks.json").write_text(json.dumps({"landmarks": landmarks}))

    imp = demo / "imported"
    record = register_mri(PATIENT, imp / "ct.nii.gz", imp / "labels.nii.gz", {"t1": tmp_path / "t1.nii.gz"},
                          tmp_path / "out", load_options(demo=True), truth_dir=truth)  # fmt: skip
    tre = record["mr"]["t1"]["truth"]["tre"]
    assert tre["before"]["mean_mm"] > 5.0  # the pose is real: 3-5 degrees and 5-15 mm
    assert tre["rigid"]["mean_mm"] < 1.0 and tre["rigid"]["max_mm"] < 1.0, tre["rigid"]
    assert record["mr"]["t1"]["truth"]["gtvt_dice"]["rigid"] > 0.9


def test_rigid_then_syn_recovers_pose_and_deformation(registered):
    _, record = registered
    for name in ("t1", "t2"):
        truth = record["mr"][name]["truth"]
        tre, dice = truth["tre"], truth["gtvt_dice"]
        assert tre["before"]["mean_mm"] > 5.0
        assert tre["syn"]["mean_mm"] < 2.0, (name, tre)
        assert tre["syn"]["mean_mm"] < tre["rigid"]["mean_mm"], (name, tre)
        assert tre["syn"]["max_mm"] < tre["before"]["max_mm"]
        assert dice["syn"] > 0.9 and dice["syn"] >= dice["rigid"] > dice["before"], (name, dice)
        sim = record["mr"][name]["similarity"]
        assert sim["syn"]["mi"] > sim["before"]["mi"]
        assert record["mr"][name]["initialisation"] == "geometry"
    assert record["status"] == "ok" and record["flags"] == []


def test_outputs_are_on_the_ct_grid_and_the_transforms_reapply(registered, demo):
    out, _ = registered
    ct = sitk.ReadImage(str(out / "ct.nii.gz"))
    assert (out / "ct.nii.gz").read_bytes() == (demo / "imported" / "ct.nii.gz").read_bytes()
    assert (out / "labels.nii.gz").read_bytes() == (demo / "imported" / "labels.nii.gz").read_bytes()
    for name in ("pet", "t1", "t2"):
        image = sitk.ReadImage(str(out / f"{name}.nii.gz"))
        assert image.GetSize() == ct.GetSize() and image.GetPixelID() == sitk.sitkFloat32
        assert np.allclose(image.GetOrigin(), ct.GetOrigin()) and np.allclose(image.GetSpacing(), ct.GetSpacing())
        assert np.allclose(image.GetDirection(), ct.GetDirection())
    for name in ("t1", "t2"):
        for f in ("rigid.mat", "warp.nii.gz", "inverse_warp.nii.gz"):
            assert (out / f"{name}_to_ct" / f).is_file()
    assert (out / "qc.png").stat().st_size > 10_000
    on_disk = json.loads((out / "qc.json").read_text())
    assert on_disk["patient"] == PATIENT and set(on_disk["mr"]) == {"t1", "t2"}
    assert "antsApplyTransforms" in on_disk["how_to_reapply"]

    # what qc.json says a user can do: reapply the transforms with antspyx and get the same MR
    import ants

    t1 = on_disk["mr"]["t1"]
    again = ants.apply_transforms(
        fixed=ants.image_read(str(out / "ct.nii.gz")),
        moving=ants.image_read(str(demo / "imported" / "t1.nii.gz")),
        transformlist=[str(out / t1["transforms"]["warp"]), str(out / t1["transforms"]["rigid"])],
        interpolator="linear",
    )
    assert np.allclose(again.numpy().transpose(2, 1, 0), array(out / "t1.nii.gz"), atol=1e-3)
    # ... and the inverse: the CT's GTV-T onto the T1 grid matches the MR-space truth
    gtv_ct = ants.image_read(str(demo / "truth" / "labels.nii.gz")) == 1
    on_mr = ants.apply_transforms(
        fixed=ants.image_read(str(demo / "imported" / "t1.nii.gz")),
        moving=gtv_ct.astype("float32"),
        transformlist=[str(out / t1["transforms"]["rigid"]), str(out / t1["transforms"]["inverse_warp"])],
        whichtoinvert=[True, False],
        interpolator="linear",
    )
    assert qc.dice(on_mr.numpy() >= 0.5, array(demo / "truth" / "gtvt_mr.nii.gz").transpose(2, 1, 0)) > 0.85


# ----------------------------------------------------------------------------------------------- determinism

RUN = """
import json, sys
from hnseg.registration import options_from_params, register_mri
params, ct, labels, t1, out = json.loads(sys.argv[1]), *sys.argv[2:]
register_mri("SYN001", ct, labels, {"t1": t1}, out, options_from_params(params))
"""


def test_deterministic_runs_are_bit_identical(demo, tmp_path):
    imp = demo / "imported"
    params = json.dumps(fast_params())
    runs = [tmp_path / "a", tmp_path / "b"]
    args = [params, str(imp / "ct.nii.gz"), str(imp / "labels.nii.gz"), str(imp / "t1.nii.gz")]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RUN, *args, str(run)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for run in runs
    ]
    for proc in procs:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out
    a, b = runs
    assert (a / "t1_to_ct" / "rigid.mat").read_bytes() == (b / "t1_to_ct" / "rigid.mat").read_bytes()
    for f in ("t1.nii.gz", "t1_to_ct/warp.nii.gz", "t1_to_ct/inverse_warp.nii.gz"):
        assert np.array_equal(array(a / f), array(b / f)), f
    qa, qb = (json.loads((r / "qc.json").read_text()) for r in runs)
    assert qa["mr"]["t1"]["similarity"] == qb["mr"]["t1"]["similarity"]
    assert qa["settings"]["itk_threads"] == 1


def test_threads_cannot_change_once_ants_runs():
    ar.configure_ants(1, 42)
    with pytest.raises(RuntimeError, match="separate process"):
        ar.configure_ants(2, 42)


# ----------------------------------------------------------------------------------------------- flags and errors


def _shifted(src: Path, dst: Path, shift_mm: tuple[float, float, float]) -> Path:
    image = sitk.ReadImage(str(src))
    image.SetOrigin(tuple(o + s for o, s in zip(image.GetOrigin(), shift_mm, strict=True)))
    sitk.WriteImage(image, str(dst))
    return dst


def test_qc_flags_an_mr_that_does_not_overlap_the_ct(demo, tmp_path, caplog):
    imp = demo / "imported"
    far = _shifted(imp / "t1.nii.gz", tmp_path / "t1_far.nii.gz", (0.0, 0.0, 600.0))
    # trusting the scanner coordinates cannot even start: a clear refusal naming patient, file and fix
    with pytest.raises(
        InputError, match=r"patient SYN001, T1w .*t1_far.*does not overlap.*registration\.initialisation"
    ):
        register_mri(PATIENT, imp / "ct.nii.gz", imp / "labels.nii.gz", {"t1": far}, tmp_path / "geo",
                     options_from_params(fast_params(initialisation="geometry")))  # fmt: skip
    # auto starts from the aligned body centres, and says so in qc.json and the log
    with caplog.at_level(logging.WARNING, logger="hnseg.registration"):
        record = register_mri(PATIENT, imp / "ct.nii.gz", imp / "labels.nii.gz", {"t1": far}, tmp_path / "auto",
                              options_from_params(fast_params()))  # fmt: skip
    t1 = record["mr"]["t1"]
    assert t1["overlap"]["scanner_coordinates"] == 0.0 and t1["initialisation"] == "center_of_mass"
    assert "t1: mr_outside_ct_coordinates" in record["flags"] and record["status"] == "flagged"
    assert t1["overlap"]["registered"] > 0.8  # and it still lands on the CT
    assert any("patient SYN001" in r.getMessage() and "overlaps the CT body by 0.00" in r.getMessage()
               for r in caplog.records)  # fmt: skip
    assert json.loads((tmp_path / "auto" / "qc.json").read_text())["flags"] == record["flags"]


def test_flags_for_no_overlap_and_worse_similarity():
    opts = load_options().qc
    record = {
        "initialisation": "geometry",
        "overlap": {"scanner_coordinates": 0.9, "registered": 0.1},
        "similarity": {"before": {"mi": 0.3}, "rigid": {"mi": 0.25}, "syn": {"mi": 0.2}},
    }
    flags = dict(qc.flags_for("T2w", record, opts))
    assert set(flags) == {"no_overlap", "similarity_worse", "syn_worse_than_rigid"}
    assert "T2w" in flags["no_overlap"] and "0.10" in flags["no_overlap"]
    record["overlap"]["registered"] = 0.95
    record["similarity"]["syn"]["mi"] = 0.35
    assert qc.flags_for("T2w", record, opts) == []
    record["similarity"]["syn"]["mi"] = 0.3 * (1 - opts.max_mi_drop) + 0.001  # within the tolerance
    record["similarity"]["rigid"]["mi"] = 0.3
    assert qc.flags_for("T2w", record, opts) == []


def test_pet_is_resampled_and_a_pet_off_the_ct_is_refused(registered, demo, tmp_path):
    out, _ = registered
    imp = demo / "imported"
    ct, pet = sitk.ReadImage(str(imp / "ct.nii.gz")), sitk.ReadImage(str(imp / "pet.nii.gz"))
    expected = sitk.Resample(pet, ct, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    assert np.allclose(array(out / "pet.nii.gz"), sitk.GetArrayFromImage(expected))
    far = _shifted(imp / "pet.nii.gz", tmp_path / "pet_far.nii.gz", (0.0, 0.0, -900.0))
    with pytest.raises(InputError, match=r"patient SYN001: the PET .*pet_far.* does not overlap the CT body"):
        resample_pet(PATIENT, imp / "ct.nii.gz", imp / "labels.nii.gz", far, tmp_path, -400.0)


def test_labels_off_the_ct_grid_are_refused(demo, tmp_path):
    imp = demo / "imported"
    moved = _shifted(imp / "labels.nii.gz", tmp_path / "labels.nii.gz", (2.0, 0.0, 0.0))
    with pytest.raises(InputError, match=r"patient SYN001: the labels .* are not on the CT grid"):
        copy_ct(PATIENT, imp / "ct.nii.gz", moved, tmp_path / "out")


# ----------------------------------------------------------------------------------------------- settings


def test_every_number_reaches_antsregistration():
    params = demo_params(metric="mattes", random_seed=7)
    params["rigid"].update(
        metric_bins=48, sampling="random", sampling_rate=0.3, iterations=[300, 70, 9], shrink_factors=[5, 3, 1],
        smoothing_sigmas_mm=[2.5, 1, 0], gradient_step=0.15, convergence_threshold=2e-8, convergence_window=12,
    )  # fmt: skip
    params["syn"].update(
        metric_bins=24, sampling="none", iterations=[33, 11], shrink_factors=[7, 2], smoothing_sigmas_mm=[3.5, 0.5],
        gradient_step=0.25, flow_sigma=4.5, total_sigma=1.5, convergence_threshold=3e-6, convergence_window=6,
    )  # fmt: skip
    opts = options_from_params(params)
    work = Path("/w")
    rigid = " ".join(ar.stage_arguments("rigid", work / "f.nii", work / "m.nii", work / "r_", opts.rigid, opts,
                                        work / "init.mat"))  # fmt: skip
    assert "Rigid[0.15]" in rigid and "Mattes[/w/f.nii,/w/m.nii,1,48,Random,0.3]" in rigid
    assert "--convergence [300x70x9,2e-08,12]" in rigid and "--shrink-factors 5x3x1" in rigid
    assert "--smoothing-sigmas 2.5x1x0mm" in rigid and "--random-seed 7" in rigid
    assert "--initial-moving-transform /w/init.mat" in rigid
    syn = " ".join(ar.stage_arguments("syn", work / "f.nii", work / "m.nii", work / "s_", opts.syn, opts,
                                      work / "rigid.mat"))  # fmt: skip
    assert "SyN[0.25,4.5,1.5]" in syn and "Mattes[/w/f.nii,/w/m.nii,1,24,None]" in syn
    assert "--convergence [33x11,3e-06,6]" in syn and "--shrink-factors 7x2" in syn
    assert "--smoothing-sigmas 3.5x0.5mm" in syn and "--initial-moving-transform /w/rigid.mat" in syn
    params["metric"] = "mi"
    assert "MI[/w/f.nii" in " ".join(ar.stage_arguments("syn", work / "f.nii", work / "m.nii", work / "s_",
                                                        opts.syn, options_from_params(params), work / "r.mat"))  # fmt: skip


def test_options_are_checked_and_name_the_key():
    params = demo_params()
    params["syn"]["shrink_factors"] = [4, 2, 1]
    with pytest.raises(ConfigError, match=r"registration\.syn.*one entry per resolution level"):
        options_from_params(params)
    with pytest.raises(ConfigError, match=r"registration\.initialisation.*'guess'"):
        options_from_params(demo_params(initialisation="guess"))
    with pytest.raises(ConfigError, match=r"registration\.ct_clip_hu"):
        options_from_params(demo_params(ct_clip_hu=[600, -200]))
    opts = load_options(deterministic=False, threads=2)
    assert opts.itk_threads == 2 and load_options().itk_threads == 1
