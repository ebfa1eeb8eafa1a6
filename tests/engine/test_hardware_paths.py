"""The CUDA code paths that can run on CPU, run on CPU: AMP (bf16 autocast), channels_last and
torch.compile (inductor; needs a C compiler), each a short training run whose loss must fall and
whose checkpoint must reload to the mIoU the run recorded. tools/gpu_check.py runs the same checks
on a GPU."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from tiny import tiny

from repeatseg.engine.checks import training_check
from repeatseg.engine.distributed import setup

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("paths")


# torch.compile (inductor, C++ codegen) of a whole U-Net step costs about a minute on 2 cores: it
# runs for f, the transform with a custom autograd function; s compiles in tools/gpu_check.py.
PATHS = [("flip", dict(amp="bf16")), ("swish", dict(amp="bf16")), ("flip", dict(channels_last=True)),
         ("swish", dict(channels_last=True)), ("flip", dict(compile=True))]


@pytest.mark.slow
@pytest.mark.parametrize("transform, path", PATHS, ids=[f"{t}-{next(iter(p))}" for t, p in PATHS])
def test_path_trains_and_its_checkpoint_round_trips(workdir, transform, path):
    encoder = tiny("resnet18", 2, transform).name
    result = training_check(f"{transform}-{'-'.join(path)}", workdir, setup("cpu"), encoder, iters=8, crop=32, **path)
    assert result.passed, result.detail


def gpu_check_tool():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "tools" / "gpu_check.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal needs a machine without CUDA")
def test_gpu_check_refuses_cuda_on_a_machine_without_a_gpu(capsys):
    tool = gpu_check_tool()
    code = tool.main(tool.get_args_parser().parse_args(["--device", "cuda"]))
    assert code == 2 and "--device cpu" in capsys.readouterr().err


@pytest.mark.gpu
def test_gpu_check_takes_the_cuda_device_of_a_gpu_machine():
    assert str(gpu_check_tool().resolve_device("cuda")).startswith("cuda")


@pytest.mark.slow
def test_gpu_check_reports_a_table(tmp_path, capsys, monkeypatch):
    tool = gpu_check_tool()
    monkeypatch.setattr(tool, "training_checks", lambda *args: [tool.CheckResult("amp bf16 (x)", True, "ok", 1.0)])
    code = tool.main(tool.get_args_parser().parse_args(["--device", "cpu", "--quick", "--json", str(tmp_path / "r.json")]))
    out = capsys.readouterr().out
    assert "amp bf16 (x)" in out and "bench vs dense twin" in out and "PASS" in out
    rows = json.loads((tmp_path / "r.json").read_text())
    bench = next(r for r in rows if r["name"] == "bench vs dense twin")
    assert set(bench["figures"]) == {"train_step_ratio", "peak_memory_ratio", "folded_infer_ratio"}
    assert code == (0 if all(r["passed"] for r in rows) else 1)
