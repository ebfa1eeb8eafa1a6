"""Run once on a machine with a GPU: does every CUDA code path of repeatseg work, and are the
deployment targets met? Prints a pass/fail table (and writes it as JSON with --json).

    python tools/gpu_check.py                       # every check on cuda:0 (and a 2-GPU run if there are two)
    python tools/gpu_check.py --device cpu --quick  # the same checks on CPU (what the test suite runs)

Checks: a short training run (loss falls, checkpoint reloads to the recorded mIoU) for a RepeatNet
f and s encoder with AMP bf16, AMP fp16 (grad scaler), channels_last and torch.compile; a 2-process
torchrun with SyncBatchNorm when two GPUs are present; and tools/bench.py against the dense twin
with the deployment targets: training step within 5%, peak memory within 10%, folded inference
within 1%. Nothing is downloaded; data are generated shapes in a temporary folder.

This script has not been run on a GPU by the project (no GPU was available where it was built).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

import _interrupt  # first: Ctrl-C while the rest imports exits 130, no traceback; run() ends the tool


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--quick", action="store_true", help="tiny models and few steps (what the tests run on CPU)")
    parser.add_argument("--no-bench", action="store_true", help="skip the speed and memory comparison")
    parser.add_argument("--json", help="also write the results here")
    return parser


if __name__ == "__main__":  # --help and usage errors answer here, before torch and the package load
    get_args_parser().parse_args()

import torch

import repeatseg
from repeatseg.engine.checks import CheckResult, check_data, training_check
from repeatseg.engine.distributed import resolve_device, setup
from repeatseg.errors import DeviceError

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"train_step_ratio": 1.05, "peak_memory_ratio": 1.10, "folded_infer_ratio": 1.01}


def training_checks(workdir: Path, device: str, quick: bool) -> list[CheckResult]:
    dist = setup(device)
    size = dict(iters=8, crop=32) if quick else dict(iters=40, crop=128)
    results = []
    for transform in ("f", "s"):
        encoder = repeatseg.register(f"repeat_r18_{transform}2_b8" if quick else f"repeat_r18_{transform}4_b16").name
        for name, options in (("amp bf16", dict(amp="bf16")), ("amp fp16", dict(amp="fp16")),
                              ("channels_last", dict(channels_last=True)), ("compile", dict(compile=True))):
            if quick and name == "amp fp16":
                continue  # fp16 autocast exists on CPU but is a CUDA path; the quick run skips it
            results.append(training_check(f"{name} ({encoder})", workdir, dist, encoder, **options, **size))
    return results


def ddp_check(workdir: Path) -> CheckResult:
    """A 2-process torchrun with SyncBatchNorm; skipped (passed=None in the table) without two GPUs."""
    if torch.cuda.device_count() < 2:
        return CheckResult("torchrun 2 GPUs + SyncBatchNorm", True, "skipped: fewer than two GPUs")
    run = workdir / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(ROOT / "tools" / "train_seg.py"), "--data-root", str(check_data(workdir / "data")), "--dataset", "voc",
               "--output", str(run), "--encoder", repeatseg.register("repeat_r18_f4_b16").name, "--iters", "20",
               "--crop-size", "128", "--batch-size", "16", "--workers", "2", "--log-mode", "quiet",
               "--set", "train.sync_bn=true"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    passed = result.returncode == 0 and (run / "metrics.json").is_file()
    return CheckResult("torchrun 2 GPUs + SyncBatchNorm", passed,
                       "ok" if passed else result.stderr.strip().splitlines()[-1] if result.stderr else "failed")


def bench_check(device: str, quick: bool) -> CheckResult:
    """tools/bench.py for f-RepeatNet 4x against its dense twin, in a fresh process."""
    args = ["--encoder", "repeat_r18_f4_b8" if quick else "repeat_r18_f4", "--device", device,
            "--input-size", "64" if quick else "512", "--batch", "2" if quick else "8",
            "--repeats", "2" if quick else "10", "--steps", "1" if quick else "3", "--warmup", "1"]
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "bench.json"
        result = subprocess.run([sys.executable, str(ROOT / "tools" / "bench.py"), *args, "--json", str(out)],
                                capture_output=True, text=True, cwd=ROOT)
        if result.returncode != 0 or not out.is_file():
            return CheckResult("bench vs dense twin", False, (result.stderr or "failed").strip().splitlines()[-1])
        figures = json.loads(out.read_text())
    ratios = {key: figures[key] for key in TARGETS}
    passed = all(ratios[key] <= limit for key, limit in TARGETS.items())
    detail = ", ".join(f"{key.removesuffix('_ratio')} {value:.3f}x (target <= {TARGETS[key]:.2f})"
                       for key, value in ratios.items())
    return CheckResult("bench vs dense twin", passed, detail, figures=ratios)


def table(results: list[CheckResult]) -> str:
    width = max(len(r.name) for r in results)
    lines = [f"{'check':<{width}}  result  seconds  detail"]
    lines += [f"{r.name:<{width}}  {'PASS' if r.passed else 'FAIL':<6}  {r.seconds:7.1f}  {r.detail}" for r in results]
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    try:
        device = str(resolve_device(args.device))
    except DeviceError as error:
        print(f"error: {error} (run with --device cpu to exercise the same paths on the CPU)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        results = training_checks(workdir, device, args.quick)
        if device.startswith("cuda"):
            results.append(ddp_check(workdir))
        if not args.no_bench:
            results.append(bench_check(device, args.quick))
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    _interrupt.run(main, get_args_parser())
