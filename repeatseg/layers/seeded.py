"""``r``: f-RepeatNet's per-weight sign diversity drawn from a seed instead of learned and stored.

f-RepeatNet stores one learned bit per generated weight (21 MiB of signs for ResNet-18 at 4x, a
third of its packed model). This transform asks what the *learning* of those bits buys: its signs
are fixed and pseudo-random, psi_ij(P) = a_ij * R_ij * P with R_ij in {-1, +1} per child weight
and one learned scale a_ij per tile (init 1). What a model stores is one int64 ``seed`` per layer,
a persistent buffer drawn from torch's generator when the layer is built (``torch.manual_seed``
makes models reproducible; checkpoints and packed files carry it); the signs are a non-persistent
buffer regenerated from the seed at construction and whenever a state_dict is loaded.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .transforms import ChildTransform, keep_inputs, kept_inputs, register_transform, sum_taps, sum_tiles


def draw_seed() -> torch.Tensor:
    """A fresh layer seed from torch's default generator (a 0-d int64 CPU tensor)."""
    return torch.randint(0, 2**62, (), dtype=torch.int64, device="cpu")


def seeded_signs(seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    """The +1/-1 pattern of ``seed`` (float32), drawn on CPU by torch's mt19937 whatever the model's
    device, so the same seed gives the same signs on every machine."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    return torch.randint(0, 2, shape, generator=generator, dtype=torch.int8).mul_(2).sub_(1).float()


@register_transform
class RandomSignRepeat(ChildTransform):
    """psi_ij(P) = a_ij * R_ij * P: fixed seeded signs R (child-shaped), learned per-tile scales a."""

    name, code = "random_sign", "r"

    def __init__(self, tile_out: int, tile_in: int, parent_shape: tuple[int, int, int, int]):
        super().__init__(tile_out, tile_in)
        self.register_buffer("seed", draw_seed())
        self.scale = nn.Parameter(torch.ones(tile_out, tile_in))
        shape = self.child_shape(parent_shape)
        building_on_meta = torch.empty(0).device.type == "meta"  # describe() builds models on meta
        pattern = torch.empty(shape, device="meta") if building_on_meta else seeded_signs(int(self.seed), shape)
        self.register_buffer("signs", pattern, persistent=False)

    def reset_parameters(self) -> None:
        nn.init.ones_(self.scale)

    def parameter_kinds(self) -> dict[str, str]:
        return {"scale": "transform"}

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if self.signs.device.type != "meta":  # the seed may have changed: the signs follow it
            fresh = seeded_signs(int(self.seed), tuple(self.signs.shape))
            self.signs = fresh.to(device=self.signs.device, dtype=self.signs.dtype)

    def forward(self, parent: torch.Tensor, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
        if torch.jit.is_scripting():
            return self.reference(parent).to(dtype if dtype is not None else parent.dtype)
        return _random_sign_generate(parent, self.scale, self.signs, dtype or parent.dtype)

    def reference(self, parent: torch.Tensor) -> torch.Tensor:
        """The same child from plain tensor ops (TorchScript path; tests compare gradients)."""
        n, m, kh, kw = parent.shape
        signs = self.signs.view(self.tile_out, n, self.tile_in, m, kh, kw)
        scale = self.scale.view(self.tile_out, 1, self.tile_in, 1, 1, 1)
        return (signs * scale * parent.view(1, n, 1, m, kh, kw)).reshape(self.signs.shape)


class _RandomSignGenerate(torch.autograd.Function):
    """child = R * a * tiled parent in one child-sized buffer, keeping only the inputs (the signs
    are a buffer: kept by reference, as the scores of f are)."""

    @staticmethod
    def forward(parent, scale, signs, dtype: torch.dtype):
        (tile_out, tile_in), (n, m, kh, kw) = scale.shape, parent.shape
        child = signs.to(dtype, copy=True).view(tile_out, n, tile_in, m, kh, kw)
        child.mul_(parent.to(dtype).view(1, n, 1, m, kh, kw)).mul_(scale.to(dtype).view(tile_out, 1, tile_in, 1, 1, 1))
        return child.view(signs.shape)

    @staticmethod
    def setup_context(ctx, inputs, output):
        parent, scale, signs, _ = inputs
        keep_inputs(ctx, parent, scale, signs)

    @staticmethod
    def backward(ctx, grad_child):
        parent, scale, signs = kept_inputs(ctx)
        (tile_out, tile_in), (n, m, kh, kw) = scale.shape, parent.shape
        buffer = grad_child.to(parent.dtype, memory_format=torch.contiguous_format, copy=True)
        buffer = buffer.view(tile_out, n, tile_in, m, kh, kw)
        buffer.mul_(signs.view(buffer.shape))  # g R
        grad_parent = sum_tiles(buffer * scale.view(tile_out, 1, tile_in, 1, 1, 1))
        grad_scale = sum_taps(buffer.mul_(parent.view(1, n, 1, m, kh, kw)))  # sum of g R P per tile
        return grad_parent, grad_scale, None, None


@torch.jit.ignore
def _random_sign_generate(parent: torch.Tensor, scale: torch.Tensor, signs: torch.Tensor,
                          dtype: torch.dtype) -> torch.Tensor:
    return _RandomSignGenerate.apply(parent, scale, signs, dtype)
