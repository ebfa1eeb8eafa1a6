"""The digits study on a tiny grid, end to end through the command line: per-seed pretraining on a
few real digits, fine-tuning on a few scenes, and a report with both sides."""

import importlib.util
import json
from pathlib import Path

import pytest

from repeatseg.data.digits import SceneStyle, load_mnist_5k, stratified_split, write_classification, write_scenes

ROOT = Path(__file__).resolve().parents[2]
ENCODERS = ["dense_r18_w1_b8", "dense_r18_w2_b8", "repeat_r18_f2_b8"]


@pytest.fixture(scope="module")
def tiny_digits(tmp_path_factory):
    """A digits folder in make_digits' layout with 3 + 1 digits per class and 8 + 4 scenes."""
    root = tmp_path_factory.mktemp("digits")
    images, labels = load_mnist_5k()
    train, held_out = stratified_split(labels, seed=0)
    few_train = [r for d in range(10) for r in train[labels[train] == d][:3]]
    few_held_out = [r for d in range(10) for r in held_out[labels[held_out] == d][:1]]
    write_classification(root / "cls", images, labels, {"train": few_train, "val": few_held_out})
    write_scenes(root / "seg", images, labels, {"train": (train, 8), "val": (held_out, 4)}, seed=0,
                 style=SceneStyle())
    return root


@pytest.fixture(scope="module")
def digits_study(tiny_digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "digits"
    spec = importlib.util.spec_from_file_location("transfer_study", ROOT / "tools" / "transfer_study.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    args = ["--config", "configs/study/digits.yaml", "--output", str(out),
            "--set", f"encoders={ENCODERS}", "--set", "seeds=[0, 1]",
            "--set", f"seg_sets=[data.root={tiny_digits}, schedule.iters=2, schedule.warmup_iters=0, "
                     "train.batch_size=4, data.workers=0, train.eval_batch_size=4, train.log_mode=quiet]",
            "--set", f"pretrain.sets=[data.root={tiny_digits}, schedule.epochs=1, schedule.warmup_iters=0, "
                     "train.batch_size=10, data.workers=0, train.eval_batch_size=10, train.log_mode=quiet]"]
    assert tool.main(tool.get_args_parser().parse_args(args)) == 0
    return out


def test_every_encoder_is_pretrained_once_per_seed(digits_study):
    weights = sorted(p.name for p in (digits_study / "weights").iterdir())
    assert weights == sorted(f"{e}-digits-seed{s}.safetensors" for e in ENCODERS for s in (0, 1))
    first, second = (digits_study / "weights" / f"dense_r18_w1_b8-digits-seed{s}.safetensors" for s in (0, 1))
    assert first.read_bytes() != second.read_bytes()  # the seed reaches pretraining
    for seed in (0, 1):
        config = (digits_study / "cells" / "repeat_r18_f2_b8" / f"seed{seed}" / "config.yaml").read_text()
        assert f"repeat_r18_f2_b8-digits-seed{seed}.safetensors" in config


def test_the_report_has_both_sides_with_uncertainties(digits_study):
    rows = {r["encoder"]: r for r in json.loads((digits_study / "results.json").read_text())["rows"]}
    assert all(rows[e]["n"] == 2 and rows[e]["top1_n"] == 2 for e in ENCODERS)
    assert "digit_7" in rows["dense_r18_w1_b8"]["per_class_iou"]
    assert rows["repeat_r18_f2_b8"]["top1_rel_contribution"] is not None or \
        rows["dense_r18_w2_b8"]["top1_mean"] == rows["dense_r18_w1_b8"]["top1_mean"]  # equal means: undefined
    report = (digits_study / "report.md").read_text()
    assert "## Pretraining (classification)" in report and "| repeat_r18_f2_b8 | 2 |" in report
    assert "| dense_r18_w2_b8 - dense_r18_w1_b8 | mIoU |" in report
    assert "| dense_r18_w2_b8 - dense_r18_w1_b8 | top-1 |" in report
    assert "pretraining and fine-tuning variance" in report and "## Wall time" in report


def test_the_exported_encoders_record_the_recipe_the_study_computed_before_running(digits_study, tmp_path):
    from repeatseg.config import StudyConfig, load_config
    from repeatseg.study.recipes import encoder_recipes
    from repeatseg.weights import read_metadata

    study = load_config(StudyConfig, [digits_study / "study.yaml"])
    before = encoder_recipes(study, tmp_path / "not_run_yet")  # from the pretraining config alone
    assert list(before.values()) == [ENCODERS]
    recorded = {read_metadata(path)["recipe"] for path in (digits_study / "weights").iterdir()}
    assert recorded == set(before)  # digits.yaml leaves num_classes to the data: still the same recipe


def test_every_run_records_whether_its_sharing_part_moved(digits_study):
    pretrained = json.loads((digits_study / "pretrain/repeat_r18_f2_b8/seed0/metrics.json").read_text())
    tuned = json.loads((digits_study / "cells/repeat_r18_f2_b8/seed0/metrics.json").read_text())
    for summary in (pretrained, tuned):
        assert 0.0 <= summary["sharing"]["moved"]["mean"] <= 1.0 and summary["sharing"]["moved"]["n"] > 0
    assert json.loads((digits_study / "cells/dense_r18_w1_b8/seed0/metrics.json").read_text())["sharing"] == {}
    report = (digits_study / "report.md").read_text()
    assert "## Validity diagnostics" in report and "## Uncertainty and precision targets" in report


def test_a_pair_rerun_from_its_committed_configs_reproduces_its_numbers(digits_study, tmp_path):
    from repeatseg.study.reproduce import reproduce_pair

    outcome = reproduce_pair(digits_study, "repeat_r18_f2_b8", 1, tmp_path / "rerun")
    assert outcome["miou"]["difference"] == 0.0 and outcome["top1"]["difference"] == 0.0
    assert outcome["machine"]["same_kind"] is True  # the study ran here: its timing records name this CPU
    assert json.loads((tmp_path / "rerun" / "reproduction.json").read_text())["miou"]["rerun"] == outcome["miou"]["rerun"]
