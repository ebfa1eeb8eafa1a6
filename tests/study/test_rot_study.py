"""The rotation study (Table 4): a classification study without cells through tools/transfer_study.py,
its report's statistics, its bill, and the authors' schedule."""

import json
import math
import statistics
from pathlib import Path

import pytest
import torch
import yaml

from repeatseg.config import ClsConfig, StudyConfig, load_config
from repeatseg.engine.optim import build_scheduler
from repeatseg.study.classification_report import Run, fieller_interval, summarise, welch_interval
from repeatseg.study.runner import plan_units

TINY_SETS = ["data.rot_per_class=[2,1]", "schedule.epochs=2", "schedule.milestones=[1]", "train.batch_size=10",
             "train.log_mode=quiet", "data.workers=0", "train.eval_batch_size=10"]


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    """rotcnn_vanilla and rotcnn_s_c4, two seeds, 20 training digits, 2 epochs, run once."""
    from tests.tool_loader import load_tool

    root = tmp_path_factory.mktemp("rot_study")
    config = root / "study.yaml"
    config.write_text(yaml.safe_dump({
        "encoders": ["rotcnn_vanilla", "rotcnn_s_c4"], "seeds": [0, 1], "cells": False,
        "pretrain": {"enabled": True, "config": "configs/cls/rot_digits.yaml",
                     "sets": [f"data.root={root / 'data'}", *TINY_SETS], "tag": "tiny"}}))
    tool = load_tool("transfer_study")
    code = tool.main(tool.get_args_parser().parse_args(["--config", str(config), "--output", str(root / "study")]))
    return code, config, root / "study", tool


def test_classification_study_trains_every_pair_and_writes_table_4(tiny_study):
    code, _, study_dir, _ = tiny_study
    assert code == 0
    assert not (study_dir / "cells").exists() and not (study_dir / "weights").exists()
    result = json.loads((study_dir / "results.json").read_text())
    rows = {row["model"]: row for row in result["rows"]}
    assert [rows[m]["n"] for m in ("rotcnn_vanilla", "rotcnn_s_c4")] == [2, 2]
    assert rows["rotcnn_vanilla"]["macs"] == 27_976_400 and rows["rotcnn_vanilla"]["paper_top1"] == pytest.approx(0.926)
    assert rows["rotcnn_s_c4"]["contrast"] == ["rotcnn_c4", "rotcnn_vanilla"]
    assert rows["rotcnn_s_c4"]["rel_contribution_last"] is None  # the RE-CNN was not run
    for run in result["runs"]:
        assert run["epochs"] == [1, 2]  # evaluated every epoch
    report = (study_dir / "report.md").read_text()
    assert "Table 4" in report and "top-1 best" in report and "paper top-1" in report
    assert (study_dir / "figures" / "test_top1_per_epoch.png").stat().st_size > 0
    assert (study_dir / "results.csv").read_text().splitlines()[0].startswith("model,label,kind,n,last_mean")


def test_the_quoted_table_is_the_reports_recomputed_from_the_runs(tiny_study):
    from repeatseg.study.published import quoted_tables

    _, _, study_dir, _ = tiny_study
    quoted = quoted_tables(study_dir)
    table = [line for line in quoted.splitlines() if line.startswith("| rotcnn_")]
    assert [line.split(" | ")[1] for line in table[:2]] == ["2", "2"]  # n of vanilla and s_c4
    report = (study_dir / "report.md").read_text()
    assert all(line in report for line in table)  # the same rows the report shows
    assert quoted.endswith("when units started.") and quoted.splitlines()[-1].startswith("4 units, ")


def test_eval_cls_measures_the_same_models_under_the_authors_test_protocol(tiny_study, capsys):
    """tools/eval_cls.py re-evaluates a run's last checkpoint with --set (here the authors' pad-only
    test digits); the report pairs it with the study's own last-epoch top-1 run by run."""
    from repeatseg.study.classification_report import alternate_evaluations, protocol_lines, read_run
    from tests.tool_loader import load_tool

    _, config, study_dir, _ = tiny_study
    tool = load_tool("eval_cls")
    runs = []
    for model in ("rotcnn_vanilla", "rotcnn_s_c4"):
        for seed in (0, 1):
            run_dir = study_dir / "pretrain" / model / f"seed{seed}"
            again = ["--run", str(run_dir), "--which", "last", "--threads", "1"]
            assert tool.main(tool.get_args_parser().parse_args(again)) == 0  # the study's own protocol
            assert json.loads(capsys.readouterr().out.splitlines()[-1])["top1"] == pytest.approx(
                json.loads((run_dir / "metrics.json").read_text())["top1"])
            assert tool.main(tool.get_args_parser().parse_args(
                [*again, "--set", "data.eval_resample=false", "--output", str(run_dir / "eval_authors")])) == 0
            runs.append(read_run(run_dir, model, seed))
    record = json.loads((study_dir / "pretrain/rotcnn_s_c4/seed1/eval_authors/metrics.json").read_text())
    assert record["which"] == "last" and record["sets"] == ["data.eval_resample=false"] and record["images"] == 10
    values = alternate_evaluations(runs)["authors"]
    assert set(values) == {(m, s) for m in ("rotcnn_vanilla", "rotcnn_s_c4") for s in (0, 1)}
    rows = summarise(runs, ["rotcnn_vanilla", "rotcnn_s_c4"], 29)
    table = [line for line in protocol_lines(runs, rows) if line.startswith("| rotcnn_s_c4")]
    difference = statistics.fmean(r.last - values[(r.model, r.seed)] for r in runs if r.model == "rotcnn_s_c4")
    assert table and table[0].split(" | ")[4] == f"{100 * difference:+.2f}"
    bad = tool.main(tool.get_args_parser().parse_args(["--run", str(study_dir), "--which", "last"]))
    assert bad != 0 and "config.yaml" in capsys.readouterr().err  # the study folder is not a run
    run_dir = study_dir / "pretrain/rotcnn_vanilla/seed0"
    for output, says in ((run_dir / "metrics.json", "is a file"), (study_dir.parent / "data" / "train", "inside the dataset")):
        before = sorted(p for p in output.parent.rglob("*"))
        code = tool.main(tool.get_args_parser().parse_args(["--run", str(run_dir), "--output", str(output)]))
        assert code != 0 and says in capsys.readouterr().err
        assert sorted(p for p in output.parent.rglob("*")) == before  # nothing written or removed


def test_rerunning_a_finished_classification_study_trains_nothing(tiny_study):
    _, config, study_dir, tool = tiny_study
    timing = (study_dir / "timing.jsonl").read_text()
    assert tool.main(tool.get_args_parser().parse_args(["--config", str(config), "--output", str(study_dir)])) == 0
    assert (study_dir / "timing.jsonl").read_text() == timing


def test_plan_bills_the_classification_units_only(tiny_study, capsys):
    _, config, _, tool = tiny_study
    assert tool.main(tool.get_args_parser().parse_args(["--config", str(config), "--plan", "--json"])) == 0
    plan = json.loads(capsys.readouterr().out)
    assert [u["kind"] for u in plan["units"]] == ["pretrain"] * 4
    vanilla = plan["units"][0]
    assert (vanilla["encoder"], vanilla["macs"], vanilla["steps"], vanilla["eval_images"]) == ("rotcnn_vanilla",
                                                                                               27_976_400, 4, 20)


def test_a_classification_study_needs_its_classification_runs():
    study = StudyConfig(encoders=["rotcnn_vanilla"], cells=False)
    from repeatseg.engine.distributed import DistInfo
    from repeatseg.study.runner import run_study

    with pytest.raises(ValueError, match="pretrain.enabled"):
        run_study(study, Path("/nonexistent"), DistInfo())
    assert plan_units(study, Path("/x")) == []


# ------------------------------------------------------------------------------ statistics

def _runs(values: dict[str, list[float]]) -> list[Run]:
    return [Run(model, seed, f"/runs/{model}/{seed}", [1, 2], [v - 0.01, v])
            for model, per_seed in values.items() for seed, v in enumerate(per_seed)]


def test_relative_contribution_has_the_delta_se_and_a_fieller_interval_around_it(monkeypatch):
    from repeatseg.study import classification_report

    monkeypatch.setattr(classification_report, "describe", lambda name, size: type(
        "Stats", (), {"trainable_params": 1, "packed_bytes": 4, "macs": 10})())
    values = {"rotcnn_vanilla": [0.900, 0.905, 0.895], "rotcnn_c4": [0.960, 0.965, 0.955],
              "rotcnn_s_c4": [0.915, 0.925, 0.920]}
    rows = {r.model: r for r in summarise(_runs(values), list(values), 29)}
    row = rows["rotcnn_s_c4"]
    assert row.rel_contribution_last == pytest.approx((0.92 - 0.90) / (0.96 - 0.90))
    low, high = row.rel_contribution_last_ci
    assert low < row.rel_contribution_last < high
    t = 4.302652729911275  # Student t, 97.5 %, 2 degrees of freedom
    assert high - low == pytest.approx(2 * t * row.rel_contribution_last_se, rel=0.35)  # Fieller ~ delta here
    assert row.best_mean == pytest.approx(0.92) and row.best_epoch_mean == 2
    assert rows["rotcnn_vanilla"].last_se == pytest.approx(statistics.stdev(values["rotcnn_vanilla"]) / math.sqrt(3))


def test_share_of_dense_is_unresolved_when_the_dense_control_gains_nothing(monkeypatch):
    from repeatseg.study import classification_report

    monkeypatch.setattr(classification_report, "describe", lambda name, size: type(
        "Stats", (), {"trainable_params": 1, "packed_bytes": 4, "macs": 10})())
    values = {"rotcnn_vanilla": [0.690, 0.695, 0.685], "rotcnn_c4": [0.895, 0.90, 0.89],
              "rotcnn_s_c4": [0.72, 0.73, 0.71], "rotcnn_dense_c4": [0.69, 0.70, 0.68]}
    rows = {r.model: r for r in summarise(_runs(values), list(values), 29)}
    assert rows["rotcnn_s_c4"].share_of_dense_last_ci == (-math.inf, math.inf)
    line = next(line for line in classification_report.table_lines(list(rows.values())) if "rotcnn_s_c4" in line)
    assert "| unresolved |" in line and "14.6" in line  # (0.72 - 0.69) / (0.895 - 0.69), the rel. contribution
    values["rotcnn_dense_c4"] = [0.80, 0.81, 0.79]  # a resolved dense gain: the share is a number
    rows = {r.model: r for r in summarise(_runs(values), list(values), 29)}
    assert rows["rotcnn_s_c4"].share_of_dense_last == pytest.approx(0.03 / 0.11)
    assert math.isfinite(rows["rotcnn_s_c4"].share_of_dense_last_ci[1])


def test_fieller_interval_is_unbounded_when_the_gain_it_divides_by_is_not_resolved():
    assert fieller_interval([0.91, 0.93, 0.92], [0.905, 0.93, 0.90], [0.90, 0.92, 0.91]) == (-math.inf, math.inf)
    assert fieller_interval([0.9], [0.95, 0.96], [0.9, 0.91]) is None
    low, high = welch_interval([0.96, 0.965, 0.955], [0.90, 0.905, 0.895])
    assert 0 < low < 0.06 < high


# ------------------------------------------------------------------------------ recipes

def _epoch_lrs(config: str) -> list[float]:
    cfg = load_config(ClsConfig, [config])
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=cfg.optim.lr)
    steps_per_epoch = 3
    scheduler = build_scheduler(optimizer, cfg.schedule, cfg.schedule.epochs * steps_per_epoch, steps_per_epoch)
    lrs = []
    for step in range(cfg.schedule.epochs * steps_per_epoch):
        if step % steps_per_epoch == 0:
            lrs.append(optimizer.param_groups[0]["lr"])
        scheduler.step_update(step + 1)
    return lrs


def test_authors_config_holds_the_lr_ten_epochs_then_decays_it_by_0_8_per_epoch():
    cfg = load_config(ClsConfig, ["configs/cls/rot_mnist_authors.yaml"])
    assert (cfg.optim.name, cfg.optim.weight_decay, cfg.optim.no_decay, cfg.optim.clip_grad_norm) == ("adam", 1e-7, [], 1.0)
    assert (cfg.train.batch_size, cfg.train.amp, cfg.train.eval_every, cfg.data.dataset) == (64, "none", 1, "mnist_rot")
    assert cfg.data.eval_resample is False  # the authors pad the test digits only
    expected = [1e-3 * 0.8 ** max(0, epoch - 9) for epoch in range(30)]  # the authors' LambdaLR
    assert _epoch_lrs("configs/cls/rot_mnist_authors.yaml") == pytest.approx(expected, rel=1e-6)


def test_cpu_recipe_keeps_the_authors_schedule_shape():
    lrs, authors = _epoch_lrs("configs/cls/rot_digits.yaml"), _epoch_lrs("configs/cls/rot_mnist_authors.yaml")
    held = next(i for i, lr in enumerate(lrs) if lr < lrs[0])
    assert held >= len(lrs) / 3 and all(b < a for a, b in zip(lrs[held - 1:], lrs[held:]))  # held, then decays
    assert lrs[-1] / lrs[0] == pytest.approx(authors[-1] / authors[0], rel=0.1)  # to the authors' final factor
    assert statistics.fmean(lrs) / lrs[0] == pytest.approx(statistics.fmean(authors) / authors[0], abs=0.1)
    study = load_config(StudyConfig, ["configs/study/rot_digits.yaml"])
    assert not study.cells and study.pretrain.enabled and len(study.seeds) >= 3
    assert {"rotcnn_vanilla", "rotcnn_c4", "rotcnn_s_c4", "rotcnn_c8", "rotcnn_s_c8"} <= set(study.encoders)
