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

import torch

from .sign import sign_ste, surrogate_grad
from .transforms import FlipRepeat, register_transform, signs_of, sum_tiles, tiles_view


@register_transform
class CoarseFlipRepeat(FlipRepeat):
    """psi_ij(P)[a] = S_ij[a] P[a]; ``scores`` has shape (tile_out, n, tile_in), sign = score >= 0.
    Options, initialisation, storage (one bit per score) and restoring from bits are f's."""

    name, code = "coarse_flip", "c"

    def score_shape(self, parent_shape: tuple[int, int, int, int]) -> tuple[int, int, int]:
        return (self.tile_out, parent_shape[0], self.tile_in)

    def reference(self, parent: torch.Tensor) -> torch.Tensor:
        n, m, kh, kw = parent.shape
        signs = sign_ste(self.scores, self.gradient).view(self.tile_out, n, self.tile_in, 1, 1, 1)
        return (signs * tiles_view(parent)).reshape(self.tile_out * n, self.tile_in * m, kh, kw)

    def fused_forward(self, parent, scores, *, dtype):
        signs = signs_of(scores).to(dtype).view(*scores.shape, 1, 1, 1)
        return torch.mul(signs, tiles_view(parent.to(dtype)))

    def fused_backward(self, grad6, parent, scores, *, needs):
        """f's straight-through backward with each sign broadcast over a filter's taps."""
        signs = signs_of(scores).view(*scores.shape, 1, 1, 1)
        grad_parent = sum_tiles(grad6 * signs) if needs[0] else None
        grad_scores = None
        if needs[1]:  # d child / d score = parent * surrogate'(score), summed over the filter's taps
            per_filter = (grad6 * tiles_view(parent)).reshape(*scores.shape, -1).sum(3)
            grad_scores = per_filter.mul_(surrogate_grad(scores, self.gradient))
        return grad_parent, grad_scores
