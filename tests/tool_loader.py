"""Load a script of ``tools/`` as a module, so tests call its ``main()`` in-process."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "tools") not in sys.path:  # what ``python tools/x.py`` puts first: the tools' own helpers
    sys.path.append(str(ROOT / "tools"))


def load_tool(name: str) -> ModuleType:
    """``tools/<name>.py`` as a fresh module."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
