"""Speed and memory of a RepeatNet segmenter against its dense twin, measured in one process.

    python tools/bench.py --encoder repeat_r18_f4 --against dense_r18_w4 --input-size 512 --batch 8 \\
        --device cuda --json bench.json
    python tools/bench.py --encoder repeat_r18_f4_b16 --input-size 128 --batch 4 --device cpu

Repeats alternate A/B, B/A so drift on a shared machine hits both models alike; every figure is a
median over repeats and every ratio is candidate / dense twin. Measured: training step (U-Net
forward + backward + SGD step), training peak memory, inference (as trained, and folded into plain
convs). On CUDA: AMP (bf16 default) and channels_last, optional torch.compile; peak memory is
``torch.cuda.max_memory_allocated``. On CPU, fp32, and peak memory is an estimate: parameters +
gradients + optimiser state + the tensors autograd saves for backward.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time

import torch
import torch.nn.functional as F

import repeatseg
from repeatseg.engine.distributed import resolve_device
from repeatseg.export import fold


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Bench:
    def __init__(self, args: argparse.Namespace, device: torch.device):
        self.args, self.device = args, device
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.amp) if device.type == "cuda" else None
        self.inputs = torch.randn(args.batch, 3, args.input_size, args.input_size, device=device)
        self.target = torch.randint(0, args.classes, (args.batch, args.input_size, args.input_size), device=device)
        if device.type == "cuda" and args.channels_last:
            self.inputs = self.inputs.contiguous(memory_format=torch.channels_last)

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        model = model.to(self.device)
        if self.device.type == "cuda" and self.args.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return torch.compile(model) if self.args.compile else model

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None)

    def train_step(self, model, optimizer) -> None:
        with self._autocast():
            loss = F.cross_entropy(model(self.inputs).float(), self.target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def time_train(self, model, optimizer) -> float:
        synchronize(self.device)
        start = time.perf_counter()
        for _ in range(self.args.steps):
            self.train_step(model, optimizer)
        synchronize(self.device)
        return (time.perf_counter() - start) / self.args.steps

    @torch.no_grad()
    def time_infer(self, model) -> float:
        synchronize(self.device)
        start = time.perf_counter()
        for _ in range(self.args.steps):
            with self._autocast():
                model(self.inputs)
        synchronize(self.device)
        return (time.perf_counter() - start) / self.args.steps

    def peak_memory(self, model, optimizer) -> int:
        """Bytes at the peak of one training step (CUDA: allocator; CPU: estimate, see module doc)."""
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.train_step(model, optimizer)
            synchronize(self.device)
            return torch.cuda.max_memory_allocated(self.device)
        saved, seen = 0, set()

        def pack(tensor):
            nonlocal saved
            key = (tensor.untyped_storage().data_ptr(), tensor.untyped_storage().nbytes())
            if key not in seen and not isinstance(tensor, torch.nn.Parameter):
                seen.add(key)
                saved += key[1]
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            self.train_step(model, optimizer)
        params = sum(p.numel() * p.element_size() for p in model.parameters())
        state = sum(v.numel() * v.element_size() for s in optimizer.state.values() for v in s.values()
                    if torch.is_tensor(v))
        return saved + 2 * params + state  # parameters + gradients + optimiser state + saved tensors


def alternate(measure, pair: dict, repeats: int) -> dict[str, list[float]]:
    """``measure(name)`` for both models, A/B then B/A, ``repeats`` times each."""
    times = {name: [] for name in pair}
    names = list(pair)
    for repeat in range(repeats):
        for name in names if repeat % 2 == 0 else names[::-1]:
            times[name].append(measure(name))
    return times


def main(args: argparse.Namespace) -> int:
    try:
        candidate = repeatseg.get_variant(args.encoder)
        dense = repeatseg.get_variant(args.against) if args.against else candidate.reference
        device = resolve_device(args.device)
    except (ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    bench = Bench(args, device)
    models = {"candidate": repeatseg.build_segmenter(candidate.smp_key, classes=args.classes),
              "dense": repeatseg.build_segmenter(dense.smp_key, classes=args.classes)}
    folded = {key: bench.prepare(fold(model)) for key, model in models.items()}
    trained = {key: bench.prepare(model.train()) for key, model in models.items()}
    optimizers = {key: torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9) for key, model in trained.items()}

    for key in trained:  # warm-up: allocator, cudnn autotuning, compilation
        for _ in range(args.warmup):
            bench.train_step(trained[key], optimizers[key])
    memory = {key: bench.peak_memory(trained[key], optimizers[key]) for key in trained}
    train = alternate(lambda k: bench.time_train(trained[k], optimizers[k]), trained, args.repeats)
    for model in trained.values():
        model.eval()
    for key in trained:
        for _ in range(args.warmup):
            bench.time_infer(trained[key])
            bench.time_infer(folded[key])
    infer = alternate(lambda k: bench.time_infer(trained[k]), trained, args.repeats)
    infer_folded = alternate(lambda k: bench.time_infer(folded[k]), folded, args.repeats)

    median = statistics.median
    result = {
        "candidate": candidate.name, "dense": dense.name, "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__, "input_size": args.input_size, "batch": args.batch, "repeats": args.repeats,
        "steps_per_repeat": args.steps, "amp": args.amp if device.type == "cuda" else "none",
        "channels_last": device.type == "cuda" and args.channels_last, "compile": args.compile,
        "peak_memory_kind": "allocator" if device.type == "cuda" else "estimate",
        "train_step_s": {k: median(v) for k, v in train.items()},
        "infer_s": {k: median(v) for k, v in infer.items()},
        "folded_infer_s": {k: median(v) for k, v in infer_folded.items()},
        "peak_memory_bytes": memory,
        "train_step_ratio": median(train["candidate"]) / median(train["dense"]),
        "peak_memory_ratio": memory["candidate"] / memory["dense"],
        "infer_ratio": median(infer["candidate"]) / median(infer["dense"]),
        "folded_infer_ratio": median(infer_folded["candidate"]) / median(infer_folded["dense"]),
        "raw": {"train_step_s": train, "infer_s": infer, "folded_infer_s": infer_folded},
    }
    print(f"{candidate.name} vs {dense.name} on {result['device_name']} ({device}), batch {args.batch}, "
          f"{args.input_size}x{args.input_size}, amp {result['amp']}, compile {args.compile}")
    print(f"{'':<22}{'candidate':>12}{'dense':>12}{'ratio':>9}")
    rows = [("train step (ms)", train, 1e3), ("inference (ms)", infer, 1e3), ("folded inference (ms)", infer_folded, 1e3)]
    for label, values, scale in rows:
        a, b = median(values["candidate"]), median(values["dense"])
        print(f"{label:<22}{a * scale:>12.2f}{b * scale:>12.2f}{a / b:>9.3f}")
    print(f"{'peak memory (MiB)':<22}{memory['candidate'] / 2**20:>12.1f}{memory['dense'] / 2**20:>12.1f}"
          f"{result['peak_memory_ratio']:>9.3f}  ({result['peak_memory_kind']})")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(result, out, indent=2)
    return 0


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", required=True, help="the candidate, e.g. repeat_r18_f4")
    parser.add_argument("--against", help="the dense twin (default: the candidate's, e.g. dense_r18_w4)")
    parser.add_argument("--input-size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--classes", type=int, default=21)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--amp", choices=["none", "bf16", "fp16"], default="bf16", help="CUDA only")
    parser.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--repeats", type=int, default=10, help="A/B repeats per measurement")
    parser.add_argument("--steps", type=int, default=3, help="steps timed per repeat")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--json", help="write the results (with raw per-repeat times) here")
    return parser


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
