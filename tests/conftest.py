"""Fixtures shared across test files."""

import pytest
from workflow_run import build_complete_run


@pytest.fixture(scope="session")
def complete_run(tmp_path_factory):
    """The whole study, run once for real on a six-patient cohort with two bad patients (see workflow_run.COHORT)."""
    return build_complete_run(tmp_path_factory.mktemp("complete_run"))
