"""tools/time_units.py: the unit commands parse, a unit's steps and loop time are read right, and the
comparison and the profile run end to end on a tiny digits folder."""

import json

import pytest
import torch
from tiny import write_tiny_digits

from tests.tool_loader import ROOT, load_tool

TINY = ["train.batch_size=10", "train.eval_batch_size=10", "schedule.warmup_iters=0"]


@pytest.fixture(scope="module")
def time_units():
    return load_tool("time_units")


@pytest.fixture(scope="module")
def tiny_digits(tmp_path_factory):
    """A complete digits folder with 3 + 1 digits per class and 10 + 4 scenes."""
    return write_tiny_digits(tmp_path_factory.mktemp("digits"), 3, 1, 10, 4)


@pytest.mark.parametrize("kind", ["pretrain", "cell"])
def test_unit_commands_parse_with_their_tools(time_units, kind, tmp_path):
    argv = time_units.unit_argv(kind, ROOT, tmp_path, tmp_path / "out", 5, ["optim.lr=0.01"], workers=0)
    tool = load_tool(time_units.KINDS[kind][0])
    args = tool.get_args_parser().parse_args(argv[1:])
    assert args.iters == 5 and args.workers == 0 and args.set == ["optim.lr=0.01"] and args.log_mode == "quiet"


def test_recipe_steps_follow_the_schedule_and_the_split(time_units, tiny_digits):
    assert time_units.recipe_steps("pretrain", ROOT, tiny_digits, ["train.batch_size=10"]) == 3 * (30 // 10)
    assert time_units.recipe_steps("cell", ROOT, tiny_digits, []) == 1000  # schedule.iters
    assert time_units.recipe_steps("cell", ROOT, tiny_digits, ["schedule.iters=null", "schedule.epochs=2",
                                                              "train.batch_size=5"]) == 2 * (10 // 5)


def test_loop_seconds_add_up_the_logged_windows(time_units, tmp_path):
    records = [{"step": 20, "images_per_s": 100.0}, {"epoch": 1, "step": 20, "val": {}},
               {"step": 30, "images_per_s": 50.0}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    seconds, steps = time_units.loop_seconds(tmp_path, batch_size=10)
    assert steps == 30 and seconds == pytest.approx(20 * 10 / 100 + 10 * 10 / 50)


@pytest.mark.slow
def test_a_comparison_of_the_tree_with_itself_finds_the_same_weights(time_units, tiny_digits, tmp_path, capsys):
    args = time_units.get_args_parser().parse_args(
        ["--kinds", "pretrain", "--repeats", "1", "--steps", "2", "--data-root", str(tiny_digits),
         "--json", str(tmp_path / "times.json"), *(f"--set={s}" for s in TINY)])
    assert time_units.main(args) == 0
    out = capsys.readouterr().out
    assert "EXTRAPOLATED" in out and "same weights" in out and "load (1, 5, 15 min)" in out
    (row,) = json.loads((tmp_path / "times.json").read_text())
    assert row["same_weights"] is True and row["steps"] == 9 and row["this_tree_s"] > 0 and len(row["load_before"]) == 3


def test_the_profile_accounts_for_the_phases_of_the_loop(time_units, tiny_digits, capsys):
    before = torch.get_num_threads()
    try:
        args = time_units.get_args_parser().parse_args(
            ["--profile", "pretrain", "--steps", "2", "--data-root", str(tiny_digits), "--top", "3",
             *(f"--set={s}" for s in TINY)])
        assert time_units.main(args) == 0
    finally:
        torch.set_num_threads(before)
    out = capsys.readouterr().out
    for phase in ("data", "forward", "backward", "optimizer", "evaluate", "checkpoint", "setup"):
        assert f"  {phase} " in out
    assert "EXTRAPOLATED" in out and "top 3 operators" in out


def test_units_started_together_are_timed_by_the_slowest(time_units, tiny_digits, tmp_path):
    seconds, run = time_units.time_unit("pretrain", ROOT, tiny_digits, tmp_path, 2, 9, 10, TINY, 1, 0, together=2)
    assert seconds > 0 and (run / "checkpoints" / "last.safetensors").is_file()
    assert len(list(tmp_path.iterdir())) == 1  # the second unit's folder is gone, the first kept for the comparison
    args = time_units.get_args_parser().parse_args(["--together", "0"])
    assert time_units.main(args) == 2
