"""The suite's own setup (tests/conftest.py): it stops at its start, saying why, when its temporary files cannot fit."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TEMP_GIB_NEEDED

ROOT = Path(__file__).resolve().parents[1]


def run_pytest(*args: str) -> subprocess.CompletedProcess:
    """pytest on this repository's tests in a fresh process, as a session of its own: without the variables by which
    pytest-xdist tells a worker (`make test` runs this file in one) that it is not the controller."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("PYTEST_XDIST")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", *args, "-p", "no:cacheprovider"],
        cwd=ROOT, env=env, check=False, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.fixture
def small_disk(tmp_path):
    """A 64 MiB file system of its own (tmpfs; the tests run as root, on CI too), unmounted at the end."""
    mount_point = tmp_path / "small_disk"
    mount_point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount_point)], check=True)
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=True)


def test_a_disk_too_small_for_the_temporary_files_stops_the_session_at_its_start(small_disk):
    result = run_pytest("tests/test_split.py", f"--basetemp={small_disk / 'session'}")
    output = result.stdout + result.stderr
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, output
    assert f"the tests need about {TEMP_GIB_NEEDED} GiB free for their temporary files under {small_disk}" in output
    assert "0.1 GiB are free there" in output and "--basetemp=FOLDER" in output
    assert " passed" not in output and not (small_disk / "session").exists()


def test_the_header_names_the_temporary_folder_and_its_free_space(tmp_path):
    result = run_pytest("tests/test_split.py::test_paper_counts_for_661", f"--basetemp={tmp_path / 'session'}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"temporary files: under {tmp_path.resolve()}, " in result.stdout
    assert f"GiB free (the suite needs about {TEMP_GIB_NEEDED} GiB)" in result.stdout
