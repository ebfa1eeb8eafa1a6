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

import torch
from torch import nn

from .transforms import MOVED_TOL, ChildTransform, per_tile, register_transform, sum_taps, sum_tiles, tiles_view


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

    def diagnostics(self) -> dict[str, torch.Tensor]:
        """The per-tile scales; ``moved`` where one left its initial 1."""
        return {"scale": self.scale, "moved": (self.scale - 1).abs() > MOVED_TOL}

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if self.signs.device.type != "meta":  # the seed may have changed: the signs follow it
            fresh = seeded_signs(int(self.seed), tuple(self.signs.shape))
            self.signs = fresh.to(device=self.signs.device, dtype=self.signs.dtype)

    def generation_inputs(self) -> tuple[torch.Tensor, ...]:
        return (self.scale, self.signs)

    def reference(self, parent: torch.Tensor) -> torch.Tensor:
        n, m, kh, kw = parent.shape
        signs = self.signs.view(self.tile_out, n, self.tile_in, m, kh, kw)
        return (signs * per_tile(self.scale) * tiles_view(parent)).reshape(self.signs.shape)

    def fused_forward(self, parent, scale, signs, *, dtype):
        """R * a * tiled parent in one child-sized buffer (the signs are a buffer: saved by
        reference, as f's scores are)."""
        n, m, kh, kw = parent.shape
        child = signs.to(dtype, copy=True).view(self.tile_out, n, self.tile_in, m, kh, kw)
        return child.mul_(tiles_view(parent.to(dtype))).mul_(per_tile(scale.to(dtype)))

    def fused_backward(self, grad6, parent, scale, signs, *, needs):
        signed = grad6 * signs.view(grad6.shape)  # g R
        grad_parent = sum_tiles(signed * per_tile(scale))
        grad_scale = sum_taps(signed.mul_(tiles_view(parent)))  # the sum of g R P over each tile
        return grad_parent, grad_scale, None
