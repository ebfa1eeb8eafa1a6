"""Straight-through sign for f-RepeatNet's learnable flips.

The forward value is exactly +1 or -1 (never 0: ``torch.sign(0) == 0`` would erase a weight).
The backward pass uses the derivative of a surrogate instead of sign's zero derivative:

- ``"clamp"`` (default, the authors' RepeatNet code): d/ds clamp(s, -1, 1), i.e. 1 for |s| <= 1, else 0.
- ``"bireal"`` (Bi-Real Net): d/ds of the piecewise polynomial approximation, 2 - 2|s| for |s| < 1, else 0.

``surrogate_grad`` is the one definition of both rules: ``sign_ste`` (the plain-ops path) and
the fused generations' backward (``transforms.py``, ``coarse_flip.py``) all call it.
``sign_ste`` is written as ``hard + (s - s.detach()) * slope`` rather than an
``autograd.Function``, so that ``torch.export`` and ``torch.compile(fullgraph=True)`` trace it as
ordinary tensor ops; its forward value is ``hard`` to the bit (``s - s.detach()`` is exactly zero).
"""

from __future__ import annotations

from typing import Optional

import torch

from ..errors import ConfigError

GRADIENT_RULES = ("clamp", "bireal")


def hard_sign(scores: torch.Tensor) -> torch.Tensor:
    """+1 where ``scores >= 0``, -1 elsewhere (zero maps to +1)."""
    one = torch.ones((), dtype=scores.dtype, device=scores.device)
    return torch.where(scores >= 0, one, -one)


def surrogate_grad(scores: torch.Tensor, rule: str = "clamp", out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """d sign_ste / d scores under ``rule``, written into ``out`` when given (a buffer of the
    scores' shape and dtype: the fused backward reuses one). Arithmetic in place, no ``where``."""
    scores = scores.detach()  # a gradient, never differentiated itself
    magnitude = torch.abs(scores, out=out) if out is not None else scores.abs()
    if rule == "clamp":  # 1 inside |s| <= 1 (le_ writes 1.0 / 0.0 in the float dtype)
        return magnitude.le_(1.0)
    if rule == "bireal":  # 2 - 2|s| inside |s| < 1, 0 outside
        return magnitude.mul_(-2.0).add_(2.0).clamp_(min=0.0)
    raise ConfigError("unknown sign gradient rule " + rule + "; expected one of ('clamp', 'bireal')")


def sign_ste(scores: torch.Tensor, rule: str = "clamp") -> torch.Tensor:
    """Sign in {-1, +1} with the straight-through gradient ``surrogate_grad(scores, rule)``."""
    hard = hard_sign(scores).detach()
    slope = surrogate_grad(scores, rule)
    return hard + (scores - scores.detach()) * slope
