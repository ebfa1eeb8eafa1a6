"""Adding a family is one file and one table line, end to end: the ResNet-10 family of
``tests/fixtures/shallow_family.py``, registered here, builds in smp and timm, is described,
swept and drawn by the bench, labelled in the report and its figures, folded, packed and exported,
with no edit anywhere else."""

import csv
import json
from argparse import Namespace

import pytest
import segmentation_models_pytorch as smp
import timm
import torch
from PIL import Image

import repeatseg
from repeatseg import variants
from tests.fixtures import shallow_family
from tests.tool_loader import load_tool

BASE = 8
NARROW, WIDE = f"shallow_r10_w1_b{BASE}", f"shallow_r10_w2_b{BASE}"


@pytest.fixture(scope="module")
def family():
    """The one table line, undone after this module so the other tests see the package's table."""
    table, names, timm_names = list(variants.FAMILIES), dict(variants.VARIANTS), dict(variants.TIMM_VARIANTS)
    registered = repeatseg.register_family(shallow_family.VARIANT)
    yield registered
    variants.FAMILIES[:] = table
    for current, saved in ((variants.VARIANTS, names), (variants.TIMM_VARIANTS, timm_names)):
        for key in set(current) - set(saved):
            del current[key]


def test_its_defaults_are_smp_and_timm_models_and_other_base_widths_parse(family):
    assert [v.name for v in family] == ["shallow_r10_w1", "shallow_r10_w2"]
    assert repeatseg.get_variant("shallow_resnet10_w2") == family[1]
    x = torch.randn(1, 3, 64, 64)
    assert timm.create_model(repeatseg.register(WIDE).timm_name, num_classes=5)(x).shape == (1, 5)
    assert smp.FPN(repeatseg.register(WIDE).smp_key, encoder_weights=None, classes=3)(x).shape == (1, 3, 64, 64)
    with pytest.raises(ValueError, match="does not read model option\\(s\\) gradient; it reads no model options"):
        repeatseg.get_variant(f"{WIDE}[gradient=bireal]")


def test_describe_compares_it_with_the_reference_it_names(family):
    stats = repeatseg.describe(WIDE, input_size=64)
    assert stats.dense_twin == WIDE and stats.ratio_to_dense["packed_bytes"] == 1.0
    assert repeatseg.describe(NARROW, input_size=64).trainable_params < stats.trainable_params


def test_the_bench_sweeps_and_draws_it(family, tmp_path, monkeypatch):
    bench = load_tool("bench")
    assert ("ResNet-10 (dense)", WIDE) in bench.sweep_encoders(2, BASE)
    monkeypatch.setattr(bench, "FAMILIES", [shallow_family.VARIANT])  # measure this family alone: quick
    table, figure = tmp_path / "width.csv", tmp_path / "speed.png"
    assert bench.main(bench.get_args_parser().parse_args([
        "--sweep", "width", "--values", "2", "--base-width", str(BASE), "--input-size", "32", "--batch", "2",
        "--device", "cpu", "--repeats", "1", "--steps", "1", "--warmup", "0", "--out", str(table)])) == 0
    rows = list(csv.DictReader(open(table)))
    assert [(row["family"], row["model"], float(row["train_ratio"])) for row in rows] == \
        [("ResNet-10 (dense)", WIDE, 1.0)]
    assert bench.main(bench.get_args_parser().parse_args(["--figure", str(table), "--out", str(figure)])) == 0
    assert figure.stat().st_size > 0


def test_the_report_labels_it_compares_its_widths_and_draws_it(family, tmp_path):
    from repeatseg.study.aggregate import read_cell, summarise
    from repeatseg.study.report import effect_lines, plot_miou_vs_storage

    cells = []
    for encoder, values in {NARROW: [0.40, 0.42, 0.44], WIDE: [0.50, 0.52, 0.54]}.items():
        for seed, miou in enumerate(values):
            run = tmp_path / encoder / f"seed{seed}"
            run.mkdir(parents=True)
            (run / "metrics.json").write_text(json.dumps({"miou": miou, "pixel_acc": 0.9, "per_class_iou": {}}))
            cells.append(read_cell(run, encoder, seed))
    rows = summarise(cells, [NARROW, WIDE], input_size=32, classes=3)
    assert [(r.family, r.label, r.reference) for r in rows] == [("shallow", "ResNet-10 (dense)", NARROW),
                                                                 ("shallow", "ResNet-10 (dense)", WIDE)]
    per_seed = {"mIoU": {c.encoder: {} for c in cells}}
    for cell in cells:
        per_seed["mIoU"][cell.encoder][cell.seed] = cell.miou
    assert any(line.startswith(f"| {WIDE} - {NARROW} | mIoU | +10.00") for line in effect_lines(rows, per_seed))
    plot_miou_vs_storage(rows, tmp_path / "figure.png")
    assert Image.open(tmp_path / "figure.png").size[0] > 800


def test_it_folds_packs_and_the_export_tool_names_what_it_loads_into(family, tmp_path, capsys):
    model = repeatseg.build_segmenter(WIDE, classes=3).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(repeatseg.fold(model)(x), expected)
        repeatseg.pack(model, tmp_path / "packed.safetensors", {"encoder": WIDE, "classes": 3})
        torch.testing.assert_close(repeatseg.load_packed(tmp_path / "packed.safetensors")(x), expected)
    export = load_tool("export")
    args = Namespace(fold=True, pack=False, fuse_bn=False, output=str(tmp_path / "folded.safetensors"))
    assert export.export(args, model, {"encoder": WIDE, "classes": "3"}) == 0
    assert f"repeatseg.build_segmenter({WIDE!r}" in capsys.readouterr().out
