"""Fixtures shared across test files, and how `make test` spreads the tests over two workers."""

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from workflow_run import build_complete_run, build_ct_only_run, shared_run

# The most the suite's temporary files took at once: 4.2 GiB, in `make test` on 2026-12-05 (the shared workflow runs,
# the modules' own runs, and the copies that two tests change side by side; benchmarks/RESULTS.md). Below this much
# free space the session stops at its start, instead of failing in dozens of tests with "No space left on device".
TEMP_GIB_NEEDED = 4.5


def _session_temp(tmp_path_factory):
    """The session's temporary folder, the one every pytest-xdist worker's own folder is in."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if "PYTEST_XDIST_WORKER" in os.environ else base


@pytest.fixture(scope="session")
def complete_run(tmp_path_factory):
    """The whole study, run once for real on a six-patient cohort with two bad patients (see workflow_run.COHORT)."""
    return shared_run(_session_temp(tmp_path_factory), "complete_run", build_complete_run)


@pytest.fixture(scope="session")
def ct_only_run(tmp_path_factory):
    """The whole study, run once for real on three patients with CT and RTSTRUCT only (workflow_run.CT_ONLY_COHORT),
    every process it started logged (its `workdir / "processes.jsonl"`)."""
    return shared_run(_session_temp(tmp_path_factory), "ct_only_run", build_ct_only_run)


WORKFLOW_RUNS = ("complete_run", "ct_only_run")


def _temp_root(config) -> Path:
    """The folder the session's temporary files go under: --basetemp, or pytest's default root in the system's
    temporary folder."""
    given = config.option.basetemp or os.environ.get("PYTEST_DEBUG_TEMPROOT") or tempfile.gettempdir()
    folder = Path(given).resolve()
    while not folder.exists():  # --basetemp names a folder pytest makes
        folder = folder.parent
    return folder


def _free_gib(folder: Path) -> float:
    return shutil.disk_usage(folder).free / 2**30


def pytest_report_header(config):
    root = _temp_root(config)
    return (
        f"temporary files: under {root}, {_free_gib(root):.1f} GiB free (the suite needs about {TEMP_GIB_NEEDED} GiB)"
    )


def pytest_sessionstart(session):
    """Stop at once when the temporary files cannot fit (in the controller; pytest-xdist's workers share its disk)."""
    if "PYTEST_XDIST_WORKER" in os.environ:
        return
    root = _temp_root(session.config)
    free = _free_gib(root)
    if free < TEMP_GIB_NEEDED:
        pytest.exit(
            f"the tests need about {TEMP_GIB_NEEDED} GiB free for their temporary files under {root}, and "
            f"{free:.1f} GiB are free there. Free some space, or give pytest a folder on a roomier disk with "
            "pytest's --basetemp=FOLDER.",
            returncode=pytest.ExitCode.USAGE_ERROR,
        )


def pytest_collection_modifyitems(items):
    """A test that needs a workflow run is slow (minutes), whether or not its file says so.

    `make test` runs two pytest-xdist workers, `--dist loadfile --no-loadscope-reorder`: each file runs whole on one
    worker (its module fixtures are built once), files are handed out in the order of the items, and the workflow
    runs are built once for both workers (workflow_run.shared_run). The order keeps both workers busy and rarely lets
    one wait for a run the other is building:
    0. the first file that needs the complete run (the longest build), on the first worker;
    1. the files that need the CT-only run, then the other slow files, on the second worker meanwhile;
    2. the other files that need the complete run, by when it is built;
    3. the quick files, to fill both workers at the end."""
    needs_complete = {_file(item) for item in items if "complete_run" in _fixtures(item)}
    first = next((_file(item) for item in items if _file(item) in needs_complete), None)
    needs_ct_only = {_file(item) for item in items if "ct_only_run" in _fixtures(item)}
    slow = set()
    for item in items:
        if set(WORKFLOW_RUNS) & _fixtures(item):
            item.add_marker(pytest.mark.slow)
        if item.get_closest_marker("slow"):
            slow.add(_file(item))

    def start_order(item) -> int:
        path = _file(item)
        if path == first:
            return 0
        if path in needs_ct_only:
            return 1
        if path in slow - needs_complete:
            return 2
        return 3 if path in needs_complete else 4

    items.sort(key=start_order)


def _file(item) -> str:
    return item.nodeid.split("::")[0]


def _fixtures(item) -> set[str]:
    return set(getattr(item, "fixturenames", ()))
