import pytest
from tiny import write_tiny_digits


@pytest.fixture(scope="module")
def tiny_digits(tmp_path_factory):
    """A digits folder in make_digits' layout with 2 + 1 digits per class and 8 + 4 scenes."""
    return write_tiny_digits(tmp_path_factory.mktemp("digits"), 2, 1, 8, 4)
