"""Every tool answers ``--help`` before it imports torch (a new user's first command is instant)."""

import subprocess
import sys
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[1] / "tools"
# Their parsers take defaults or shared flags from the package (repeatseg.cli, SceneStyle, WAIT_S):
# importing any of it loads torch. Left for the lead: see the issue 21a report.
PARSER_NEEDS_THE_PACKAGE = {"train_seg", "train_cls", "make_digits", "transfer_study"}

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


@pytest.mark.parametrize("tool", sorted(p.stem for p in TOOLS.glob("[!_]*.py") if p.stem not in PARSER_NEEDS_THE_PACKAGE))
def test_help_answers_before_torch_is_imported(tool):
    script = str(TOOLS / f"{tool}.py")
    result = subprocess.run([sys.executable, "-c", HELP.format(tools=str(TOOLS), script=script)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage:" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "[]"
