"""The transfer study: aggregation against hand-computed numbers, skip/resume, report, end to end."""

import json
import math
from pathlib import Path

import pytest
import torch
from PIL import Image

from repeatseg.config import StudyConfig, load_config, save_config
from repeatseg.study import aggregate, runner
from repeatseg.study.aggregate import read_cell, relative_contribution, summarise
from repeatseg.study.processes import at_threads, planned_threads
from repeatseg.study.report import CSV_COLUMNS, FIGURES
from tests.tool_loader import load_tool

ROOT = Path(__file__).resolve().parents[2]
FAKE = {  # encoder -> mIoU per seed (pixel accuracy = mIoU + 0.3)
    "dense_r18_w1_b8": [0.50, 0.52, 0.54],
    "dense_r18_w2_b8": [0.60, 0.64, 0.62],
    "repeat_r18_f2_b8": [0.55, 0.57, 0.56],
}


def fake_cells(study_dir):
    cells = []
    for encoder, values in FAKE.items():
        for seed, miou in enumerate(values):
            run = study_dir / "cells" / encoder / f"seed{seed}"
            run.mkdir(parents=True)
            (run / "metrics.json").write_text(json.dumps({
                "miou": miou, "pixel_acc": miou + 0.3, "train_images_per_s": 10.0 + seed,
                "per_class_iou": {"background": 0.9, "aeroplane": miou}}))
            cells.append(read_cell(run, encoder, seed))
    return cells


def test_aggregation_matches_hand_computed_numbers(tmp_path):
    rows = {r.encoder: r for r in summarise(fake_cells(tmp_path), list(FAKE), input_size=64, classes=21)}
    base, dense, repeat = rows["dense_r18_w1_b8"], rows["dense_r18_w2_b8"], rows["repeat_r18_f2_b8"]
    assert base.n == 3 and base.miou_mean == pytest.approx(0.52) and base.miou_std == pytest.approx(0.02)
    assert dense.miou_mean == pytest.approx(0.62) and dense.miou_std == pytest.approx(0.02)
    assert repeat.miou_mean == pytest.approx(0.56) and repeat.miou_std == pytest.approx(0.01)
    assert repeat.pixel_acc_mean == pytest.approx(0.86) and repeat.train_images_per_s == pytest.approx(11.0)
    # (0.56 - 0.52) / (0.62 - 0.52) = 0.4; standard errors 0.01/sqrt3, 0.02/sqrt3, 0.02/sqrt3;
    # partials 1/0.1 = 10, -(0.04)/0.01 = -4, (0.56 - 0.62)/0.01 = -6.
    se_r, se_d, se_b = 0.01 / math.sqrt(3), 0.02 / math.sqrt(3), 0.02 / math.sqrt(3)
    expected_std = math.sqrt((10 * se_r) ** 2 + (4 * se_d) ** 2 + (6 * se_b) ** 2)
    assert repeat.rel_contribution == pytest.approx(0.4)
    assert repeat.rel_contribution_std == pytest.approx(expected_std)
    assert base.rel_contribution is None and dense.rel_contribution is None
    assert repeat.per_class_iou["aeroplane"] == pytest.approx(0.56)
    from repeatseg import describe

    stats = describe("repeat_r18_f2_b8", input_size=64, segmenter=True)
    assert (repeat.trainable_params, repeat.packed_bytes, repeat.macs) == (stats.trainable_params, stats.packed_bytes,
                                                                            stats.macs)
    assert repeat.packed_bytes < dense.packed_bytes


def test_relative_contribution_edge_cases():
    value, std = relative_contribution([0.6], [0.7], [0.5])
    assert value == pytest.approx(0.5) and math.isnan(std)  # one seed: no spread to propagate
    assert all(math.isnan(v) for v in relative_contribution([0.6, 0.6], [0.5, 0.5], [0.5, 0.5]))


def test_paper_numbers_give_its_relative_contributions():
    assert aggregate.paper_relative_contribution("repeat_r18_f2") == pytest.approx(0.50, abs=0.005)
    assert aggregate.paper_relative_contribution("repeat_r18_f4") == pytest.approx(0.588, abs=0.005)


def test_finished_cells_are_skipped_and_started_ones_resumed(tmp_path, monkeypatch):
    study = load_config(StudyConfig, sets=["encoders=[dense_r18_w1_b8, repeat_r18_f2_b8]", "seeds=[0, 1]",
                                           "seg_config=configs/seg/demo.yaml"])
    finished = tmp_path / "cells/dense_r18_w1_b8/seed0"
    finished.mkdir(parents=True)
    (finished / "metrics.json").write_text("{}")
    started = tmp_path / "cells/repeat_r18_f2_b8/seed0"
    (started / "checkpoints").mkdir(parents=True)
    (started / "checkpoints/last.state.pt").write_bytes(b"")
    cell = next(c for c in runner.plan_cells(study, tmp_path) if c.run_dir == started)
    as_started = at_threads(study, planned_threads(study, tmp_path))  # the count the study runs its units at
    save_config(runner.fresh_seg_config(as_started, cell, None), started / "config.yaml")  # as the cell started
    calls = []

    def fake_train(cfg, run_dir, dist, resume=False):
        calls.append((Path(run_dir).relative_to(tmp_path).as_posix(), resume, cfg.model.encoder, cfg.train.seed))
        (Path(run_dir) / "metrics.json").parent.mkdir(parents=True, exist_ok=True)
        (Path(run_dir) / "metrics.json").write_text("{}")

    import repeatseg.engine.seg as seg

    monkeypatch.setattr(seg, "train_segmentation", fake_train)
    runner.run_study(study, tmp_path, runner.DistInfo())
    assert calls == [("cells/repeat_r18_f2_b8/seed0", True, "repeat_r18_f2_b8", 0),  # seed-major order
                     ("cells/dense_r18_w1_b8/seed1", False, "dense_r18_w1_b8", 1),
                     ("cells/repeat_r18_f2_b8/seed1", False, "repeat_r18_f2_b8", 1)]
    calls.clear()
    runner.run_study(study, tmp_path, runner.DistInfo())
    assert calls == []  # everything finished: nothing runs again


def test_pretraining_runs_per_encoder_and_seed_and_feeds_that_seeds_cell(tmp_path, monkeypatch):
    study = load_config(StudyConfig, sets=["encoders=[dense_r18_w1_b8, dense_r18_w2_b8]", "seeds=[0, 1]",
                                           "seg_config=configs/seg/digits.yaml", "pretrain.enabled=true",
                                           "pretrain.config=configs/cls/digits.yaml", "pretrain.tag=digits"])
    done = tmp_path / "weights/dense_r18_w1_b8-digits-seed0.safetensors"  # already pretrained and exported
    done.parent.mkdir(parents=True)
    done.write_bytes(b"")
    calls = []

    def fake_pretrain(cfg, run_dir, dist, resume=False):
        calls.append(("pretrain", Path(run_dir).relative_to(tmp_path).as_posix(), cfg.model.name, cfg.train.seed))
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        (Path(run_dir) / "metrics.json").write_text('{"top1": 0.5}')

    def fake_export(run_dir, weights, which="best"):
        assert which == "last"  # never an epoch chosen on the held-out split
        Path(weights).write_bytes(b"")

    def fake_cell(cfg, run_dir, dist, resume=False):
        calls.append(("cell", Path(run_dir).relative_to(tmp_path).as_posix(),
                      Path(cfg.model.encoder_weights).name, cfg.train.seed))
        (Path(run_dir) / "metrics.json").parent.mkdir(parents=True, exist_ok=True)
        (Path(run_dir) / "metrics.json").write_text("{}")

    import repeatseg.engine.cls as cls
    import repeatseg.engine.seg as seg

    monkeypatch.setattr(cls, "train_classification", fake_pretrain)
    monkeypatch.setattr(seg, "train_segmentation", fake_cell)
    monkeypatch.setattr(runner, "export_encoder", fake_export)
    runner.run_study(study, tmp_path, runner.DistInfo())
    assert calls == [
        ("cell", "cells/dense_r18_w1_b8/seed0", "dense_r18_w1_b8-digits-seed0.safetensors", 0),
        ("pretrain", "pretrain/dense_r18_w2_b8/seed0", "dense_resnet18_w2_b8", 0),
        ("cell", "cells/dense_r18_w2_b8/seed0", "dense_r18_w2_b8-digits-seed0.safetensors", 0),
        ("pretrain", "pretrain/dense_r18_w1_b8/seed1", "dense_resnet18_w1_b8", 1),
        ("cell", "cells/dense_r18_w1_b8/seed1", "dense_r18_w1_b8-digits-seed1.safetensors", 1),
        ("pretrain", "pretrain/dense_r18_w2_b8/seed1", "dense_resnet18_w2_b8", 1),
        ("cell", "cells/dense_r18_w2_b8/seed1", "dense_r18_w2_b8-digits-seed1.safetensors", 1),
    ]
    timing = [json.loads(line) for line in (tmp_path / "timing.jsonl").read_text().splitlines()]
    assert [(t["kind"], t["encoder"], t["seed"]) for t in timing][:2] == [("cell", "dense_r18_w1_b8", 0),
                                                                         ("pretrain", "dense_r18_w2_b8", 0)]
    assert all(t["seconds"] >= 0 and "load_before" in t for t in timing)
    assert {t["cpu_capability"] for t in timing} == {torch.backends.cpu.get_cpu_capability()}  # what reproduces
    assert all(t["cpu"] and t["torch"] == torch.__version__ for t in timing)
    for weights in (tmp_path / "weights").iterdir():  # a published study keeps no weights
        weights.unlink()
    calls.clear()
    runner.run_study(study, tmp_path, runner.DistInfo())
    assert calls == []  # its finished cells need no pretraining again


def _tool():
    return load_tool("transfer_study")


@pytest.fixture(scope="module")
def smoke_study(tmp_path_factory):
    """A 2-encoder, 1-seed, few-iteration study, end to end through the command line."""
    from repeatseg.data.synthetic import make_synthetic_voc

    root = tmp_path_factory.mktemp("study")
    make_synthetic_voc(root / "voc", num_train=8, num_val=3, min_size=64, max_size=80, classes=(1, 7))
    config = root / "study.yaml"
    config.write_text(
        "encoders: [dense_r18_w1_b8, repeat_r18_f2_b8]\nseeds: [0]\nseg_config: configs/seg/demo.yaml\n"
        f"seg_sets: ['data.root={root / 'voc'}', data.dataset=voc, data.crop_size=64, data.workers=0, "
        "train.batch_size=4, schedule.epochs=null, schedule.iters=3, schedule.warmup_iters=0, "
        "train.log_mode=quiet, train.eval_batch_size=3]\n")
    tool = _tool()
    code = tool.main(tool.get_args_parser().parse_args(["--config", str(config), "--output", str(root / "out")]))
    assert code == 0
    return root / "out"


def _valid_png(path):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        image.verify()


def test_smoke_study_writes_a_complete_report(smoke_study):
    report = (smoke_study / "report.md").read_text()
    for encoder in ("dense_r18_w1_b8", "repeat_r18_f2_b8"):
        assert f"| {encoder} | 1 |" in report
    for name in FIGURES:
        _valid_png(smoke_study / "figures" / name)
        assert f"figures/{name}" in report
    header = (smoke_study / "results.csv").read_text().splitlines()[0].split(",")
    assert header[: len(CSV_COLUMNS)] == CSV_COLUMNS
    rows = json.loads((smoke_study / "results.json").read_text())["rows"]
    assert all(0 <= r["miou_mean"] <= 1 and r["macs"] > 0 and r["packed_bytes"] > 0 for r in rows)


def test_report_only_rebuilds_from_finished_cells(smoke_study):
    for name in ("report.md", "results.csv", "results.json"):
        (smoke_study / name).unlink()
    for name in FIGURES:
        (smoke_study / "figures" / name).unlink()
    tool = _tool()
    before = sorted(p.stat().st_mtime for p in (smoke_study / "cells").rglob("last.safetensors"))
    assert tool.main(tool.get_args_parser().parse_args(["--report-only", "--output", str(smoke_study)])) == 0
    assert (smoke_study / "report.md").is_file() and (smoke_study / "results.csv").is_file()
    for name in FIGURES:
        _valid_png(smoke_study / "figures" / name)
    after = sorted(p.stat().st_mtime for p in (smoke_study / "cells").rglob("last.safetensors"))
    assert before == after  # no cell trained again


def test_paired_gap_removes_a_shared_seed_effect():
    from repeatseg.study.aggregate import gap, paired_gap

    seed_effect = {0: 0.0, 1: -0.10, 2: 0.08, 3: -0.04}
    base = {s: 0.30 + e for s, e in seed_effect.items()}
    wide = {s: 0.35 + e + (0.01 if s % 2 else -0.01) for s, e in seed_effect.items()}
    unpaired, unpaired_se = gap(list(wide.values()), list(base.values()))
    paired, paired_se, pairs = paired_gap(wide, {**base, 9: 0.5})  # seed 9 has no partner
    assert pairs == 4 and paired == pytest.approx(unpaired) == pytest.approx(0.05)
    assert paired_se == pytest.approx(0.01 * (4 / 3) ** 0.5 / 2) and paired_se < unpaired_se / 5  # sd / sqrt(n)


def test_a_study_finds_its_nested_configs_from_any_folder(tmp_path, monkeypatch):
    from repeatseg.study.runner import resolve_config_paths

    monkeypatch.chdir(tmp_path)  # not the repository
    study = load_config(StudyConfig, [ROOT / "configs/study/digits_precision.yaml"])
    resolved = resolve_config_paths(study, ROOT / "configs/study/digits_precision.yaml")
    assert Path(resolved.seg_config) == ROOT / "configs/seg/digits.yaml"
    assert Path(resolved.pretrain.config) == ROOT / "configs/cls/digits.yaml"
    monkeypatch.chdir(ROOT)  # from the repository the paths stay as written (study.yaml records them)
    again = resolve_config_paths(load_config(StudyConfig, ["configs/study/digits_precision.yaml"]),
                                 Path("configs/study/digits_precision.yaml"))
    assert again.seg_config == "configs/seg/digits.yaml"
