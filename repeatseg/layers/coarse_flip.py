"""``c``: learned sign flips at a coarser grain, one bit per (child filter, input tile).

f-RepeatNet learns one sign per generated weight. This transform learns one sign per parent
filter and tile: psi_ij(P)[a] = S_ij[a] * P[a], so child filter ``i*n + a`` reads input block j
with parent filter a, flipped or not as a whole. Output tiles then differ by which input blocks
they add and which they subtract (2^tile_in combinations per filter), the diversity plain tiling
lacks. It stores tile_out * n * tile_in bits per layer, m*k*k times fewer than f (576 times fewer
for a 3x3 conv with 64 parent input channels), and trains its latent scores exactly like f
(straight-through sign, options ``gradient`` and ``score_init``).
"""

from __future__ import annotations

from typing import Optional

import torch

from .sign import sign_ste
from .transforms import FlipRepeat, keep_inputs, kept_inputs, register_transform, signs_of, sum_tiles


@register_transform
class CoarseFlipRepeat(FlipRepeat):
    """psi_ij(P)[a] = S_ij[a] P[a]; ``scores`` has shape (tile_out, n, tile_in), sign = score >= 0.
    Options, initialisation, storage (one bit per score) and restoring from bits are f's."""

    name, code = "coarse_flip", "c"

    def score_shape(self, parent_shape: tuple[int, int, int, int]) -> tuple[int, int, int]:
        return (self.tile_out, parent_shape[0], self.tile_in)

    def forward(self, parent: torch.Tensor, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
        if torch.jit.is_scripting():
            return self.reference(parent).to(dtype if dtype is not None else parent.dtype)
        return _coarse_flip_generate(parent, self.scores, self.gradient, dtype or parent.dtype)

    def reference(self, parent: torch.Tensor) -> torch.Tensor:
        """The same child and gradients from plain tensor ops (TorchScript path; tests compare)."""
        n, m, kh, kw = parent.shape
        signs = sign_ste(self.scores, self.gradient).view(self.tile_out, n, self.tile_in, 1, 1, 1)
        return (signs * parent.view(1, n, 1, m, kh, kw)).reshape(self.tile_out * n, self.tile_in * m, kh, kw)


class _CoarseFlipGenerate(torch.autograd.Function):
    """child = S * tiled parent with S broadcast over each filter's taps; the straight-through
    backward written out, keeping only the inputs (as ``_FlipGenerate``)."""

    @staticmethod
    def forward(parent, scores, rule: str, dtype: torch.dtype):
        (tile_out, n, tile_in), (_, m, kh, kw) = scores.shape, parent.shape
        signs = signs_of(scores).to(dtype).view(tile_out, n, tile_in, 1, 1, 1)
        child = torch.mul(signs, parent.to(dtype).contiguous().view(1, n, 1, m, kh, kw))
        return child.view(tile_out * n, tile_in * m, kh, kw)

    @staticmethod
    def setup_context(ctx, inputs, output):
        parent, scores, rule, _ = inputs
        keep_inputs(ctx, parent, scores)
        ctx.rule = rule

    @staticmethod
    def backward(ctx, grad_child):
        parent, scores = kept_inputs(ctx)
        (tile_out, n, tile_in), (_, m, kh, kw) = scores.shape, parent.shape
        grad6 = grad_child.to(parent.dtype).contiguous().view(tile_out, n, tile_in, m, kh, kw)
        signs = signs_of(scores).view(tile_out, n, tile_in, 1, 1, 1)
        grad_parent = sum_tiles(grad6 * signs) if ctx.needs_input_grad[0] else None
        grad_scores = None
        if ctx.needs_input_grad[1]:  # d child / d score = parent * surrogate'(score), summed over taps
            per_filter = (grad6 * parent.contiguous().view(1, n, 1, m, kh, kw)).reshape(tile_out, n, tile_in, -1).sum(3)
            magnitude = scores.abs()
            slope = magnitude.le(1.0).to(scores.dtype) if ctx.rule == "clamp" else (2.0 - 2.0 * magnitude).clamp_(min=0.0)
            grad_scores = per_filter.mul_(slope)
        return grad_parent, grad_scores, None, None


@torch.jit.ignore
def _coarse_flip_generate(parent: torch.Tensor, scores: torch.Tensor, rule: str, dtype: torch.dtype) -> torch.Tensor:
    return _CoarseFlipGenerate.apply(parent, scores, rule, dtype)
