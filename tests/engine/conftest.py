import shutil

import pytest


@pytest.fixture()
def run_copy(finished_run, tmp_path):
    """A copy of the module's ``finished_run`` that a test may change."""
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    return run
