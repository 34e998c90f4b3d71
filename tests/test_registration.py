"""Registration with real ANTs on the synthetic cohort: the rule chain resample_pet -> register_mri -> registration_qc
run by Snakemake, rigid recovering a known pose, rigid then SyN recovering pose plus deformation, bit-identical
deterministic reruns, the stage records of refused patients, the QC's flags, and what each rule's code trigger
holds."""

import json
import logging
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from workflow_run import DEMO, PAPER, ROOT, planned_jobs, snakemake

from hnseg.cohort import FAILED, NOT_RUN, OK, read_record, run_patient_stage
from hnseg.dicom.importer import ImportOptions, import_ct_and_labels, import_mri, import_pet
from hnseg.errors import ConfigError, InputError
from hnseg.provenance import import_closure
from hnseg.registration import ants_register as ar
from hnseg.registration import qc
from hnseg.registration.mri import output_paths, register_mri
from hnseg.registration.options import (
    REGISTRATION_QC_KEYS,
    load_options,
    load_qc_options,
    options_from_params,
    registration_params,
)
from hnseg.registration.pet import OUTPUT_FILES, copy_ct, resample_pet
from hnseg.registration.qc_stage import registration_qc, require_ok
from hnseg.synthetic import build_model, generate_patient
from hnseg.synthetic.volumes import mr_volumes

PATIENT = "SYN001"
SCRIPTS = ROOT / "workflow" / "scripts"


def demo_params(**changes) -> dict:
    from hnseg.config import load_config

    params = json.loads(json.dumps(load_config(PAPER, DEMO)))["registration"]
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


@pytest.fixture(autouse=True)
def keep_test_logging():
    """run_patient_stage points stderr and the root logger at its log file, as a job's process wants: undo that."""
    stderr, handlers = sys.stderr, list(logging.root.handlers)
    yield
    sys.stderr = stderr
    for handler in list(logging.root.handlers):
        if type(handler) is logging.StreamHandler and handler not in handlers:
            logging.root.removeHandler(handler)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """One synthetic demo patient, generated and imported: MR in a known pose plus a smooth deformation."""
    root = tmp_path_factory.mktemp("reg")
    generate_patient(PATIENT, 2024, root / "dicom", root / "truth", size="demo")
    opts = ImportOptions()
    for step in (import_ct_and_labels, import_pet, import_mri):
        step(PATIENT, root / "dicom", root / "imported", opts)
    return root


@pytest.fixture(scope="module")
def imported(demo):
    return demo / "imported"


@pytest.fixture(scope="module")
def truth(demo):
    return demo / "truth"


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """The demo workflow on one synthetic patient, up to its registration QC: synthesis, the three imports,
    resample_pet, register_mri and registration_qc, run by Snakemake. Returns the working directory and configs."""
    workdir = tmp_path_factory.mktemp("registration_chain")
    one = workdir / "one.yaml"
    one.write_text("synthetic:\n  n_patients: 1\n")
    configs = ["--configfile", str(PAPER), str(DEMO), str(one)]
    snakemake(workdir, f"results/registered/{PATIENT}/qc.json", *configs)
    return workdir, configs


# ----------------------------------------------------------------------------------------------- the rule chain


@pytest.mark.slow
def test_the_rule_chain_writes_records_volumes_and_qc(chain):
    workdir, _ = chain
    out = workdir / "results" / "registered" / PATIENT
    pet, mri = read_record(out / "pet.json"), read_record(out / "mri.json")
    assert (pet["stage"], pet["status"], mri["stage"], mri["status"]) == ("resample_pet", OK, "register_mri", OK)
    assert sorted(Path(p).name for p in pet["outputs"]) == sorted(OUTPUT_FILES)
    assert sorted(Path(p).name for p in mri["outputs"]) == ["t1.nii.gz", "t1_to_ct", "t2.nii.gz", "t2_to_ct"]
    assert all((workdir / p).exists() for p in pet["outputs"] + mri["outputs"])
    # what only the registration knows, for the QC and for a user repeating it with the ANTs programs
    for name in ("t1", "t2"):
        record = mri["mr"][name]
        assert record["commands"]["rigid"].startswith("antsRegistration ") and "Rigid[" in record["commands"]["rigid"]
        assert "SyN[" in record["commands"]["syn"] and "<work>" in record["commands"]["syn"]
        assert record["seconds"]["rigid"] > 0 and record["seconds"]["syn"] > 0
        assert record["initialisation"] == "geometry" and record["overlap_scanner_coordinates"] > 0.5
    assert options_from_params(mri["settings"]["options"]) == load_options(demo=True)
    # every rule of the chain logged and was benchmarked
    for rule in ("resample_pet", "register_mri", "registration_qc"):
        assert (workdir / "logs" / rule / f"{PATIENT}.log").is_file()
        assert (workdir / "results" / "benchmarks" / rule / f"{PATIENT}.tsv").is_file()

    report = json.loads((out / "qc.json").read_text())
    assert report["patient"] == PATIENT and report["status"] == "ok" and report["flags"] == []
    assert (out / "qc.png").stat().st_size > 10_000
    assert report["mr"]["t1"]["commands"] == mri["mr"]["t1"]["commands"] and report["settings"]["qc"]["slices"] == 3
    assert "antsApplyTransforms" in report["how_to_reapply"]
    log = (workdir / "logs" / "registration_qc" / f"{PATIENT}.log").read_text()
    assert f"patient {PATIENT}, T1w: landmark TRE" in log


@pytest.mark.slow
def test_rigid_then_syn_recovers_pose_and_deformation(chain):
    report = json.loads((chain[0] / "results" / "registered" / PATIENT / "qc.json").read_text())
    for name in ("t1", "t2"):
        tre, dice = report["mr"][name]["truth"]["tre"], report["mr"][name]["truth"]["gtvt_dice"]
        assert tre["before"]["mean_mm"] > 5.0
        assert tre["syn"]["mean_mm"] < 2.0, (name, tre)
        assert tre["syn"]["mean_mm"] < tre["rigid"]["mean_mm"] < tre["before"]["mean_mm"], (name, tre)
        assert tre["syn"]["max_mm"] < tre["before"]["max_mm"]
        assert dice["syn"] > 0.9 and dice["syn"] >= dice["rigid"] > dice["before"], (name, dice)
        sim, overlap = report["mr"][name]["similarity"], report["mr"][name]["overlap"]
        assert sim["syn"]["mi"] > sim["rigid"]["mi"] > sim["before"]["mi"]
        assert overlap["registered"] > overlap["scanner_coordinates"] > 0.5


@pytest.mark.slow
def test_outputs_are_on_the_ct_grid_and_the_transforms_reapply(chain):
    workdir = chain[0]
    out, imported = workdir / "results" / "registered" / PATIENT, workdir / "results" / "imported" / PATIENT
    truth = workdir / "resources" / "synthetic" / "truth" / PATIENT
    ct = sitk.ReadImage(str(out / "ct.nii.gz"))
    assert (out / "ct.nii.gz").read_bytes() == (imported / "ct.nii.gz").read_bytes()
    assert (out / "labels.nii.gz").read_bytes() == (imported / "labels.nii.gz").read_bytes()
    for name in ("pet", "t1", "t2"):
        image = sitk.ReadImage(str(out / f"{name}.nii.gz"))
        assert image.GetSize() == ct.GetSize() and image.GetPixelID() == sitk.sitkFloat32
        assert np.allclose(image.GetOrigin(), ct.GetOrigin()) and np.allclose(image.GetSpacing(), ct.GetSpacing())
        assert np.allclose(image.GetDirection(), ct.GetDirection())
    pet, ct_in = sitk.ReadImage(str(imported / "pet.nii.gz")), sitk.ReadImage(str(imported / "ct.nii.gz"))
    expected = sitk.Resample(pet, ct_in, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    assert np.allclose(array(out / "pet.nii.gz"), sitk.GetArrayFromImage(expected))

    # what the record says a user can do: reapply the transforms with antspyx and get the same MR
    ants = ar.configure_ants(1, load_options(demo=True).random_seed)  # ants only ever imported through it
    t1 = read_record(out / "mri.json")["mr"]["t1"]
    again = ants.apply_transforms(
        fixed=ants.image_read(str(out / "ct.nii.gz")),
        moving=ants.image_read(str(imported / "t1.nii.gz")),
        transformlist=[str(out / t1["transforms"]["warp"]), str(out / t1["transforms"]["rigid"])],
        interpolator="linear",
    )
    assert np.allclose(again.numpy().transpose(2, 1, 0), array(out / "t1.nii.gz"), atol=1e-3)
    # ... and the inverse: the CT's GTV-T onto the T1 grid matches the MR-space truth
    gtv_ct = ants.image_read(str(truth / "labels.nii.gz")) == 1
    on_mr = ants.apply_transforms(
        fixed=ants.image_read(str(imported / "t1.nii.gz")),
        moving=gtv_ct.astype("float32"),
        transformlist=[str(out / t1["transforms"]["rigid"]), str(out / t1["transforms"]["inverse_warp"])],
        whichtoinvert=[True, False],
        interpolator="linear",
    )
    assert qc.dice(on_mr.numpy() >= 0.5, array(truth / "gtvt_mr.nii.gz").transpose(2, 1, 0)) > 0.85


@pytest.mark.slow
def test_a_qc_number_reruns_the_qc_alone_and_a_registration_number_the_registration_and_its_qc(chain, tmp_path):
    workdir, configs = chain
    target = f"results/registered/{PATIENT}/qc.json"
    assert planned_jobs(snakemake(workdir, "-n", target, *configs).stdout) == {}
    for override, expected in (
        ("registration:\n  qc:\n    slices: 2\n", {"registration_qc": 1}),
        ("registration:\n  syn:\n    gradient_step: 0.25\n", {"register_mri": 1, "registration_qc": 1}),
        ("registration:\n  body_threshold_hu: -350\n", {"resample_pet": 1, "register_mri": 1, "registration_qc": 1}),
    ):
        changed = tmp_path / "changed.yaml"
        changed.write_text(override)
        assert planned_jobs(snakemake(workdir, "-n", target, *configs, str(changed)).stdout) == expected, override


def test_registration_code_holds_no_qc_and_the_qc_code_no_registration_stage():
    """Each rule's code trigger is its script's import closure: editing QC code must not rerun a registration."""
    register = set(import_closure(SCRIPTS / "register_mri.py"))
    pet = set(import_closure(SCRIPTS / "resample_pet.py"))
    check = set(import_closure(SCRIPTS / "registration_qc.py"))
    qc_code = {"hnseg.registration.qc", "hnseg.registration.qc_stage"}
    assert {"hnseg.registration.mri", "hnseg.registration.ants_register", "hnseg.cohort"} <= register
    assert not register & qc_code and not pet & qc_code
    assert "hnseg.registration.mri" not in pet and "hnseg.registration.ants_register" not in pet  # no ANTs for PET
    assert qc_code <= check
    # the QC re-applies transforms and rebuilds the metric's images, but never runs the registration stage
    assert "hnseg.registration.mri" not in check and "hnseg.registration.pet" not in check


# ----------------------------------------------------------------------------------------------- accuracy


def test_rigid_recovers_a_known_rigid_pose(imported, truth, tmp_path):
    """The demo patient's MR drawn again with the deformation switched off: rigid TRE below 1 mm."""
    model = build_model(PATIENT, 2024, "demo")
    pose = replace(model.pose, rbf_amplitudes=tuple((0.0, 0.0, 0.0) for _ in model.pose.rbf_amplitudes))
    model = replace(model, pose=pose)
    t1, _, labels_mr = mr_volumes(model)
    sitk.WriteImage(sitk.Cast(model.mr_grid.image(t1), sitk.sitkFloat32), str(tmp_path / "t1.nii.gz"))
    rigid_truth = tmp_path / "truth"
    rigid_truth.mkdir()
    sitk.WriteImage(model.mr_grid.image((labels_mr == 1).astype(np.uint8)), str(rigid_truth / "gtvt_mr.nii.gz"))
    shutil.copyfile(truth / "labels.nii.gz", rigid_truth / "labels.nii.gz")
    names = sorted(model.anatomy.landmarks)
    ct_mm = np.array([model.anatomy.landmarks[n] for n in names])
    mr_mm = pose.ct_to_mr(ct_mm)[0]
    landmarks = {n: {"ct_mm": c.tolist(), "mr_mm": m.tolist()} for n, c, m in zip(names, ct_mm, mr_mm, strict=True)}
    (rigid_truth / "landmarks.json").write_text(json.dumps({"landmarks": landmarks}))

    out = tmp_path / "out"
    copy_ct(PATIENT, imported / "ct.nii.gz", imported / "labels.nii.gz", out)
    record = register_mri(PATIENT, imported / "ct.nii.gz", {"t1": tmp_path / "t1.nii.gz"}, out, load_options(demo=True))
    report = registration_qc(PATIENT, record, out, load_qc_options(demo=True), truth_dir=rigid_truth)
    tre = report["mr"]["t1"]["truth"]["tre"]
    assert tre["before"]["mean_mm"] > 5.0  # the pose is real: 3-5 degrees and 5-15 mm
    assert tre["rigid"]["mean_mm"] < 1.0 and tre["rigid"]["max_mm"] < 1.0, tre["rigid"]
    assert report["mr"]["t1"]["truth"]["gtvt_dice"]["rigid"] > 0.9


# ----------------------------------------------------------------------------------------------- determinism

RUN = """
import json, sys
from hnseg.registration.mri import register_mri
from hnseg.registration.options import options_from_params
params, ct, t1, out = json.loads(sys.argv[1]), *sys.argv[2:]
record = register_mri("SYN001", ct, {"t1": t1}, out, options_from_params(params))
print(json.dumps(record))
"""


def test_deterministic_runs_are_bit_identical(imported, tmp_path):
    params = json.dumps(fast_params())
    runs = [tmp_path / "a", tmp_path / "b"]
    args = [params, str(imported / "ct.nii.gz"), str(imported / "t1.nii.gz")]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RUN, *args, str(run)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for run in runs
    ]
    records = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        records.append(json.loads(out.strip().splitlines()[-1]))
    a, b = runs
    assert (a / "t1_to_ct" / "rigid.mat").read_bytes() == (b / "t1_to_ct" / "rigid.mat").read_bytes()
    for f in ("t1.nii.gz", "t1_to_ct/warp.nii.gz", "t1_to_ct/inverse_warp.nii.gz"):
        assert np.array_equal(array(a / f), array(b / f)), f
    ra, rb = (r["mr"]["t1"] for r in records)
    assert ra["working_grid_crop"] == rb["working_grid_crop"] and ra["commands"]["rigid"] == rb["commands"]["rigid"]
    assert records[0]["settings"]["itk_threads"] == 1


def test_threads_cannot_change_once_ants_runs():
    ar.configure_ants(1, 42)
    with pytest.raises(RuntimeError, match="separate process"):
        ar.configure_ants(2, 42)


# ----------------------------------------------------------------------------------------------- records, flags, errors


def _shifted(src: Path, dst: Path, shift_mm: tuple[float, float, float]) -> Path:
    image = sitk.ReadImage(str(src))
    image.SetOrigin(tuple(o + s for o, s in zip(image.GetOrigin(), shift_mm, strict=True)))
    sitk.WriteImage(image, str(dst))
    return dst


def _ok_record(path: Path, stage: str) -> Path:
    path.write_text(json.dumps({"patient": PATIENT, "stage": stage, "status": OK}))
    return path


def test_an_mr_off_the_ct_that_cannot_start_is_a_failed_record_without_stale_volumes(imported, tmp_path):
    """Trusting the scanner coordinates, a registration of an MR 600 mm away cannot even start: a failed record
    naming patient, file and fix; what an earlier run left in the folder is gone, so nothing downstream takes it for
    this run's output."""
    far = _shifted(imported / "t1.nii.gz", tmp_path / "t1_far.nii.gz", (0.0, 0.0, 600.0))
    out = tmp_path / "registered"
    outputs = output_paths(out, ["t1"])
    (out / "t1_to_ct").mkdir(parents=True)
    (out / "t1.nii.gz").write_bytes(b"from an earlier run")
    record = run_patient_stage(
        out / "mri.json", tmp_path / "register_mri.log", PATIENT, "register_mri", register_mri,
        PATIENT, imported / "ct.nii.gz", {"t1": far}, out, options_from_params(fast_params(initialisation="geometry")),
        outputs=outputs,
        requires={"import_ct": _ok_record(tmp_path / "import.json", "import_ct"),
                  "import_mri": _ok_record(tmp_path / "mri_import.json", "import_mri")},
    )  # fmt: skip
    assert record["status"] == FAILED and read_record(out / "mri.json") == record
    assert record["reason"].startswith(f"patient {PATIENT}, T1w ") and "t1_far" in record["reason"]
    assert "does not overlap" in record["reason"] and "registration.initialisation" in record["reason"]
    assert not any(p.exists() for p in outputs)
    assert "does not overlap" in (tmp_path / "register_mri.log").read_text()


def test_an_mr_off_the_ct_registers_from_the_body_centres_and_the_qc_flags_it(imported, tmp_path, caplog):
    """`auto` starts from the aligned body centres: the registration succeeds, and the QC flags the start (a
    finding in qc.json and the QC's log, not a failure)."""
    far = _shifted(imported / "t1.nii.gz", tmp_path / "t1_far.nii.gz", (0.0, 0.0, 600.0))
    out = tmp_path / "registered"
    copy_ct(PATIENT, imported / "ct.nii.gz", imported / "labels.nii.gz", out)
    record = register_mri(PATIENT, imported / "ct.nii.gz", {"t1": far}, out, options_from_params(fast_params()))
    assert record["mr"]["t1"]["initialisation"] == "center_of_mass"
    assert record["mr"]["t1"]["overlap_scanner_coordinates"] == 0.0
    with caplog.at_level(logging.WARNING, logger="hnseg.registration"):
        report = registration_qc(PATIENT, record, out, load_qc_options(demo=True))
    t1 = report["mr"]["t1"]
    assert report["status"] == "flagged" and report["flags"] == ["t1: mr_outside_ct_coordinates"]
    assert t1["overlap"]["scanner_coordinates"] == 0.0 and t1["overlap"]["registered"] > 0.8  # it lands on the CT
    assert any(f"patient {PATIENT}" in r.getMessage() and "overlaps the CT body by 0.00" in r.getMessage()
               for r in caplog.records)  # fmt: skip
    assert json.loads((out / "qc.json").read_text())["flags"] == report["flags"]


def test_a_failed_import_leaves_the_registration_not_run_and_the_qc_refuses(tmp_path):
    failed = tmp_path / "mri_import.json"
    failed.write_text(json.dumps({"patient": PATIENT, "stage": "import_mri", "status": FAILED, "reason": "no MR"}))
    out = tmp_path / "registered"
    out.mkdir()
    (out / "t2.nii.gz").write_bytes(b"stale")
    calls = []
    record = run_patient_stage(
        out / "mri.json", tmp_path / "log", PATIENT, "register_mri", lambda *a: calls.append(a),
        outputs=output_paths(out, ["t1", "t2"]),
        requires={"import_ct": _ok_record(tmp_path / "import.json", "import_ct"), "import_mri": failed},
    )  # fmt: skip
    assert record["status"] == NOT_RUN and "import_mri" in record["reason"] and not calls
    assert not (out / "t2.nii.gz").exists()
    with pytest.raises(InputError, match=rf"patient {PATIENT}: register_mri is 'not_run' .*needs import_mri"):
        require_ok(PATIENT, {"register_mri": record, "resample_pet": {"status": OK}})


def test_a_pet_off_the_ct_is_a_failed_record_without_stale_volumes(imported, tmp_path):
    far = _shifted(imported / "pet.nii.gz", tmp_path / "pet_far.nii.gz", (0.0, 0.0, -900.0))
    with pytest.raises(InputError, match=rf"patient {PATIENT}: the PET .*pet_far.* does not overlap the CT body"):
        resample_pet(PATIENT, imported / "ct.nii.gz", imported / "labels.nii.gz", far, tmp_path / "direct", -400.0)
    out = tmp_path / "registered"
    outputs = [out / name for name in OUTPUT_FILES]
    record = run_patient_stage(
        out / "pet.json", tmp_path / "log", PATIENT, "resample_pet", resample_pet,
        PATIENT, imported / "ct.nii.gz", imported / "labels.nii.gz", far, out, -400.0, outputs=outputs,
        requires={"import_ct": _ok_record(tmp_path / "import.json", "import_ct"),
                  "import_pet": _ok_record(tmp_path / "pet_import.json", "import_pet")},
    )  # fmt: skip
    assert record["status"] == FAILED and "does not overlap the CT body" in record["reason"]
    assert not any(p.exists() for p in outputs)  # copy_ct had written the CT and labels before the PET was refused


def test_labels_off_the_ct_grid_are_refused(imported, tmp_path):
    moved = _shifted(imported / "labels.nii.gz", tmp_path / "labels.nii.gz", (2.0, 0.0, 0.0))
    with pytest.raises(InputError, match=rf"patient {PATIENT}: the labels .* are not on the CT grid"):
        copy_ct(PATIENT, imported / "ct.nii.gz", moved, tmp_path / "out")


@pytest.mark.slow
def test_qc_refuses_a_ct_that_is_not_the_one_registered(chain, tmp_path):
    out = chain[0] / "results" / "registered" / PATIENT
    record = read_record(out / "mri.json")
    other = tmp_path / "registered"
    other.mkdir()
    shutil.copyfile(out / "labels.nii.gz", other / "labels.nii.gz")
    _shifted(out / "ct.nii.gz", other / "ct.nii.gz", (0.0, 0.0, 4.0))
    with pytest.raises(InputError, match=rf"patient {PATIENT}: the CT .* is not the CT the registration ran on"):
        registration_qc(PATIENT, record, other, load_qc_options(demo=True))


def test_flags_for_no_overlap_and_worse_similarity():
    opts = load_qc_options()
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


def test_options_are_checked_name_the_key_and_round_trip_through_the_record():
    params = demo_params()
    params["syn"]["shrink_factors"] = [4, 2, 1]
    with pytest.raises(ConfigError, match=r"registration\.syn.*one entry per resolution level"):
        options_from_params(params)
    with pytest.raises(ConfigError, match=r"registration\.initialisation.*'guess'"):
        options_from_params(demo_params(initialisation="guess"))
    with pytest.raises(ConfigError, match=r"registration\.ct_clip_hu"):
        options_from_params(demo_params(ct_clip_hu=[600, -200]))
    with pytest.raises(ConfigError, match=r"registration\.qc\.mr_body_fraction"):
        options_from_params(demo_params(qc={"min_overlap": 0.5}))
    opts = load_options(deterministic=False, threads=2)
    assert opts.itk_threads == 2 and load_options().itk_threads == 1
    # the record keeps the options in the config's shape: the QC rebuilds exactly what the registration used
    opts = options_from_params(demo_params())
    assert options_from_params(json.loads(json.dumps(opts.to_json()))) == opts
    # register_mri's params leave out the QC-only keys, so changing them reruns the QC alone
    section = demo_params()
    assert set(registration_params(section)["qc"]) == set(REGISTRATION_QC_KEYS) < set(section["qc"])
    assert options_from_params(registration_params(section)) == opts
