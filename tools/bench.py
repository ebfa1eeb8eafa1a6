"""Speed and memory of a segmenter against its dense reference, measured in one process.

    python tools/bench.py --encoder repeat_r18_f4 --against dense_r18_w4 --input-size 512 --batch 8 \\
        --device cuda --json bench.json
    python tools/bench.py --encoder repeat_r18_f4_b16 --input-size 128 --batch 4 --device cpu
    python tools/bench.py --sweep input-size --device cpu --out docs/speed_input_size.csv
    python tools/bench.py --sweep width --device cpu --out docs/speed_width.csv
    python tools/bench.py --figure docs/speed_input_size.csv docs/speed_width.csv --out docs/speed.png
    python tools/bench.py --encoder rotcnn_s_c4 --against rotcnn_c4 --batch 64 --device cpu   # classifiers, 29x29

Repeats rotate the models' order (A/B, B/A, ...) so drift on a shared machine hits every model
alike; every figure is a median over repeats and every ratio is candidate / reference (the dense
model of the same width for RepeatNet, ``variant.reference``). Measured: training step (U-Net
forward + backward + SGD step), the part of it spent generating weights (every generating layer's
weight generated and backpropagated, ``SharingLayer.generate``; timed alongside the steps),
inference in eval mode under ``no_grad`` (as trained, generating every weight on every forward;
inside ``repeatseg.cached``, as the toolkit's evaluation runs; and folded into plain convs) and peak memory
of a training step. On CUDA: AMP (bf16 default) and channels_last, optional torch.compile; peak
memory is ``torch.cuda.max_memory_allocated``. On CPU, fp32; peak memory is measured in a fresh
subprocess per model as the growth of the resident set: the kernel's high-water mark (VmHWM,
reset through /proc/self/clear_refs after warm-up) during one step minus the resident size before
the model was built, with glibc told to return every allocation over 64 KiB to the kernel when it
is freed (``MALLOC_MMAP_THRESHOLD_``), so the resident set follows the live tensors.

A sweep (``--sweep input-size`` or ``--sweep width``) measures every family of the table at each
point (what each ``Variant.bench_sweep`` names), one CSV row per model, and ``--figure`` draws step
time and the ratio to the reference against the swept quantity (in each variant's ``style``): how
the cost of sharing grows with the work.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import _interrupt  # first: Ctrl-C while the rest imports exits 130, no traceback; run() ends the tool

SWEEP_BASE = 16  # base width of the sweeps' models (layer1 of a w4 model has 64 channels, like ResNet-18)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", help="the candidate, e.g. repeat_r18_f4")
    parser.add_argument("--against", help="the reference (default: the candidate's, e.g. dense_r18_w4)")
    parser.add_argument("--input-size", type=int, default=None, help="default 512 (a classifier's own: 29 for rotcnn_*)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--classes", type=int, default=21)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--amp", choices=["none", "bf16", "fp16"], default="bf16", help="CUDA only")
    parser.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--repeats", type=int, default=10, help="repeats per measurement (order rotated)")
    parser.add_argument("--steps", type=int, default=3, help="steps timed per repeat")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="wall time, or this process's CPU time (CPU device; with --threads 1 it counts the "
                             "work alone, steady on a machine other jobs load)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (on a loaded machine, 1 is steadier)")
    parser.add_argument("--regenerate", action="store_true",
                        help="RepeatConv2d.regenerate_for_backward: generate weights again in backward, not keep them")
    parser.add_argument("--json", help="write the results (with raw per-repeat times) here")
    parser.add_argument("--sweep", choices=["input-size", "width"],
                        help="measure every family (sweep_encoders) over input sizes (at --width) or widths "
                             "(at --input-size) and write a CSV (--out)")
    parser.add_argument("--values", type=int, nargs="+",
                        help="the sweep's points (default 64 128 256 512 px, or widths 2 4 8)")
    parser.add_argument("--width", type=int, default=4, help="width factor of the input-size sweep")
    parser.add_argument("--base-width", type=int, default=SWEEP_BASE, help="base width of the sweeps' models")
    parser.add_argument("--figure", nargs="+", metavar="CSV", help="draw the sweeps' CSVs into one figure (--out)")
    parser.add_argument("--out", help="the sweep's CSV or the figure's PNG")
    parser.add_argument("--probe-memory", metavar="ENCODER", help=argparse.SUPPRESS)  # the CPU memory subprocess
    return parser


if __name__ == "__main__":  # --help and usage errors answer here, before torch and the package load
    get_args_parser().parse_args()

import timm
import torch
import torch.nn.functional as F

import repeatseg
from repeatseg.classifiers import get_classifier, is_classifier
from repeatseg.engine.distributed import resolve_device
from repeatseg.errors import ConfigError, RepeatsegError
from repeatseg.export import fold
from repeatseg.layers import RepeatConv2d, cached, generating_layers
from repeatseg.variants import FAMILIES, get_variant


def sweep_encoders(width: int, base: int = SWEEP_BASE) -> list[tuple[str, str]]:
    """(label, name) of what every family of the table sweeps at ``width`` times ``base``
    (``Variant.bench_sweep``: RepeatNet l/s/f at that width factor; shared bases and DACNN, compression
    families, at that base width), so layer1 has the same channels (base x width) in every model."""
    return [(variant.label, variant.name) for family in FAMILIES for variant in family.bench_sweep(width, base)]


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

    def build(self, name: str) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        model = repeatseg.build_segmenter(repeatseg.get_variant(name).smp_key, classes=self.args.classes)
        model = self.prepare(model.train())
        return model, torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

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

    def _timed(self, run) -> float:
        clock = time.process_time if self.args.clock == "cpu" else time.perf_counter
        synchronize(self.device)
        start = clock()
        for _ in range(self.args.steps):
            run()
        synchronize(self.device)
        return (clock() - start) / self.args.steps

    def time_train(self, model, optimizer) -> float:
        return self._timed(lambda: self.train_step(model, optimizer))

    def time_infer(self, model, cache: bool = False) -> float:
        """No grad, in the model's mode (eval: what validation and deployment cost); with ``cache``
        inside a ``repeatseg.cached(model)`` scope whose weights are already generated, as every batch
        of an evaluation but its first runs (the toolkit evaluates a whole split in one scope)."""
        with torch.no_grad(), self._autocast(), cached(model) if cache else contextlib.nullcontext():
            if cache:
                model(self.inputs)  # the scope's one generation, not timed
            return self._timed(lambda: model(self.inputs))

    def time_generation(self, model) -> float:
        """Generating every generated weight and backpropagating into what it is generated from."""
        layers = generating_layers(model)
        if not layers:
            return 0.0
        grads = [torch.randn_like(layer.generate()) for layer in layers]

        def generate():
            model.zero_grad(set_to_none=True)  # as in a training step: gradients are fresh tensors
            with self._autocast():
                weights = [layer.generate() for layer in layers]
            torch.autograd.backward(weights, grads)

        elapsed = self._timed(generate)
        model.zero_grad(set_to_none=True)
        return elapsed

    def peak_memory(self, names: list[str]) -> dict[str, int]:
        """Bytes at the peak of one training step of each model (CUDA: allocator; CPU: one fresh
        process per model, run side by side; see the module doc)."""
        if self.device.type == "cuda":
            return {name: self._cuda_peak(name) for name in names}
        env = {key: value for key, value in os.environ.items() if not key.startswith("MALLOC_")}
        env["MALLOC_MMAP_THRESHOLD_"] = "65536"
        probes = {name: subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--probe-memory", name,
             "--input-size", str(self.args.input_size), "--batch", str(self.args.batch),
             "--classes", str(self.args.classes), "--warmup", str(max(self.args.warmup, 1)),
             *(["--regenerate"] if self.args.regenerate else [])],
            env=env, stdout=subprocess.PIPE, text=True) for name in names}
        peaks = {}
        for name, probe in probes.items():
            out, _ = probe.communicate()
            if probe.returncode:
                raise RuntimeError(f"the memory probe of {name} failed (exit {probe.returncode})")
            peaks[name] = int(out.split()[-1])
        return peaks

    def _cuda_peak(self, name: str) -> int:
        model, optimizer = self.build(name)
        for _ in range(self.args.warmup):
            self.train_step(model, optimizer)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(self.device)
        self.train_step(model, optimizer)
        synchronize(self.device)
        return torch.cuda.max_memory_allocated(self.device)


class ClassifierBench(Bench):
    """A classification-only model (rotcnn_*): one-channel images at --input-size, a class per
    image, the timm model with its head; no channels_last (e2cnn's batch norm views channels)."""

    def __init__(self, args: argparse.Namespace, device: torch.device):
        super().__init__(args, device)
        self.inputs = torch.rand(args.batch, 1, args.input_size, args.input_size, device=device)
        self.target = torch.randint(0, args.classes, (args.batch,), device=device)

    def build(self, name: str) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        model = self.prepare(timm.create_model(name, num_classes=self.args.classes).train())
        return model, torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        model = model.to(self.device)
        return torch.compile(model) if self.args.compile else model


def lookup(name: str):
    """The variant of an encoder, or the classification-only model, called ``name``."""
    return get_classifier(name) or repeatseg.get_variant(name)


def make_bench(args: argparse.Namespace, device: torch.device, name: str) -> Bench:
    return ClassifierBench(args, device) if is_classifier(name) else Bench(args, device)


def _resident_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def probe_memory(args: argparse.Namespace) -> int:
    """In a fresh process: VmHWM during one training step minus VmRSS before the model was built."""
    torch.manual_seed(0)
    bench = make_bench(args, torch.device("cpu"), args.probe_memory)
    gc.collect()
    before = _resident_kib("VmRSS")
    model, optimizer = bench.build(args.probe_memory)
    for _ in range(args.warmup):  # optimiser state, lazily loaded kernels
        bench.train_step(model, optimizer)
    gc.collect()
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # reset the high-water mark to the current resident size
    bench.train_step(model, optimizer)
    print((_resident_kib("VmHWM") - before) * 1024)
    return 0


def alternate(measure, names: list[str], repeats: int) -> dict[str, list[float]]:
    """``measure(name)`` for every model, ``repeats`` times, the order rotated and reversed each repeat."""
    times = {name: [] for name in names}
    for repeat in range(repeats):
        order = names[repeat % len(names):] + names[:repeat % len(names)]
        for name in order if repeat % 2 == 0 else order[::-1]:
            times[name].append(measure(name))
    return times


def measure(bench: Bench, names: list[str], folded: bool = True) -> dict[str, dict[str, float]]:
    """Median training step, generation, inference (and folded inference) time of every model."""
    args, built = bench.args, {}
    for name in dict.fromkeys(names):
        torch.manual_seed(0)
        built[name] = bench.build(name)
    for model, optimizer in built.values():  # warm-up: allocator, cudnn autotuning, compilation
        for _ in range(args.warmup):
            bench.train_step(model, optimizer)
    names = list(built)
    train = alternate(lambda k: bench.time_train(*built[k]), names, args.repeats)
    generation = alternate(lambda k: bench.time_generation(built[k][0]), names, args.repeats)
    for model, _ in built.values():  # then validation: eval mode once, as a training run switches
        model.eval()
        bench.time_infer(model)
    infer = alternate(lambda k: bench.time_infer(built[k][0]), names, args.repeats)
    infer_cached = alternate(lambda k: bench.time_infer(built[k][0], cache=True), names, args.repeats)
    results = {k: {"train_step_s": statistics.median(train[k]), "generation_s": statistics.median(generation[k]),
                   "infer_s": statistics.median(infer[k]), "cached_infer_s": statistics.median(infer_cached[k]),
                   "raw_train_step_s": train[k], "raw_infer_s": infer[k], "raw_cached_infer_s": infer_cached[k]}
               for k in names}
    if folded:
        plain = {k: bench.prepare(fold(getattr(built[k][0], "_orig_mod", built[k][0]))) for k in names}
        for model in plain.values():
            bench.time_infer(model)
        infer_folded = alternate(lambda k: bench.time_infer(plain[k]), names, args.repeats)
        for k in names:
            results[k]["folded_infer_s"] = statistics.median(infer_folded[k])
            results[k]["raw_folded_infer_s"] = infer_folded[k]
    return results


TIMED = ("train_step_s", "infer_s", "cached_infer_s", "folded_infer_s")  # what compare() times, median and raw


def compare(args: argparse.Namespace, device: torch.device) -> int:
    candidate = lookup(args.encoder)
    dense = lookup(args.against) if args.against else candidate.reference
    bench = make_bench(args, device, candidate.name)
    times = measure(bench, [candidate.name, dense.name])
    mine, theirs = times[candidate.name], times[dense.name]
    peaks = bench.peak_memory([candidate.name, dense.name])
    memory = {"candidate": peaks[candidate.name], "dense": peaks[dense.name]}
    ratio = {key: mine[key] / theirs[key] for key in TIMED}
    result = {
        "candidate": candidate.name, "dense": dense.name, "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__, "input_size": args.input_size, "batch": args.batch, "repeats": args.repeats,
        "steps_per_repeat": args.steps, "amp": args.amp if device.type == "cuda" else "none",
        "channels_last": device.type == "cuda" and args.channels_last, "compile": args.compile,
        "load_average": os.getloadavg()[0], "threads": torch.get_num_threads(), "clock": args.clock,
        "regenerate_for_backward": args.regenerate,
        "peak_memory_kind": "allocator" if device.type == "cuda" else "resident set growth (VmHWM), own process",
        "train_step_s": {"candidate": mine["train_step_s"], "dense": theirs["train_step_s"]},
        "generation_s": mine["generation_s"], "generation_share": mine["generation_s"] / mine["train_step_s"],
        "infer_s": {"candidate": mine["infer_s"], "dense": theirs["infer_s"]},
        "cached_infer_s": {"candidate": mine["cached_infer_s"], "dense": theirs["cached_infer_s"]},
        "folded_infer_s": {"candidate": mine["folded_infer_s"], "dense": theirs["folded_infer_s"]},
        "peak_memory_bytes": memory,
        "train_step_ratio": ratio["train_step_s"],
        "peak_memory_ratio": memory["candidate"] / memory["dense"],
        "infer_ratio": ratio["infer_s"],
        "cached_infer_ratio": ratio["cached_infer_s"],
        "folded_infer_ratio": ratio["folded_infer_s"],
        "raw": {key: {"candidate": mine[f"raw_{key}"], "dense": theirs[f"raw_{key}"]} for key in TIMED},
    }
    print(f"{candidate.name} vs {dense.name} on {result['device_name']} ({device}), batch {args.batch}, "
          f"{args.input_size}x{args.input_size}, amp {result['amp']}, compile {args.compile}, "
          f"{result['threads']} threads, {args.clock} clock, "
          f"{'weights regenerated for backward, ' if args.regenerate else ''}load average {result['load_average']:.1f}")
    print(f"{'':<24}{'candidate':>12}{'dense':>12}{'ratio':>9}")
    for label, key in (("train step (ms)", "train_step_s"), ("inference (ms)", "infer_s"),
                       ("  inside cached() (ms)", "cached_infer_s"), ("folded inference (ms)", "folded_infer_s")):
        print(f"{label:<24}{mine[key] * 1e3:>12.2f}{theirs[key] * 1e3:>12.2f}{ratio[key]:>9.3f}")
    print(f"{'  generating weights':<24}{mine['generation_s'] * 1e3:>12.2f}{theirs['generation_s'] * 1e3:>12.2f}"
          f"{'':>9}  ({result['generation_share']:.1%} of the candidate's step)")
    print(f"{'peak memory (MiB)':<24}{memory['candidate'] / 2**20:>12.1f}{memory['dense'] / 2**20:>12.1f}"
          f"{result['peak_memory_ratio']:>9.3f}  ({result['peak_memory_kind']})")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


SWEEP_FIELDS = ["sweep", "value", "family", "model", "reference", "reference_of", "width", "base_width", "input_size", "batch",
                "clock", "threads", "train_step_s",
                "infer_s", "generation_s", "generation_share", "train_ratio", "infer_ratio", "load_average",
                "cached_infer_s", "cached_infer_ratio"]


def sweep(args: argparse.Namespace, device: torch.device) -> int:
    """One CSV row per model and point: every family and its reference, measured together."""
    points = args.values or ([64, 128, 256, 512] if args.sweep == "input-size" else [2, 4, 8])
    rows = []
    for value in points:
        width = args.width if args.sweep == "input-size" else value
        point_args = argparse.Namespace(**{**vars(args), "input_size": value if args.sweep == "input-size"
                                           else args.input_size})
        encoders = [(label, repeatseg.get_variant(name)) for label, name in sweep_encoders(width, args.base_width)]
        names = [name for _, v in encoders for name in (v.name, v.reference.name)]
        times = measure(Bench(point_args, device), names, folded=False)
        load = os.getloadavg()[0]
        serves: dict[str, list[str]] = {}  # reference -> the families it is the reference of
        for label, variant in encoders:
            serves.setdefault(variant.reference.name, []).append(label)
        references = {v.reference.name: v.reference for _, v in encoders}
        labelled = [(reference.label, reference) for reference in references.values()]
        labelled += [(label, variant) for label, variant in encoders if variant.name not in references]
        for family, variant in labelled:
            mine, theirs = times[variant.name], times[variant.reference.name]
            rows.append({"sweep": args.sweep, "value": value, "family": family, "model": variant.name,
                         "reference": variant.reference.name,
                         "reference_of": ", ".join(serves.get(variant.name, [])), "width": width, "base_width": args.base_width,
                         "input_size": point_args.input_size, "batch": args.batch, "clock": args.clock,
                         "threads": torch.get_num_threads(), "train_step_s": mine["train_step_s"], "infer_s": mine["infer_s"],
                         "generation_s": mine["generation_s"],
                         "generation_share": mine["generation_s"] / mine["train_step_s"],
                         "train_ratio": mine["train_step_s"] / theirs["train_step_s"],
                         "infer_ratio": mine["infer_s"] / theirs["infer_s"], "load_average": load,
                         "cached_infer_s": mine["cached_infer_s"],
                         "cached_infer_ratio": mine["cached_infer_s"] / theirs["cached_infer_s"]})
            print(f"{args.sweep} {value:>4}  {variant.name:<24} step {mine['train_step_s'] * 1e3:9.1f} ms  "
                  f"x{rows[-1]['train_ratio']:.3f}  infer x{rows[-1]['infer_ratio']:.3f} "
                  f"(cached x{rows[-1]['cached_infer_ratio']:.3f})  "
                  f"generation {rows[-1]['generation_share']:.1%}  (load {load:.1f})", flush=True)
    out = Path(args.out or f"speed_{args.sweep}.csv")
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as handle:
        writer = csv.DictWriter(handle, SWEEP_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {out}")
    return 0


def groups(rows: list[dict], keys: tuple[str, ...]) -> dict[tuple, list[dict]]:
    """Rows grouped by the values of ``keys``, in order of appearance."""
    grouped: dict[tuple, list[dict]] = {}
    for row in rows:
        grouped.setdefault(tuple(row[key] for key in keys), []).append(row)
    return grouped


def figure(csv_paths: list[str], out: str) -> int:
    """Step time and ratio to the reference against each sweep's quantity, one row per sweep."""
    from repeatseg.extras import require

    require("matplotlib", extra="train").use("Agg")
    import matplotlib.pyplot as plt

    tables = [list(csv.DictReader(open(path))) for path in csv_paths]
    fig, axes = plt.subplots(len(tables), 2, figsize=(10, 3.6 * len(tables)), squeeze=False)
    for (time_ax, ratio_ax), rows in zip(axes, tables):
        kind = rows[0]["sweep"]
        reference_lines = iter(["-", "--", ":", "-."])
        for (family, serves), mine in groups(rows, ("family", "reference_of")).items():
            style = get_variant(mine[0]["model"]).style  # a CSV names its models: older ones draw too
            x = [float(row["value"]) for row in mine]
            line = next(reference_lines) if serves else "-"  # a reference, drawn once for the families it serves
            time_ax.plot(x, [1e3 * float(row["train_step_s"]) for row in mine], style["marker"] + line,
                         color=style["color"], label=f"{family} (reference of {serves})" if serves else family, ms=3)
        for family, mine in groups([row for row in rows if row["model"] != row["reference"]], ("family",)).items():
            style = get_variant(mine[0]["model"]).style
            x = [float(row["value"]) for row in mine]
            inference = "cached_infer_ratio" if mine[0].get("cached_infer_ratio") else "infer_ratio"
            ratio_ax.plot(x, [float(row["train_ratio"]) for row in mine], style["marker"] + "-", color=style["color"],
                          label=f"{family[0]}: training step", ms=3)
            ratio_ax.plot(x, [float(row[inference]) for row in mine], "s--", color=style["color"],
                          label=f"{family[0]}: eval inference" + (" (cached)" if inference != "infer_ratio" else ""),
                          ms=3, alpha=0.7)
        label = "input size (px)" if kind == "input-size" else "width factor (layer1 channels = 16 x)"
        for ax in (time_ax, ratio_ax):
            ax.set_xscale("log", base=2)
            values = sorted({int(row["value"]) for row in rows})
            ax.set_xticks(values, [str(v) for v in values])
            ax.minorticks_off()
            ax.set_xlabel(label)
            ax.grid(alpha=0.3)
        time_ax.set_yscale("log")
        time_ax.set_ylabel("training step (ms)")
        ratio_ax.axhline(1.0, color="black", lw=0.8)
        ratio_ax.set_ylabel("time / reference's")
        first = rows[0]
        detail = (f"{first['input_size']} px" if kind == "width"
                  else f"RepeatNet x{first['width']} on base {first['base_width']}")
        time_ax.set_title(f"{kind} sweep: {detail}, batch {first['batch']}, CPU fp32, {first['threads']} thread(s), "
                          f"{first['clock']} clock", fontsize=8)
        time_ax.legend(fontsize=7)
        if ratio_ax.lines[1:]:  # beyond the line at 1: a sweep of references alone has no ratios to show
            ratio_ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    print(f"wrote {out} ({Path(out).stat().st_size // 1024} KiB)")
    return 0


def main(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    RepeatConv2d.regenerate_for_backward = args.regenerate
    if args.probe_memory:
        return probe_memory(args)
    if args.figure:
        return figure(args.figure, args.out or "speed.png")
    if args.input_size is None:  # a classification-only model's own size (29 for rotcnn_*), else 512
        args.input_size = getattr(get_classifier(args.encoder or ""), "input_size", 512)
    try:
        device = resolve_device(args.device)
        if args.clock == "cpu" and device.type != "cpu":
            raise ConfigError("--clock cpu measures the CPU device only")
        if args.sweep:
            return sweep(args, device)
        if not args.encoder:
            raise ConfigError("--encoder is required (or --sweep / --figure)")
        lookup(args.encoder)
        if args.against and is_classifier(lookup(args.against).name) != is_classifier(args.encoder):
            raise ConfigError("--against: a classification-only model (rotcnn_*) is benched against another one")
    except RepeatsegError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    return compare(args, device)


if __name__ == "__main__":
    _interrupt.run(main, get_args_parser())
