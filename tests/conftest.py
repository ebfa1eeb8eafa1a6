import pytest
import torch

import tests.tool_loader  # noqa: F401  (puts tools/ on sys.path, as running a tool does)


def pytest_runtest_setup(item):
    """A test marked ``gpu`` needs a CUDA device: without one it is skipped, so the suite passes on any machine."""
    if item.get_closest_marker("gpu") is not None and not torch.cuda.is_available():
        pytest.skip("needs a CUDA device (pytest marker gpu)")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture()
def cli(capsys):
    """Run a tool's main() in this process: (exit code, stdout, stderr)."""
    from tests.tool_loader import load_tool

    def run(*args, tool="train_seg"):
        module = load_tool(tool)
        code = module.main(module.get_args_parser().parse_args([str(a) for a in args]))
        out, err = capsys.readouterr()
        return code, out, err

    return run
