"""OpenMP's brief waits (repeatseg/openmp.py): set before torch loads, by the package and by every
tool, and never over the user's own choice or after torch loaded (where it would not apply)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHOW = "import os; print(os.environ.get('GOMP_SPINCOUNT'), os.environ.get('OMP_WAIT_POLICY'))"


def spin_after(code: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    result = subprocess.run([sys.executable, "-c", f"{code}\n{SHOW}"], capture_output=True, text=True, cwd=ROOT,
                            env={**clean, "PYTHONPATH": str(ROOT), **env}, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.parametrize("env, expected", [({}, "10000 None"), ({"GOMP_SPINCOUNT": "5"}, "5 None"),
                                           ({"OMP_WAIT_POLICY": "PASSIVE"}, "None PASSIVE")])
def test_a_tool_sets_the_spin_before_torch_loads_unless_the_user_chose(env, expected):
    tool_start = "import sys; sys.path.insert(0, 'tools'); import _interrupt; assert 'torch' not in sys.modules"
    assert spin_after(tool_start, **env) == expected


def test_import_repeatseg_sets_it_and_a_loaded_torch_is_left_alone():
    assert spin_after("import repeatseg") == "10000 None"
    assert spin_after("import torch, repeatseg") == "None None"  # too late to apply: not pretended
