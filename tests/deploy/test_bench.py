"""tools/bench.py: measured CPU peak memory, and the sweeps' CSV and figure (tiny models; the
figures themselves are measured by running the tool, never asserted here)."""

import csv
import importlib.util
from pathlib import Path

from tiny import tiny

import repeatseg
from repeatseg.layers import generating_layers
from repeatseg.variants import FAMILIES, get_variant

ROOT = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("bench", ROOT / "tools" / "bench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cpu_peak_memory_is_measured_and_grows_with_the_model():
    bench = _bench()
    args = bench.get_args_parser().parse_args(["--input-size", "32", "--batch", "2", "--warmup", "1"])
    small, wide = tiny("resnet18", 1, None).name, tiny("resnet18", 4, None).name
    peaks = bench.Bench(args, bench.torch.device("cpu")).peak_memory([small, wide])
    assert 0 < peaks[small] < peaks[wide]


def test_sweep_writes_every_family_and_the_figure(tmp_path, capsys):
    bench = _bench()
    table, figure = tmp_path / "width.csv", tmp_path / "speed.png"
    assert bench.main(bench.get_args_parser().parse_args([
        "--sweep", "width", "--values", "2", "--base-width", "8", "--input-size", "32", "--batch", "2",
        "--device", "cpu", "--repeats", "1", "--steps", "1", "--warmup", "0", "--out", str(table)])) == 0
    rows = list(csv.DictReader(open(table)))
    swept = [get_variant(name) for _, name in bench.sweep_encoders(2, 8)]
    assert {type(v) for v in swept} == set(FAMILIES)  # every family of the table says what it sweeps
    assert {row["model"] for row in rows} == {n for v in swept for n in (v.name, v.reference.name)}
    assert {row["family"] for row in rows} == {v.label for v in swept} | {v.reference.label for v in swept}
    for row in rows:
        assert float(row["train_step_s"]) > 0 and float(row["infer_ratio"]) > 0 and float(row["cached_infer_ratio"]) > 0
        generates = bool(generating_layers(repeatseg.build_segmenter(row["model"], classes=3)))
        assert (float(row["generation_share"]) > 0) == generates, row["model"]
        if row["model"] == row["reference"]:
            assert float(row["train_ratio"]) == 1.0
    assert bench.main(bench.get_args_parser().parse_args(["--figure", str(table), "--out", str(figure)])) == 0
    assert 0 < figure.stat().st_size < 200_000
    assert "wrote" in capsys.readouterr().out
