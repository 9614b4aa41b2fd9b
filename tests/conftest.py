"""Fixtures shared by several test files: things costly to make once per file."""

import pytest

from tests.helpers import train_tiny_run


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """The run folder of a real one-epoch SimCLR run on shapes (its checkpoint is the trained
    model), trained once for the whole session; tests copy it before changing anything in it."""
    return train_tiny_run(tmp_path_factory.mktemp("training"))
