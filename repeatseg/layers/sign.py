"""Straight-through sign for f-RepeatNet's learnable flips.

The forward value is exactly +1 or -1 (never 0: ``torch.sign(0) == 0`` would erase a weight).
The backward pass uses the derivative of a surrogate instead of sign's zero derivative:

- ``"clamp"`` (default, the authors' RepeatNet code): d/ds clamp(s, -1, 1), i.e. 1 for |s| <= 1, else 0.
- ``"bireal"`` (Bi-Real Net): d/ds of the piecewise polynomial approximation, 2 - 2|s| for |s| < 1, else 0.

Written as ``hard + (soft - soft.detach())`` rather than an ``autograd.Function`` so that
``torch.export`` and ``torch.compile(fullgraph=True)`` trace it as ordinary tensor ops. The
forward value is ``hard`` to the bit: ``soft - soft.detach()`` is exactly zero.
"""

from __future__ import annotations

import torch

GRADIENT_RULES = ("clamp", "bireal")


def hard_sign(scores: torch.Tensor) -> torch.Tensor:
    """+1 where ``scores >= 0``, -1 elsewhere (zero maps to +1)."""
    one = torch.ones((), dtype=scores.dtype, device=scores.device)
    return torch.where(scores >= 0, one, -one)


def _surrogate(scores: torch.Tensor, rule: str) -> torch.Tensor:
    if rule == "clamp":
        return scores.clamp(-1.0, 1.0)
    if rule == "bireal":
        # (2 - |s|) * s has derivative 2 - 2|s|; masked to zero outside (-1, 1).
        inside = (scores.abs() < 1).to(scores.dtype)
        return (2.0 - scores.abs()) * scores * inside
    raise ValueError("unknown sign gradient rule " + rule + "; expected 'clamp' or 'bireal'")


def sign_ste(scores: torch.Tensor, rule: str = "clamp") -> torch.Tensor:
    """Sign in {-1, +1} with a straight-through gradient given by ``rule``."""
    hard = hard_sign(scores).detach()
    soft = _surrogate(scores, rule)
    return hard + (soft - soft.detach())


def surrogate_grad(scores: torch.Tensor, rule: str = "clamp") -> torch.Tensor:
    """Closed-form d sign_ste / d scores, for tests and documentation."""
    magnitude = scores.abs()
    if rule == "clamp":
        return (magnitude <= 1).to(scores.dtype)
    if rule == "bireal":
        return torch.where(magnitude < 1, 2.0 - 2.0 * magnitude, torch.zeros_like(scores))
    raise ValueError(f"unknown sign gradient rule {rule!r}; expected one of {GRADIENT_RULES}")
