"""Optional dependencies: what each extra of ``pip install repeatseg[...]`` holds, and ``require``,
which a module that needs one calls in place of a plain import.

The core (``import repeatseg``, the encoders in smp and timm, ``describe``, ``fold``, ``pack``) needs
torch, torchvision, timm, segmentation-models-pytorch, safetensors, numpy and pyyaml only. Training,
data, studies and figures need ``repeatseg[train]``; the real digits ``repeatseg[digits]``; ONNX export
``repeatseg[onnx]``; the rotation-equivariant models ``repeatseg[equivariant]``.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

from .errors import MissingExtraError

# import name -> the distribution pip installs it from, where the two differ
DISTRIBUTIONS = {"cv2": "opencv-python-headless", "PIL": "pillow", "sklearn": "scikit-learn"}


def require(module: str, extra: str) -> ModuleType:
    """``importlib.import_module(module)``, or a ``MissingExtraError`` whose one line names the extra
    to install when ``module`` (or its top-level package) is not installed. An installed package that
    fails to import for another reason raises its own error."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        parts = module.split(".")
        if error.name not in {".".join(parts[:i]) for i in range(1, len(parts) + 1)}:
            raise  # the package is there; something it imports is not: its own error says what
        top = parts[0]
        caller = sys._getframe(1).f_globals.get("__name__", "this module")
        raise MissingExtraError(f"{caller} needs {DISTRIBUTIONS.get(top, top)}, which is not installed: "
                                f"pip install 'repeatseg[{extra}]'") from None
