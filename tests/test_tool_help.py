"""Every tool answers ``--help`` before it imports torch (a new user's first command is instant), and
what its parser writes out instead of importing (shared flags, defaults) agrees with the package."""

import argparse
import subprocess
import sys
from pathlib import Path

import pytest
from _common import add_common_arguments

from repeatseg.cli import COMMON_FLAGS, flag_overrides
from repeatseg.config import SegConfig, load_config
from repeatseg.data.digits import SceneStyle
from repeatseg.study import runner
from tests.tool_loader import load_tool

TOOLS = Path(__file__).resolve().parents[1] / "tools"

HELP = """
import runpy, sys
sys.path.insert(0, {tools!r})
sys.argv = [{script!r}, "--help"]
try:
    runpy.run_path({script!r}, run_name="__main__")
except SystemExit as stop:
    assert stop.code == 0, stop.code
print(sorted(name for name in ("torch", "repeatseg", "matplotlib") if name in sys.modules))
"""


@pytest.mark.parametrize("tool", sorted(p.stem for p in TOOLS.glob("[!_]*.py") ))
def test_help_answers_before_torch_is_imported(tool):
    script = str(TOOLS / f"{tool}.py")
    result = subprocess.run([sys.executable, "-c", HELP.format(tools=str(TOOLS), script=script)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage:" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_every_shared_training_flag_reaches_the_config():
    parser = argparse.ArgumentParser()
    add_common_arguments(parser)
    handled_apart = {"help", "config", "set", "resume", "epochs", "iters", "compile", "logger"}  # by run_training, flag_overrides
    assert {action.dest for action in parser._actions} == set(COMMON_FLAGS) | handled_apart
    args = parser.parse_args(["--data-root", "data", "--output", "run", "--iters", "7", "--batch-size", "3", "--lr", "0.5",
                              "--workers", "2", "--device", "cpu", "--seed", "9", "--amp", "bf16", "--compile",
                              "--log-mode", "plain", "--logger", "tensorboard", "--threads", "2"])
    cfg = load_config(SegConfig, overrides=flag_overrides(args, {}))
    assert (cfg.data.root, cfg.output, cfg.schedule.iters, cfg.schedule.epochs, cfg.train.batch_size, cfg.optim.lr,
            cfg.data.workers, cfg.train.device, cfg.train.seed, cfg.train.amp, cfg.train.compile, cfg.train.log_mode,
            cfg.train.loggers, cfg.train.threads) == ("data", "run", 7, None, 3, 0.5, 2, "cpu", 9, "bf16", True, "plain",
                                                      ["jsonl", "tensorboard"], 2)


def test_transfer_study_waits_and_polls_as_long_as_the_runner_by_default():
    args = load_tool("transfer_study").get_args_parser().parse_args([])
    assert (args.wait_minutes * 60, args.poll_seconds) == (runner.WAIT_S, runner.POLL_S)


def test_make_digits_draws_scenes_in_the_default_style_unless_told_otherwise():
    tool = load_tool("make_digits")
    args = tool.get_args_parser().parse_args(["--output", "x", "--canvas", "64"])
    tool.fill_style_defaults(args)
    default = SceneStyle()
    assert {flag: getattr(args, flag) for flag in tool.STYLE_FLAGS} == {
        flag: getattr(default, flag) for flag in tool.STYLE_FLAGS} | {"canvas": 64}
