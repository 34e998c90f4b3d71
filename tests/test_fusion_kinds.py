"""Fusion kinds as data: recipes from config, the volumes each reads, the stages its branch needs, a CT-PET fusion
composed by config alone, the paper's two unchanged, and nnU-Net's channels from the training set's volumes."""

import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk

from hnseg.cohort import BRANCH_STAGES, OK, build_cohort, nnunet_volumes, stages_for
from hnseg.config import load_config, validate_config
from hnseg.errors import ConfigError, InputError
from hnseg.fusion import PAPER_FUSIONS, fuse_volume, fuse_volume_files, fusion_recipes, fusion_volumes
from hnseg.nnunet.dataset import channels, make_dataset_json
from hnseg.report.methods import label, ordered, short_label

CT_WINDOW = {"level": 40, "width": 400}


def test_the_paper_config_defines_its_two_fusions_and_the_list_form_still_works():
    config = load_config("config/config.yaml")
    assert fusion_recipes(config["fusion"]["kinds"]) == PAPER_FUSIONS
    assert fusion_recipes(["ct", "multimodal"]) == PAPER_FUSIONS
    assert list(config["fusion"]["kinds"]) == ["ct", "multimodal"]  # what code that needs the names iterates


def test_a_layered_config_adds_a_fusion_and_drops_one_with_null():
    recipes = fusion_recipes({**PAPER_FUSIONS, "multimodal": None, "ctpet": {"r": "ct", "g": "pet", "b": "ct"}})
    assert list(recipes) == ["ct", "ctpet"] and fusion_volumes(recipes["ctpet"]) == ("ct", "pet")
    with pytest.raises(InputError, match=r"fusion.kinds.x: unknown source\(s\) \{'g': 'suv'\}"):
        fusion_recipes({"x": {"r": "ct", "g": "suv", "b": "ct"}})
    with pytest.raises(InputError, match="defines no fusion"):
        fusion_recipes({"ct": None})


def test_the_schema_names_the_bad_key_of_a_fusion(tmp_path):
    config = load_config("config/config.yaml")
    config["fusion"]["kinds"] = {"ctpet": {"r": "ct", "g": "pet", "b": "flair"}}
    with pytest.raises(ConfigError, match=r"'fusion.kinds.ctpet.b': 'flair' is not allowed; allowed values: 'ct'"):
        validate_config(config)
    config["fusion"]["kinds"] = {"nnunet": {"r": "ct", "g": "ct", "b": "ct"}}
    with pytest.raises(ConfigError, match=r"'nnunet' is reserved"):
        validate_config(config)


def test_volumes_and_stages_of_each_branch():
    assert fusion_volumes(PAPER_FUSIONS["multimodal"]) == ("ct", "pet", "t1", "t2")
    assert fusion_volumes({"r": "t2", "g": "t2", "b": "ct"}) == ("ct", "t2")
    assert stages_for(("ct", "pet")) == ("import_ct", "import_pet", "resample_pet")
    assert stages_for(("ct", "t1")) == ("import_ct", "import_mri", "register_mri")
    assert BRANCH_STAGES["multimodal"] == ("import_ct", "import_pet", "resample_pet", "import_mri", "register_mri")
    assert BRANCH_STAGES["ct"] == ("import_ct",) and BRANCH_STAGES["nnunet"] == BRANCH_STAGES["multimodal"]


def test_a_ct_pet_fusion_by_recipe_and_the_paper_fusions_unchanged():
    rng = np.random.default_rng(3)
    ct = rng.uniform(-300, 400, (2, 5, 6))
    pet = rng.uniform(0, 8, (2, 5, 6))
    t1, t2 = rng.uniform(1, 500, (2, 2, 5, 6))
    ctpet = fuse_volume({"r": "ct", "g": "pet", "b": "ct"}, ct, CT_WINDOW, pet_suv=pet, suv_range=(0.0, 6.0))
    paper = fuse_volume("multimodal", ct, CT_WINDOW, pet_suv=pet, suv_range=(0.0, 6.0), t1=t1, t2=t2)
    assert np.array_equal(ctpet[..., :2], paper[..., :2]) and np.array_equal(ctpet[..., 2], ctpet[..., 0])
    assert np.array_equal(fuse_volume(PAPER_FUSIONS["multimodal"], ct, CT_WINDOW, pet_suv=pet, t1=t1, t2=t2), paper)
    with pytest.raises(InputError, match=r"the R = CT, G = PET, B = CT fusion needs PET on the CT grid"):
        fuse_volume({"r": "ct", "g": "pet", "b": "ct"}, ct, CT_WINDOW)


def test_fusing_the_volume_files_equals_fusing_the_volumes(tmp_path):
    rng = np.random.default_rng(4)
    volumes = {"ct": rng.uniform(-300, 400, (3, 5, 6)), "pet": rng.uniform(0, 8, (3, 5, 6))}
    volumes |= dict(zip(("t1", "t2"), rng.uniform(1, 500, (2, 3, 5, 6)), strict=True))
    files = {}
    for name, volume in volumes.items():
        files[name] = tmp_path / f"{name}.nii.gz"
        sitk.WriteImage(sitk.GetImageFromArray(volume.astype(np.float32)), str(files[name]))
    stored = {name: volume.astype(np.float32) for name, volume in volumes.items()}
    windows = {"suv_range": (0.0, 6.0), "mri_percentiles": (0.5, 99.5)}
    paper = fuse_volume(
        "multimodal", stored["ct"], CT_WINDOW, pet_suv=stored["pet"], t1=stored["t1"], t2=stored["t2"], **windows
    )
    assert np.array_equal(fuse_volume_files("multimodal", files, CT_WINDOW, **windows), paper)
    assert np.array_equal(
        fuse_volume_files("ct", {"ct": files["ct"]}, CT_WINDOW, **windows), fuse_volume("ct", stored["ct"], CT_WINDOW)
    )
    # the T1w and T2w files the CT-PET fusion does not read are left alone, and the SUV range reaches the PET window
    ctpet = {"r": "ct", "g": "pet", "b": "ct"}
    expected = fuse_volume(ctpet, stored["ct"], CT_WINDOW, pet_suv=stored["pet"], suv_range=(0.0, 4.0))
    assert np.array_equal(fuse_volume_files(ctpet, files, CT_WINDOW, **windows | {"suv_range": (0.0, 4.0)}), expected)
    assert not np.array_equal(fuse_volume_files(ctpet, files, CT_WINDOW, **windows), expected)
    with pytest.raises(InputError, match=r"the multimodal fusion needs PET on the CT grid"):
        fuse_volume_files("multimodal", {"ct": files["ct"], "t1": files["t1"], "t2": files["t2"]}, CT_WINDOW, **windows)
    with pytest.raises(InputError, match=r"fusion inputs \['labels'\] are not volumes; give ct, pet, t1, t2"):
        fuse_volume_files("ct", {"ct": files["ct"], "labels": files["pet"]}, CT_WINDOW, **windows)


def _records(statuses):
    return {stage: {"status": status} for stage, status in statuses.items()}


def test_nnunet_trains_on_what_every_training_patient_has():
    everything = dict.fromkeys(("import_ct", "import_pet", "resample_pet", "import_mri", "register_mri"), OK)
    no_mr = {**everything, "import_mri": "failed", "register_mri": "not_run"}
    bad_ct = {**everything, "import_ct": "failed"}
    subsets = {"A": "train", "B": "val", "C": "test", "D": "train"}
    paper = {"A": _records(everything), "B": _records(everything), "C": _records(no_mr), "D": _records(bad_ct)}
    assert nnunet_volumes(subsets, paper) == ("ct", "pet", "t1", "t2")  # a test patient without MR changes nothing
    hecktor = {p: _records(no_mr) for p in subsets}
    assert nnunet_volumes(subsets, hecktor) == ("ct", "pet")
    assert channels("box", ("ct", "pet")) == ("CT", "PET", "box")
    dataset = make_dataset_json("nobox", 3, volumes=("ct", "pet"))
    assert dataset["channel_names"] == {"0": "CT", "1": "zscore"} and dataset["modalities"].endswith("CT, PET")


def test_a_training_patient_without_mr_drops_it_from_nnunet_with_a_warning_unless_the_volumes_are_pinned(
    tmp_path, caplog
):
    everything = dict.fromkeys(("import_ct", "import_pet", "resample_pet", "import_mri", "register_mri"), OK)
    no_mr = {**everything, "import_mri": "failed", "register_mri": "not_run"}
    subsets = {"A": "train", "B": "train", "C": "val", "D": "test"}
    records = {p: _records(no_mr if p == "B" else everything) for p in subsets}
    paths = {}
    for patient, stages in records.items():
        paths[patient] = []
        for stage, record in stages.items():
            path = tmp_path / patient / f"{stage}.json"
            path.parent.mkdir(exist_ok=True)
            path.write_text(json.dumps({**record, "patient": patient, "stage": stage}))
            paths[patient].append(path)
    methods = ["nnunet_nobox"]

    def nnunet_row(volumes):
        build_cohort(subsets, paths, ["nnunet"], methods, ["test"], tmp_path / "c.tsv", tmp_path / "m.tsv",
                     branch_volumes={"nnunet": volumes})  # fmt: skip
        with open(tmp_path / "m.tsv", newline="") as fh:
            plan = next(csv.DictReader(fh, delimiter="\t"))
        with open(tmp_path / "c.tsv", newline="") as fh:
            left_out = {row["patient"] for row in csv.DictReader(fh, delimiter="\t") if "nnunet" not in row["branches"]}
        return plan["inputs"], plan["n_train"], left_out

    with caplog.at_level("WARNING", logger="hnseg.cohort"):
        assert nnunet_row("auto") == ("ct,pet", "2", set())  # everyone trains, on what everyone has
    assert "nnU-Net trains without T1w and T2w for everyone: 1 of 3 train and val patients lack it (B)" in caplog.text
    # pinned: the four channels stay, and the patient without MR is left out of nnU-Net
    assert nnunet_row(["ct", "pet", "t1", "t2"]) == ("ct,pet,t1,t2", "1", {"B"})


def test_report_labels_and_orders_the_methods_of_any_fusion():
    methods = ["nnunet_box", "litemedsam_finetuned_ctpet", "litemedsam_zeroshot_ct", "litemedsam_zeroshot_ctpet"]
    assert ordered(methods) == [
        "litemedsam_zeroshot_ct", "nnunet_box", "litemedsam_zeroshot_ctpet", "litemedsam_finetuned_ctpet",
    ]  # fmt: skip
    assert label("litemedsam_finetuned_ctpet") == "LiteMedSAM fine-tuned, ctpet"
    assert short_label("litemedsam_zeroshot_ctpet") == "ZS ctpet" and short_label("litemedsam_zeroshot_ct") == "ZS CT"
