"""Fixtures shared across test files."""

import pytest
from workflow_run import build_complete_run


@pytest.fixture(scope="session")
def complete_run(tmp_path_factory):
    """The whole study, run once for real on a six-patient cohort with two bad patients (see workflow_run.COHORT)."""
    return build_complete_run(tmp_path_factory.mktemp("complete_run"))


def pytest_collection_modifyitems(items):
    """A test that needs the complete run is slow (minutes), whether or not its file says so."""
    for item in items:
        if "complete_run" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
