import os

# `make test` runs the suite in one pytest-xdist worker per core: each worker (and every process its
# tests start, which inherit this) computes on one intra-op thread, so the workers share the cores
# instead of oversubscribing them (docs/results/speed.md: oversubscribed, throughput collapses).
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

import tests.tool_loader  # noqa: F401  (puts tools/ on sys.path, as running a tool does)


def pytest_runtest_setup(item):
    """A test marked ``gpu`` needs a CUDA device: without one it is skipped, so the suite passes on any machine."""
    if item.get_closest_marker("gpu") is not None and not torch.cuda.is_available():
        pytest.skip("needs a CUDA device (pytest marker gpu)")


if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


def pytest_collection_modifyitems(items):
    """The files holding a test marked ``slow`` go first (in their own order): the long tests start
    at once and the end of the run is short tests, which pytest-xdist's worksteal hands to whichever
    worker is idle, instead of one long test running alone at the end."""
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow)


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


@pytest.fixture(scope="module")
def cls_run(tmp_path_factory):
    """A finished one-epoch classification run (repeat_resnet18_f2_b4) on a tiny synthetic ImageFolder
    set, for export_encoder."""
    from repeatseg.data.synthetic import make_synthetic_imagenet
    from tests.tool_loader import load_tool

    data = make_synthetic_imagenet(tmp_path_factory.mktemp("cls") / "data", num_classes=2, per_class=4,
                                   val_per_class=2, size=32)
    run = data.parent / "run"
    tool = load_tool("train_cls")
    args = ["--model", "repeat_resnet18_f2_b4", "--data-root", str(data), "--output", str(run), "--epochs", "1",
            "--batch-size", "4", "--image-size", "32", "--workers", "0", "--device", "cpu", "--log-mode", "quiet",
            "--set", "train.eval_batch_size=4"]
    assert tool.main(tool.get_args_parser().parse_args(args)) == 0
    return run
