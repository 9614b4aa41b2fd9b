"""Fixtures shared by several test files: things costly to make once per file."""

import pytest

from tests.helpers import train_tiny_run
from tests.method_runs import MethodRuns


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """The run folder of a real one-epoch SimCLR run on shapes (its checkpoint is the trained
    model), trained once for the whole session; tests copy it before changing anything in it."""
    return train_tiny_run(tmp_path_factory.mktemp("training"))


@pytest.fixture(scope="session")
def method_runs(tmp_path_factory):
    """Every method's tiny runs (tests.method_runs), each trained when a test first asks for it
    and shared by the method contract and the per-method files for the rest of the session."""
    return MethodRuns(tmp_path_factory.mktemp("method_runs"))
