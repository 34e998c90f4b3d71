"""`hnseg cohort from-hecktor` and `from-nnunet`: the sheet they write reads back (paths relative to it) and bad
layouts and unrecognised nnU-Net channel names fail with what was found and how to fix it."""

import json

import numpy as np
import pytest

from hnseg.cli import main
from hnseg.config import read_patients_sheet
from hnseg.errors import InputError
from hnseg.nifti.layouts import channel_volumes, parse_channel_mapping


def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_from_hecktor_writes_a_sheet_that_reads_back(tmp_path, capsys):
    root = tmp_path / "hecktor2022"
    for case in ("CHUM-001", "CHUP-010"):
        touch(root / "imagesTr" / f"{case}__CT.nii.gz")
        touch(root / "labelsTr" / f"{case}.nii.gz")
    touch(root / "imagesTr" / "CHUM-001__PT.nii.gz")
    touch(root / "imagesTr" / "MDA-100__CT.nii.gz")  # no labels
    sheet = tmp_path / "config" / "patients.tsv"
    assert main(["cohort", "from-hecktor", str(root), "--out", str(sheet)]) == 0
    out = capsys.readouterr().out
    assert f"patients sheet with 2 patients written to {sheet}" in out
    assert "left out: MDA-100: no labelsTr/MDA-100.nii.gz" in out
    assert "CHUP-010: no PET (CHUP-010__PT.nii.gz)" in out
    assert sheet.read_text().splitlines()[0] == "patient\tct\tpet\tlabels"
    assert "../hecktor2022/imagesTr/CHUM-001__CT.nii.gz" in sheet.read_text()  # relative to the sheet
    rows = {r["patient"]: r for r in read_patients_sheet(sheet)}
    assert rows["CHUM-001"]["ct"] == str(tmp_path / "hecktor2022" / "imagesTr" / "CHUM-001__CT.nii.gz")
    assert rows["CHUM-001"]["pet"].endswith("CHUM-001__PT.nii.gz") and "pet" not in rows["CHUP-010"]


def test_from_hecktor_says_what_a_hecktor_folder_holds(tmp_path, capsys):
    (tmp_path / "x").mkdir()
    touch(tmp_path / "x" / "images" / "a.nii.gz")
    assert main(["cohort", "from-hecktor", str(tmp_path / "x")]) == 2
    assert "is not a HECKTOR 2022 folder: it needs imagesTr/<id>__CT.nii.gz" in capsys.readouterr().err


def nnunet_dataset(root, channel_names, labels=None):
    root.mkdir(parents=True)
    labels = labels or {"background": 0, "GTVp": 1, "GTVn": 2}
    dataset = {"channel_names": channel_names, "labels": labels, "numTraining": 2, "file_ending": ".nii.gz"}
    (root / "dataset.json").write_text(json.dumps(dataset))
    for case in ("hn_000", "hn_001"):
        for channel in channel_names:
            touch(root / "imagesTr" / f"{case}_{int(channel):04d}.nii.gz")
        touch(root / "labelsTr" / f"{case}.nii.gz")
    return root


def test_from_nnunet_recognises_the_usual_channel_names(tmp_path, capsys):
    root = nnunet_dataset(tmp_path / "Dataset100_HNC", {"0": "CT", "1": "PT", "2": "T1w", "3": "T2"})
    sheet = tmp_path / "patients.tsv"
    assert main(["cohort", "from-nnunet", str(root), "--out", str(sheet)]) == 0
    out = capsys.readouterr().out
    assert "channels: 0 'CT' -> ct, 1 'PT' -> pet, 2 'T1w' -> t1, 3 'T2' -> t2" in out
    assert "label values: gtv_t 1, gtv_n 2" in out
    rows = read_patients_sheet(sheet)
    assert [r["patient"] for r in rows] == ["hn_000", "hn_001"]
    assert rows[0]["t2"].endswith("imagesTr/hn_000_0003.nii.gz") and rows[0]["labels"].endswith(
        "labelsTr/hn_000.nii.gz"
    )


def test_from_nnunet_needs_a_mapping_for_free_text_channel_names(tmp_path, capsys):
    root = nnunet_dataset(tmp_path / "Dataset101_X", {"0": "CT", "1": "noNorm", "2": "zscore"})
    assert main(["cohort", "from-nnunet", str(root), "--out", str(tmp_path / "s.tsv")]) == 2
    err = capsys.readouterr().err
    assert (
        "nnU-Net channel names not recognised: 1='noNorm', 2='zscore' (channels: 0='CT', 1='noNorm', 2='zscore')" in err
    )
    assert "say what each channel is, e.g. --channels 0=ct,1=pet,2=pet" in err
    assert not (tmp_path / "s.tsv").exists()
    args = ["cohort", "from-nnunet", str(root), "--out", str(tmp_path / "s.tsv"), "--channels", "1=pet,2=skip"]
    assert main(args) == 0
    rows = read_patients_sheet(tmp_path / "s.tsv")
    assert rows[0]["pet"].endswith("hn_000_0001.nii.gz") and "t1" not in rows[0]


@pytest.mark.parametrize(
    ("names", "mapping", "message"),
    [
        ({"0": "PET", "1": "T1"}, {}, r"no channel is the CT .* map it, e.g. --channels 0=ct"),
        ({"0": "CT", "1": "CT"}, {}, r"channels \{'ct': \[0, 1\]\} would be the same volume"),
        ({"0": "CT"}, {3: "pet"}, r"--channels maps channel\(s\) \[3\], which dataset.json does not have"),
    ],
)
def test_channel_mapping_errors(names, mapping, message):
    with pytest.raises(InputError, match=message):
        channel_volumes(names, mapping)


def test_channel_mapping_syntax():
    assert parse_channel_mapping("0=CT, 1=pet") == {0: "ct", 1: "pet"}
    with pytest.raises(InputError, match=r"each item is INDEX=VOLUME with VOLUME one of ct, pet, t1, t2, skip"):
        parse_channel_mapping("0=flair")
    assert np.array_equal(sorted(channel_volumes({"0": "ct", "1": "SUV"}).values()), ["ct", "pet"])
