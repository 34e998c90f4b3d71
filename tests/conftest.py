"""Fixtures shared across test files."""

import pytest
from workflow_run import build_complete_run, build_ct_only_run


@pytest.fixture(scope="session")
def complete_run(tmp_path_factory):
    """The whole study, run once for real on a six-patient cohort with two bad patients (see workflow_run.COHORT)."""
    return build_complete_run(tmp_path_factory.mktemp("complete_run"))


@pytest.fixture(scope="session")
def ct_only_run(tmp_path_factory):
    """The whole study, run once for real on three patients with CT and RTSTRUCT only (workflow_run.CT_ONLY_COHORT),
    every process it started logged (its `workdir / "processes.jsonl"`)."""
    return build_ct_only_run(tmp_path_factory.mktemp("ct_only_run"))


WORKFLOW_RUNS = ("complete_run", "ct_only_run")


def pytest_collection_modifyitems(items):
    """A test that needs a workflow run is slow (minutes), whether or not its file says so."""
    for item in items:
        if set(WORKFLOW_RUNS) & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
