"""Child transforms psi: parent weight (n, m, k, k) -> child weight (tile_out*n, tile_in*m, k, k).

Tile layout (the same for every transform)::

    child[i*n:(i+1)*n, j*m:(j+1)*m] = psi_ij(parent)    i < tile_out, j < tile_in

so output channel ``i*n + a`` of the wide layer is a transformed copy of parent filter ``a``, and
it reads input channel ``j*m + b`` with a transformed copy of parent tap ``b``. Every transform
computes all tiles at once through a broadcast over a (tile_out, n, tile_in, m, k, k) view: no
Python loop over tiles and no materialised tiled copy of the parent.

A transform is one class: ``name`` and the one-letter ``code`` of encoder names (``repeat_r18_f4``),
its ``OPTIONS`` (model options it reads, with defaults) and, as a ``SharingLayer``, what it stores
and which of its parameters skip weight decay. ``@register_transform`` makes it a RepeatNet variant.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from .protocol import SharingLayer
from .sign import GRADIENT_RULES, sign_ste

TRANSFORMS: dict[str, type["ChildTransform"]] = {}  # name -> class, in registration order


def register_transform(cls: type["ChildTransform"]) -> type["ChildTransform"]:
    """Add a transform under its ``name`` and one-letter ``code`` (unique across transforms)."""
    taken = {other.code: name for name, other in TRANSFORMS.items() if name != cls.name}
    if cls.code in taken or len(cls.code) != 1 or cls.code == "w":
        raise ValueError(f"transform {cls.name!r}: code {cls.code!r} is taken or not a single letter")
    TRANSFORMS[cls.name] = cls
    return cls


def _tiles_view(parent: torch.Tensor) -> torch.Tensor:
    """(n, m, k, k) -> (1, n, 1, m, k, k), ready to broadcast against per-tile factors."""
    n, m, kh, kw = parent.shape
    return parent.view(1, n, 1, m, kh, kw)


class ChildTransform(SharingLayer, nn.Module):
    """Base class: holds the tile factors and maps a parent to its child.

    Subclasses take ``(tile_out, tile_in, parent_shape, **options)``; ``OPTIONS`` names the model
    options they read (``gradient``, ``score_init``, ...) with their defaults.
    """

    name: ClassVar[str] = ""
    code: ClassVar[str] = ""
    OPTIONS: ClassVar[dict] = {}

    def __init__(self, tile_out: int, tile_in: int, parent_shape: tuple[int, ...] | None = None):
        super().__init__()
        if tile_out < 1 or tile_in < 1:
            raise ValueError(f"tile factors must be >= 1, got tile_out={tile_out}, tile_in={tile_in}")
        self.tile_out = tile_out
        self.tile_in = tile_in

    def reset_parameters(self) -> None:
        """Back to the initial transform (pure tiling for every variant); nothing to reset here."""

    @torch.jit.unused
    def child_shape(self, parent_shape: tuple[int, ...]) -> tuple[int, int, int, int]:
        n, m, kh, kw = parent_shape
        return (self.tile_out * n, self.tile_in * m, kh, kw)

    def extra_repr(self) -> str:
        return f"tile_out={self.tile_out}, tile_in={self.tile_in}"


@register_transform
class LinearRepeat(ChildTransform):
    """psi(P) = P: plain tiling (the paper's linear baseline; degenerate for width)."""

    name, code = "linear", "l"

    def forward(self, parent: torch.Tensor) -> torch.Tensor:
        return parent.repeat(self.tile_out, self.tile_in, 1, 1)


@register_transform
class SwishRepeat(ChildTransform):
    """s-RepeatNet: psi_ij(x) = b1_ij * x / (1 + exp(b2_ij * x)), elementwise, two scalars per tile.

    Initialised at b1 = 2, b2 = 0 (option ``swish_init``), where psi(x) = x: training starts as
    pure tiling, like the f-variant with the authors' score initialisation.
    """

    name, code = "swish", "s"
    OPTIONS: ClassVar[dict] = {"swish_init": (2.0, 0.0)}

    def __init__(self, tile_out: int, tile_in: int, parent_shape: tuple[int, ...] | None = None,
                 swish_init: tuple[float, float] = (2.0, 0.0), init: tuple[float, float] | None = None):
        super().__init__(tile_out, tile_in)
        self.init = tuple(swish_init if init is None else init)  # ``init``: the older keyword
        self.b1 = nn.Parameter(torch.empty(tile_out, tile_in))
        self.b2 = nn.Parameter(torch.empty(tile_out, tile_in))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.constant_(self.b1, self.init[0])
        nn.init.constant_(self.b2, self.init[1])

    def parameter_kinds(self) -> dict[str, str]:
        return {"b1": "transform", "b2": "transform"}

    def forward(self, parent: torch.Tensor) -> torch.Tensor:
        n, m, kh, kw = parent.shape
        x = _tiles_view(parent)
        b1 = self.b1.view(self.tile_out, 1, self.tile_in, 1, 1, 1)
        b2 = self.b2.view(self.tile_out, 1, self.tile_in, 1, 1, 1)
        # b1 * x / (1 + exp(b2 x)) == b1 * x * sigmoid(-b2 x), the overflow-free form.
        child = b1 * x * torch.sigmoid(-b2 * x)
        return child.reshape(self.tile_out * n, self.tile_in * m, kh, kw)


@register_transform
class FlipRepeat(ChildTransform):
    """f-RepeatNet: psi_ij(P) = S_ij * P with S in {-1, +1}, one latent score per child weight.

    ``scores`` has the child's shape and layout, so the stored 1-bit mask of child weight
    ``[o, i, y, x]`` is ``scores[o, i, y, x] >= 0``. Scores start uniform in ``score_init``
    (the authors' [0, 1e-3): all signs +1, i.e. pure tiling, yet inside the gradient window).
    A deployed model stores one bit per score, its sign.
    """

    name, code = "flip", "f"
    OPTIONS: ClassVar[dict] = {"gradient": "clamp", "score_init": (0.0, 1e-3)}

    def __init__(
        self,
        tile_out: int,
        tile_in: int,
        parent_shape: tuple[int, int, int, int],
        score_init: tuple[float, float] = (0.0, 1e-3),
        gradient: str = "clamp",
    ):
        super().__init__(tile_out, tile_in)
        if gradient not in GRADIENT_RULES:
            raise ValueError(f"unknown sign gradient rule {gradient!r}; expected one of {GRADIENT_RULES}")
        self.score_init = tuple(score_init)
        self.gradient = gradient
        self.scores = nn.Parameter(torch.empty(self.child_shape(parent_shape)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.uniform_(self.scores, *self.score_init)

    def parameter_kinds(self) -> dict[str, str]:
        return {"scores": "scores"}

    def bit_parameters(self) -> dict[str, int]:
        return {"scores": 1}

    def signs(self) -> torch.Tensor:
        return sign_ste(self.scores, self.gradient)

    def forward(self, parent: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():
            return self.reference(parent)
        return _flip_generate(parent, self.scores, self.tile_out, self.tile_in, self.gradient)

    def reference(self, parent: torch.Tensor) -> torch.Tensor:
        """The same child and gradients from plain tensor ops (TorchScript path; tests compare)."""
        n, m, kh, kw = parent.shape
        signs = self.signs().view(self.tile_out, n, self.tile_in, m, kh, kw)
        return (signs * _tiles_view(parent)).reshape(self.scores.shape)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, gradient={self.gradient!r}"


class _FlipGenerate(torch.autograd.Function):
    """child = sign(scores) * tiled parent in one pass, with the straight-through backward written
    out: it saves nothing but the two inputs (no sign tensor, no tiled parent), so generating the
    weight costs a few elementwise passes over the child and no extra activation memory."""

    @staticmethod
    def forward(parent, scores, tile_out: int, tile_in: int, rule: str):
        n, m, kh, kw = parent.shape
        parent6 = parent.view(1, n, 1, m, kh, kw)
        scores6 = scores.view(tile_out, n, tile_in, m, kh, kw)
        return torch.where(scores6 >= 0, parent6, -parent6).reshape(scores.shape)

    @staticmethod
    def setup_context(ctx, inputs, output):
        parent, scores, tile_out, tile_in, rule = inputs
        ctx.save_for_backward(parent, scores)
        ctx.tiles, ctx.rule = (tile_out, tile_in), rule

    @staticmethod
    def backward(ctx, grad_child):
        parent, scores = ctx.saved_tensors
        (tile_out, tile_in), (n, m, kh, kw) = ctx.tiles, parent.shape
        grad6 = grad_child.reshape(tile_out, n, tile_in, m, kh, kw)
        scores6 = scores.view(tile_out, n, tile_in, m, kh, kw)
        grad_parent = grad_scores = None
        if ctx.needs_input_grad[0]:  # d child / d parent = sign, summed over the tiles
            grad_parent = torch.where(scores6 >= 0, grad6, -grad6).sum(dim=(0, 2))
        if ctx.needs_input_grad[1]:  # d child / d score = parent * surrogate'(score)
            through = grad6 * parent.view(1, n, 1, m, kh, kw)
            magnitude = scores6.abs()
            if ctx.rule == "clamp":
                grad_scores = torch.where(magnitude <= 1, through, 0.0)
            else:
                grad_scores = torch.where(magnitude < 1, through * (2.0 - 2.0 * magnitude), 0.0)
            grad_scores = grad_scores.reshape(scores.shape)
        return grad_parent, grad_scores, None, None, None


@torch.jit.ignore
def _flip_generate(parent: torch.Tensor, scores: torch.Tensor, tile_out: int, tile_in: int, rule: str) -> torch.Tensor:
    return _FlipGenerate.apply(parent, scores, tile_out, tile_in, rule)


def make_transform(
    name: str,
    tile_out: int,
    tile_in: int,
    parent_shape: tuple[int, int, int, int],
    **options,
) -> ChildTransform:
    """Build a registered transform by name; ``options`` go to its constructor."""
    if name not in TRANSFORMS:
        raise ValueError(f"unknown RepeatNet transform {name!r}; expected one of {tuple(TRANSFORMS)}")
    return TRANSFORMS[name](tile_out, tile_in, parent_shape, **options)
