"""nnU-Net baselines: raw datasets, the box channel, the pinned split, a tiny real training and prediction."""

import dataclasses
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from hnseg.errors import InputError
from hnseg.nnunet import dataset_for, dataset_name, dataset_names, model_folder_name, parse_dataset_name
from hnseg.nnunet.dataset import CaseFiles, convert_dataset, image_name, write_test_images
from hnseg.nnunet.run import boxmask, boxmask_predictions, nnunet_environment, plan_and_preprocess, predict, train
from hnseg.prompts import make_prompts, read_prompts, render_box_channel, write_prompts

SHAPE = (32, 48, 48)  # z, y, x
SPACING = (1.5, 1.5, 2.0)  # x, y, z (mm)
ORIGIN = (-36.0, -30.0, 100.0)
TRAIN, VAL, TEST = ["P01", "P02", "P03"], ["P04"], ["P04", "P05"]


@pytest.fixture(autouse=True)
def restore_environment():
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def _image(array, spacing=SPACING, origin=ORIGIN):
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    return image


def make_patient(folder: Path, patient: str, seed: int) -> CaseFiles:
    """CT, PET, T1, T2 and labels on one grid: a bright primary (sphere) and a smaller node; prompts from labels."""
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    centre = np.array([16, 22, 24]) + rng.integers(-3, 4, 3)
    node = np.array([14, 34, 12]) + rng.integers(-2, 3, 3)
    primary = ((zz - centre[0]) / 5.0) ** 2 + ((yy - centre[1]) / 6.0) ** 2 + ((xx - centre[2]) / 6.0) ** 2 < 1
    lymph = ((zz - node[0]) / 3.0) ** 2 + ((yy - node[1]) / 3.0) ** 2 + ((xx - node[2]) / 3.0) ** 2 < 1
    body = ((yy - 24) / 21.0) ** 2 + ((xx - 24) / 22.0) ** 2 < 1
    labels = np.zeros(SHAPE, np.uint8)
    labels[primary], labels[lymph] = 1, 2
    ct = np.where(body, 40, -1000) + 60 * primary + 30 * lymph + rng.normal(0, 10, SHAPE)
    pet = np.where(body, 1.0, 0.0) + 7 * primary + 4 * lymph + rng.normal(0, 0.2, SHAPE)
    t1 = np.where(body, 300.0, 0.0) + 150 * primary + 80 * lymph + rng.normal(0, 10, SHAPE)
    t2 = np.where(body, 200.0, 0.0) + 250 * primary + 120 * lymph + rng.normal(0, 10, SHAPE)
    out = folder / patient
    out.mkdir(parents=True)
    volumes = {"ct": ct.astype(np.int16), "pet": pet.astype(np.float32), "t1": t1.astype(np.float32)}
    volumes |= {"t2": t2.astype(np.float32), "labels": labels}
    for name, array in volumes.items():
        sitk.WriteImage(_image(array), str(out / f"{name}.nii.gz"), useCompression=True)
    prompts = make_prompts(labels, SPACING, patient, seed=7)
    write_prompts(out / "prompts.json", patient, prompts, shape_zyx=SHAPE, spacing_xyz=SPACING, params={})
    return CaseFiles(*(out / f"{n}.nii.gz" for n in ("ct", "pet", "t1", "t2", "labels")), prompts=out / "prompts.json")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    folder = tmp_path_factory.mktemp("registered")
    return {p: make_patient(folder, p, seed=i) for i, p in enumerate(sorted({*TRAIN, *VAL, *TEST}))}


@pytest.fixture(scope="module")
def datasets(cohort, tmp_path_factory):
    """Both raw datasets (nobox 501, box 502) under one nnU-Net root."""
    root = tmp_path_factory.mktemp("nnunet")
    for variant, dataset_id in (("nobox", 501), ("box", 502)):
        convert_dataset(
            root / "raw" / dataset_name(variant, dataset_id), variant, cohort, TRAIN, VAL, TEST, processes=2
        )
    return root


def test_dataset_names():
    assert dataset_name("nobox", 501) == "Dataset501_HNSegNoBox"
    assert parse_dataset_name("Dataset502_HNSegBox") == ("box", 502)
    config = {"dataset_id_nobox": 501, "dataset_id_box": 7}
    assert dataset_for(config, "box") == "Dataset007_HNSegBox"
    assert dataset_names(config) == {"nobox": "Dataset501_HNSegNoBox", "box": "Dataset007_HNSegBox"}
    assert model_folder_name("3d_fullres") == "nnUNetTrainerHnseg__nnUNetPlans__3d_fullres"
    with pytest.raises(ValueError):
        parse_dataset_name("Dataset502_Other")
    with pytest.raises(ValueError):
        dataset_names({"dataset_id_nobox": 5, "dataset_id_box": 5})


def test_conversion_layout_split_json_and_nnunet_integrity_check(datasets, cohort):
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    for variant, dataset_id, n_channels in (("nobox", 501, 4), ("box", 502, 5)):
        folder = datasets / "raw" / dataset_name(variant, dataset_id)
        meta = json.loads((folder / "dataset.json").read_text())
        expected = {"0": "CT", "1": "zscore", "2": "zscore", "3": "zscore"} | (
            {"4": "noNorm"} if n_channels == 5 else {}
        )
        assert meta["channel_names"] == expected
        assert meta["labels"] == {"background": 0, "GTV-T": 1, "GTV-N": 2}
        assert (meta["numTraining"], meta["file_ending"]) == (4, ".nii.gz")
        assert json.loads((folder / "splits_final.json").read_text()) == [{"train": TRAIN, "val": VAL}]
        assert sorted(f.name for f in (folder / "labelsTr").iterdir()) == [f"{p}.nii.gz" for p in [*TRAIN, *VAL]]
        assert sorted(f.name for f in (folder / "imagesTr").iterdir()) == sorted(
            image_name(p, i) for p in [*TRAIN, *VAL] for i in range(n_channels)
        )
        assert sorted(f.name for f in (folder / "imagesTs").iterdir()) == sorted(
            image_name(p, i) for p in TEST for i in range(n_channels)
        )
        # the validation patient is also evaluated: imagesTs holds links to its imagesTr files, not copies
        assert os.path.samefile(folder / "imagesTs" / image_name("P04", 0), folder / "imagesTr" / image_name("P04", 0))
        # every channel and the labels on the CT's exact geometry
        ct = sitk.ReadImage(str(cohort["P05"].ct))
        for i in range(n_channels):
            image = sitk.ReadImage(str(folder / "imagesTs" / image_name("P05", i)))
            assert (image.GetSize(), image.GetSpacing(), image.GetOrigin()) == (
                ct.GetSize(),
                ct.GetSpacing(),
                ct.GetOrigin(),
            )
        verify_dataset_integrity(str(folder), 1)  # nnU-Net's own check: raises on any problem


def test_box_channel_holds_the_perturbed_boxes_of_every_target(datasets, cohort):
    folder = datasets / "raw" / dataset_name("box", 502)
    for patient, sub in (("P01", "imagesTr"), ("P05", "imagesTs")):
        box = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / sub / image_name(patient, 4))))
        prompts = read_prompts(cohort[patient].prompts)
        assert {p.target for p in prompts} == {"GTV-T", "GTV-N"}
        assert np.array_equal(box, render_box_channel(prompts, SHAPE, "box"))
        assert set(np.unique(box)) == {0, 1}
        for p in prompts:
            x0, y0, x1, y1 = p.box
            assert box[p.slice, y0 : y1 + 1, x0 : x1 + 1].all()
        labels = sitk.GetArrayFromImage(sitk.ReadImage(str(cohort[patient].labels)))
        assert box[labels > 0].all()  # every target voxel is inside a box
        assert not box[[z for z in range(SHAPE[0]) if not labels[z].any()]].any()  # no box off the targets' slices


def test_conversion_refuses_a_channel_off_the_ct_grid(cohort, tmp_path):
    shifted = tmp_path / "pet.nii.gz"
    pet = sitk.ReadImage(str(cohort["P02"].pet))
    pet.SetSpacing((1.5, 1.5, 2.5))
    sitk.WriteImage(pet, str(shifted))
    cases = dict(cohort)
    cases["P02"] = CaseFiles(cohort["P02"].ct, shifted, cohort["P02"].t1, cohort["P02"].t2, cohort["P02"].labels)
    with pytest.raises(InputError, match=r"patient P02: .*pet\.nii\.gz is not on the CT grid.*spacing"):
        convert_dataset(tmp_path / "Dataset501_HNSegNoBox", "nobox", cases, TRAIN, VAL, TEST)
    assert not (tmp_path / "Dataset501_HNSegNoBox").exists()
    with pytest.raises(InputError, match="train and the validation"):
        convert_dataset(tmp_path / "Dataset501_HNSegNoBox", "nobox", cohort, TRAIN, ["P01"], TEST)


def test_boxmask_keeps_only_what_is_inside_the_boxes(cohort, tmp_path):
    prompts = read_prompts(cohort["P03"].prompts)
    prediction = np.full(SHAPE, 2, np.uint8)
    masked = boxmask(prediction, prompts)
    inside = render_box_channel(prompts, SHAPE, "box").astype(bool)
    assert inside.any() and (~inside).any()
    assert (masked[~inside] == 0).all() and (masked[inside] == 2).all()
    sitk.WriteImage(_image(prediction), str(tmp_path / "pred.nii.gz"))
    summary = boxmask_predictions(
        [
            {
                "patient": "P03",
                "prediction": tmp_path / "pred.nii.gz",
                "prompts": cohort["P03"].prompts,
                "out": tmp_path / "m.nii.gz",
            }
        ]
    )
    written = sitk.ReadImage(str(tmp_path / "m.nii.gz"))
    assert np.array_equal(sitk.GetArrayFromImage(written), masked) and written.GetSpacing() == SPACING
    assert summary["P03"] == {"voxels_kept": int(inside.sum()), "voxels_removed": int((~inside).sum())}


def test_trainer_is_found_by_name_through_nnunet_ext_trainer(tmp_path):
    nnunet_environment(tmp_path, threads=1)
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    found = recursive_find_trainer_class_by_name("nnUNetTrainerHnseg")
    assert found.__name__ == "nnUNetTrainerHnseg" and issubclass(found, nnUNetTrainer)
    assert os.environ["nnUNet_raw"] == str((tmp_path / "raw").resolve())
    assert os.environ["nnUNet_n_proc_DA"] == "0" and os.environ["nnUNet_compile"] == "f"


@pytest.fixture(scope="module")
def planned(datasets):
    """Both datasets planned and preprocessed (nnU-Net's integrity check, fingerprint, plans); seconds per variant."""
    seconds = {}
    for variant, dataset_id in (("nobox", 501), ("box", 502)):
        start = time.perf_counter()
        plan_and_preprocess(datasets, dataset_id, "3d_fullres", processes=2, foreground_samples=10**6)
        seconds[variant] = time.perf_counter() - start
    return datasets, seconds


def _record_checkpoints(monkeypatch, kill_in_epoch: int | None = None) -> list[tuple[str, int]]:
    """Record every checkpoint nnU-Net writes as (file name, epoch counted from 0), still writing it; with
    kill_in_epoch, stop training like a killed job (a time limit) at the first training step of that epoch."""
    from hnseg.nnunet.trainer import nnUNetTrainerHnseg

    saved: list[tuple[str, int]] = []
    save, step = nnUNetTrainerHnseg.save_checkpoint, nnUNetTrainerHnseg.train_step

    def save_checkpoint(self, filename):
        saved.append((Path(filename).name, self.current_epoch))
        save(self, filename)

    def train_step(self, batch):
        if self.current_epoch == kill_in_epoch:
            raise KeyboardInterrupt("killed")
        return step(self, batch)

    monkeypatch.setattr(nnUNetTrainerHnseg, "save_checkpoint", save_checkpoint)
    monkeypatch.setattr(nnUNetTrainerHnseg, "train_step", train_step)
    return saved


@pytest.mark.slow
def test_checkpoint_interval_and_a_killed_training_resuming_from_its_latest_checkpoint(planned, monkeypatch):
    """nnunet.checkpoint_every reaches nnU-Net: with a checkpoint every 2 epochs, checkpoint_latest is written after
    epoch 1 (counted from 0), not after epoch 0. Killed during epoch 2, the training resumes from that checkpoint at
    epoch 2 and ends with the configured 4 epochs (nnU-Net's default interval of 50 would have left nothing to resume
    from, an interval of 1 a checkpoint after epoch 0 too)."""
    import torch

    root, _ = planned
    fold = root / "results" / dataset_name("nobox", 501) / model_folder_name("3d_fullres") / "fold_0"
    settings = {"threads": 2, "run_key": "interval", "checkpoint_every": 2, "validate": False}
    saved = _record_checkpoints(monkeypatch, kill_in_epoch=2)
    with pytest.raises(KeyboardInterrupt):
        train(root, 501, "3d_fullres", 4, 1, 1, "cpu", **settings)
    assert [epoch for name, epoch in saved if name == "checkpoint_latest.pth"] == [1]
    assert not (fold / "checkpoint_final.pth").exists()
    assert torch.load(fold / "checkpoint_latest.pth", weights_only=False)["current_epoch"] == 2  # the next epoch
    monkeypatch.undo()

    logs_before = set(fold.glob("training_log_*.txt"))
    time.sleep(1)  # nnU-Net names its logs by the second
    saved = _record_checkpoints(monkeypatch)
    resumed = train(root, 501, "3d_fullres", 4, 1, 1, "cpu", **settings)
    assert resumed["epochs"] == 4 and len(resumed["history"]) == 4 and resumed["checkpoint_every"] == 2
    assert saved[-1] == ("checkpoint_final.pth", 3)  # (checkpoint_best.pth whenever the pseudo Dice improves)
    assert "checkpoint_latest.pth" not in {name for name, _ in saved}  # epoch 3 is the last: the final one instead
    assert (fold / "checkpoint_final.pth").is_file() and not (fold / "checkpoint_latest.pth").exists()
    (new_log,) = set(fold.glob("training_log_*.txt")) - logs_before
    text = new_log.read_text()
    assert "Epoch 2" in text and "Epoch 3" in text and "Epoch 1" not in text


@pytest.mark.slow
def test_plan_train_predict_on_cpu(planned, cohort, tmp_path):
    root, plan_seconds = planned
    timings = {f"plan_{variant}": seconds for variant, seconds in plan_seconds.items()}
    for variant, dataset_id in (("nobox", 501), ("box", 502)):
        name = dataset_name(variant, dataset_id)
        assert json.loads((root / "preprocessed" / name / "splits_final.json").read_text()) == [
            {"train": TRAIN, "val": VAL}
        ]
        fingerprint = json.loads((root / "preprocessed" / name / "dataset_fingerprint.json").read_text())
        ct_stats = fingerprint["foreground_intensity_properties_per_channel"]["0"]
        assert 60 < ct_stats["median"] < 140  # the targets' CT values (40 HU body + 30..60 HU)
        plans = json.loads((root / "preprocessed" / name / "nnUNetPlans.json").read_text())
        norms = plans["configurations"]["3d_fullres"]["normalization_schemes"]
        assert norms == [
            "CTNormalization",
            *["ZScoreNormalization"] * 3,
            *(["NoNormalization"] if variant == "box" else []),
        ]

        start = time.perf_counter()
        record = train(root, dataset_id, "3d_fullres", 1, 2, 1, "cpu", threads=2, seed=3, run_key="test")
        timings[f"train_{variant}"] = time.perf_counter() - start
        fold = Path(record["model_dir"]) / "fold_0"
        assert record["epochs"] == 1 and len(record["history"]) == 1 and (fold / "checkpoint_final.pth").is_file()
        assert sorted(p.name for p in (fold / "validation").glob("*.nii.gz")) == ["P04.nii.gz"]  # the split's val
        log_text = "".join(p.read_text() for p in fold.glob("training_log_*.txt"))
        assert "This split has 3 training and 1 validation cases." in log_text
        assert "validation" in record and record["device"] == "cpu"

        # a rerun with the same key finds the finished run: no training, no validation
        start = time.perf_counter()
        again = train(root, dataset_id, "3d_fullres", 1, 2, 1, "cpu", threads=2, seed=3, run_key="test")
        assert again["epochs"] == 1 and again["this_run_validation_s"] is None and again["key"] == record["key"]
        assert time.perf_counter() - start < 30

        cases = [
            {
                "patient": p,
                "images": [root / "raw" / name / "imagesTs" / image_name(p, i) for i in range(4 + (variant == "box"))],
                "reference": cohort[p].labels,
                "out": tmp_path / variant / f"{p}.nii.gz",
            }
            for p in TEST
        ]
        start = time.perf_counter()
        result = predict(root, dataset_id, "3d_fullres", cases, "cpu", threads=2, tta=False)
        timings[f"predict_{variant}"] = time.perf_counter() - start
        assert set(result["patients"]) == set(TEST) and result["overall"]["cases"] == 2
        for p in TEST:
            out, ct = sitk.ReadImage(str(tmp_path / variant / f"{p}.nii.gz")), sitk.ReadImage(str(cohort[p].ct))
            assert out.GetPixelID() == sitk.sitkUInt8
            assert (out.GetSize(), out.GetSpacing(), out.GetOrigin()) == (ct.GetSize(), ct.GetSpacing(), ct.GetOrigin())
            assert set(np.unique(sitk.GetArrayFromImage(out))) <= {0, 1, 2}
    print("nnU-Net tiny timings (s):", {k: round(v, 1) for k, v in timings.items()})


def test_test_images_equal_the_dataset_channels_and_leave_no_partial_folder(datasets, cohort, tmp_path):
    evaluated = {p: cohort[p] for p in TEST}
    files = write_test_images(tmp_path / dataset_name("box", 502), "box", evaluated, processes=2)
    assert sorted(files) == TEST and all(len(f) == 5 for f in files.values())
    assert not (tmp_path / (dataset_name("box", 502) + ".partial")).exists()
    converted = datasets / "raw" / dataset_name("box", 502) / "imagesTs"
    for patient, paths in files.items():
        for i, path in enumerate(paths):
            written, reference = sitk.ReadImage(str(path)), sitk.ReadImage(str(converted / image_name(patient, i)))
            assert written.GetSpacing() == reference.GetSpacing() and written.GetOrigin() == reference.GetOrigin()
            assert np.array_equal(sitk.GetArrayFromImage(written), sitk.GetArrayFromImage(reference))
    broken = dict(evaluated, P05=dataclasses.replace(cohort["P05"], prompts=None))
    with pytest.raises(InputError, match="P05"):
        write_test_images(tmp_path / "again", "box", broken)
    assert not (tmp_path / "again").exists() and not (tmp_path / "again.partial").exists()
