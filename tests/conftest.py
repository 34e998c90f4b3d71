"""Fixtures shared across test files, and how `make test` spreads the tests over two workers."""

import os

import pytest
from workflow_run import build_complete_run, build_ct_only_run, shared_run


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
