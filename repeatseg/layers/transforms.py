"""Child transforms psi: parent weight (n, m, k, k) -> child weight (tile_out*n, tile_in*m, k, k).

Tile layout (the same for every transform)::

    child[i*n:(i+1)*n, j*m:(j+1)*m] = psi_ij(parent)    i < tile_out, j < tile_in

so output channel ``i*n + a`` of the wide layer is a transformed copy of parent filter ``a``, and
it reads input channel ``j*m + b`` with a transformed copy of parent tap ``b``. Every transform
computes all tiles at once through a broadcast over the (tile_out, n, tile_in, m, k, k) "tile
view": no Python loop over tiles and no materialised tiled copy of the parent.

A transform is one class: ``name`` and the one-letter ``code`` of encoder names (``repeat_r18_f4``),
its ``OPTIONS`` (model options it reads, with defaults) and, as a ``SharingLayer``, what it stores
and which of its parameters skip weight decay. ``@register_transform`` makes it a RepeatNet variant.
What it writes of the generation, the base class doing the rest (``ChildTransform``):

- ``generation_inputs()``: the tensors the child depends on besides the parent (its parameters and
  buffers): all the fused generation saves for backward;
- ``reference(parent)``: the child from plain tensor ops, differentiable by autograd (its formula);
- ``fused_forward`` and ``fused_backward``: the same child and its gradients in one pass each.
"""

from __future__ import annotations

from typing import ClassVar, Optional

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from ..errors import ConfigError
from .protocol import SharingLayer
from .sign import GRADIENT_RULES, sign_ste, surrogate_grad

TRANSFORMS: dict[str, type["ChildTransform"]] = {}  # name -> class, in registration order
#: How far a float transform parameter must be from its initial value to count as moved
#: (``SharingLayer.diagnostics``): well above float32 rounding, far below a trained change.
MOVED_TOL = 1e-4


def register_transform(cls: type["ChildTransform"]) -> type["ChildTransform"]:
    """Add a transform under its ``name`` and one-letter ``code`` (unique across transforms)."""
    taken = {other.code: name for name, other in TRANSFORMS.items() if name != cls.name}
    if cls.code in taken or len(cls.code) != 1 or cls.code == "w":
        raise ValueError(f"transform {cls.name!r}: code {cls.code!r} is taken or not a single letter")
    TRANSFORMS[cls.name] = cls
    return cls


def tiles_view(parent: torch.Tensor) -> torch.Tensor:
    """(n, m, k, k) -> (1, n, 1, m, k, k), ready to broadcast against per-tile factors (a strided,
    e.g. channels_last, parent is made contiguous first)."""
    n, m, kh, kw = parent.shape
    return parent.contiguous().view(1, n, 1, m, kh, kw)


def per_tile(factors: torch.Tensor) -> torch.Tensor:
    """(tile_out, tile_in) -> (tile_out, 1, tile_in, 1, 1, 1): one factor per tile, broadcast."""
    tile_out, tile_in = factors.shape
    return factors.view(tile_out, 1, tile_in, 1, 1, 1)


def sum_tiles(child6: torch.Tensor) -> torch.Tensor:
    """(tile_out, n, tile_in, m, k, k) -> (n, m, k, k): the sum over tiles, as two reductions over
    contiguous blocks (several times faster on CPU than ``sum(dim=(0, 2))``)."""
    tile_out, n, tile_in, m, kh, kw = child6.shape
    per_row = child6.reshape(tile_out, -1).sum(0)
    return per_row.view(n, tile_in, m * kh * kw).sum(1).view(n, m, kh, kw)


def sum_taps(child6: torch.Tensor) -> torch.Tensor:
    """(tile_out, n, tile_in, m, k, k) -> (tile_out, tile_in): the sum within each tile."""
    tile_out, n, tile_in = child6.shape[:3]
    return child6.reshape(tile_out, n, tile_in, -1).sum(3).sum(1)


def signs_of(scores: torch.Tensor) -> torch.Tensor:
    """+1.0 where ``scores >= 0``, -1.0 elsewhere (as ``hard_sign``), in a new buffer, from a
    comparison written as floats and in-place arithmetic: CPU kernels vectorise these, not
    ``torch.where`` (several times slower on a child)."""
    return torch.ge(scores, 0, out=torch.empty_like(scores)).mul_(2.0).sub_(1.0)


class ChildTransform(SharingLayer, nn.Module):
    """Base class: holds the tile factors, maps a parent to its child, and owns the generation's
    plumbing, so that a transform writes only its formula and its fused pass.

    Subclasses take ``(tile_out, tile_in, parent_shape, **options)``; ``OPTIONS`` names the model
    options they read (``gradient``, ``score_init``, ...) with their defaults. They implement:

    - ``generation_inputs()``: the tensors the child depends on besides the parent, in a fixed
      order (hold a scheduled value, e.g. a temperature, in a buffer and list it here);
    - ``reference(parent)``: the child in the parent's dtype from plain tensor ops (autograd
      differentiates it; it must also compile under TorchScript);
    - ``fused_forward(parent, *inputs, dtype)``: the child (any shape of its size, in the tile
      layout) built directly in ``dtype`` (cast the small parent, never the child), working in place
      in as few child-sized buffers as possible (each fresh one costs page faults on CPU);
    - ``fused_backward(grad6, parent, *inputs, needs)``: the gradients of (parent, *inputs), None
      where ``needs`` is False, in the parent's dtype, from ``grad6``, the child's gradient as a
      contiguous (tile_out, n, tile_in, m, k, k) view in the parent's dtype (read it, do not write
      it). Recompute what you need: nothing but the inputs is kept. Prefer arithmetic to
      ``torch.where`` / ``masked_fill`` (not vectorised on CPU) and reduce with ``sum_tiles`` /
      ``sum_taps``.

    ``forward(parent, dtype=None)`` returns the child in ``dtype`` (default: the parent's) through
    ``FusedGeneration``; under TorchScript, ``torch.compile``/``torch.export`` and ``jit.trace`` it
    returns ``reference`` (the graph compiler fuses plain ops itself).
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

    def forward(self, parent: torch.Tensor, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
        if torch.jit.is_scripting():
            return self.reference(parent).to(dtype if dtype is not None else parent.dtype)
        if torch.compiler.is_compiling() or torch.jit.is_tracing():
            return self.reference(parent).to(dtype or parent.dtype)
        return self.fused(parent, *self.generation_inputs(), dtype=dtype)

    def fused(self, parent: torch.Tensor, *inputs: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The child of ``parent`` and explicit ``inputs`` (in ``generation_inputs`` order) through
        the fused generation, in ``dtype`` (default: the parent's)."""
        return FusedGeneration.apply(self, dtype or parent.dtype, parent, *inputs)

    def generation_inputs(self) -> tuple[torch.Tensor, ...]:
        return ()

    def reference(self, parent: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def fused_forward(self, parent: torch.Tensor, *inputs: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        raise NotImplementedError

    def fused_backward(self, grad6: torch.Tensor, parent: torch.Tensor, *inputs: torch.Tensor,
                       needs: tuple[bool, ...]) -> tuple[torch.Tensor | None, ...]:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"tile_out={self.tile_out}, tile_in={self.tile_in}"


class FusedGeneration(torch.autograd.Function):
    """``transform.fused_forward`` with ``transform.fused_backward`` as its gradient: saves the
    parent and the transform's ``generation_inputs`` (autograd then refuses them if modified in
    place before backward), hands backward the child's gradient as the tile view, differentiates
    once (a double backward raises; differentiate ``reference`` for that) and refuses
    ``torch.func.vmap`` with a message saying what to use instead."""

    @staticmethod
    def forward(transform: ChildTransform, dtype: torch.dtype, parent: torch.Tensor, *inputs: torch.Tensor):
        child = transform.fused_forward(parent, *inputs, dtype=dtype)
        return child.view(transform.child_shape(tuple(parent.shape)))

    @staticmethod
    def setup_context(ctx, inputs, output):
        transform, _, *tensors = inputs
        ctx.transform = transform
        ctx.save_for_backward(*tensors)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_child):
        parent, *inputs = ctx.saved_tensors
        transform = ctx.transform
        n, m, kh, kw = parent.shape
        grad6 = grad_child.to(parent.dtype).contiguous().view(transform.tile_out, n, transform.tile_in, m, kh, kw)
        return (None, None, *transform.fused_backward(grad6, parent, *inputs, needs=ctx.needs_input_grad[2:]))

    @staticmethod
    def vmap(info, in_dims, transform, *args):
        raise NotImplementedError(
            f"the fused generation of {type(transform).__name__} does not support torch.func.vmap; under "
            "functorch transforms compute the child from plain ops with transform.reference(parent)")


@register_transform
class LinearRepeat(ChildTransform):
    """psi(P) = P: plain tiling (the paper's linear baseline; degenerate for width)."""

    name, code = "linear", "l"

    def reference(self, parent: torch.Tensor) -> torch.Tensor:
        return parent.repeat(self.tile_out, self.tile_in, 1, 1)

    def fused_forward(self, parent, *inputs, dtype):
        return parent.to(dtype).repeat(self.tile_out, self.tile_in, 1, 1)

    def fused_backward(self, grad6, parent, *inputs, needs):
        return (sum_tiles(grad6),)  # several times faster on CPU than repeat's own backward


@register_transform
class SwishRepeat(ChildTransform):
    """s-RepeatNet: psi_ij(x) = b1_ij * x / (1 + exp(b2_ij * x)), elementwise, two scalars per tile.

    Option ``swish_init``: a pair (b1, b2) for every tile, by default (2, 0), where psi(x) = x:
    training starts as pure tiling, like the f-variant with the authors' score initialisation; or
    ``"xavier"``, the authors' code: b1 and b2 each drawn per tile by Xavier-uniform on a
    (1, tile_out * tile_in) tensor, i.e. uniform in +-sqrt(6 / (1 + tiles)) (tiles then differ).
    """

    name, code = "swish", "s"
    OPTIONS: ClassVar[dict] = {"swish_init": (2.0, 0.0)}

    def __init__(self, tile_out: int, tile_in: int, parent_shape: tuple[int, ...] | None = None,
                 swish_init: tuple[float, float] | str = (2.0, 0.0), init: tuple[float, float] | None = None):
        super().__init__(tile_out, tile_in)
        self.init = _swish_init(swish_init if init is None else init)  # ``init``: the older keyword
        self.b1 = nn.Parameter(torch.empty(tile_out, tile_in))
        self.b2 = nn.Parameter(torch.empty(tile_out, tile_in))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            if self.init == "xavier":  # the authors' (1, tiles) tensors; the tile order does not matter (i.i.d.)
                nn.init.xavier_uniform_(self.b1.view(1, -1))
                nn.init.xavier_uniform_(self.b2.view(1, -1))
            else:
                self.b1.fill_(self.init[0])
                self.b2.fill_(self.init[1])

    def parameter_kinds(self) -> dict[str, str]:
        return {"b1": "transform", "b2": "transform"}

    def diagnostics(self) -> dict[str, torch.Tensor]:
        """(b1, b2) of every tile; ``moved`` where a pair left its initial value (unknown after xavier)."""
        values = {"b1": self.b1, "b2": self.b2}
        if self.init != "xavier":
            start = torch.tensor(self.init, device=self.b1.device).view(2, *([1] * self.b1.dim()))
            values["moved"] = (torch.stack([self.b1, self.b2]) - start).abs().amax(0) > MOVED_TOL
        return values

    def generation_inputs(self) -> tuple[torch.Tensor, ...]:
        return (self.b1, self.b2)

    def reference(self, parent: torch.Tensor) -> torch.Tensor:
        # b1 * x / (1 + exp(b2 x)) == b1 * x * sigmoid(-b2 x), the overflow-free form.
        n, m, kh, kw = parent.shape
        x, b1, b2 = tiles_view(parent), per_tile(self.b1), per_tile(self.b2)
        return (b1 * x * torch.sigmoid(-b2 * x)).reshape(self.tile_out * n, self.tile_in * m, kh, kw)

    def fused_forward(self, parent, b1, b2, *, dtype):
        """b1 * x * sigmoid(-b2 x) over the tile view, built in place in one buffer."""
        x = tiles_view(parent.to(dtype))
        child = torch.mul(x, per_tile(b2.to(dtype)).neg()).sigmoid_()
        return child.mul_(x).mul_(per_tile(b1.to(dtype)))

    def fused_backward(self, grad, parent, b1, b2, *, needs):
        """With s = sigmoid(-b2 x): d child/dx = b1 s (1 - b2 x (1 - s)), d child/d b1 = x s,
        d child/d b2 = -b1 x^2 s (1 - s); in place in three child-sized buffers."""
        x = tiles_view(parent)
        s = torch.mul(x, per_tile(b2).neg()).sigmoid_()
        gs = grad * s  # g s
        products = torch.mul(gs, x)  # g s x
        grad_b1 = sum_taps(products)
        torch.sub(products, s.mul_(products), out=s)  # g s x - g s x s = g s x (1 - s), in s's buffer
        grad_b2 = sum_taps(torch.mul(s, x, out=products)).mul_(b1.neg())
        grad_parent = sum_tiles(gs.mul_(per_tile(b1)).addcmul_(s, per_tile(b1 * b2).neg()))
        return grad_parent, grad_b1, grad_b2


def _swish_init(value) -> tuple[float, float] | str:
    """``"xavier"`` or a (b1, b2) pair of numbers; anything else is refused naming both forms."""
    if value == "xavier":
        return value
    if (isinstance(value, (list, tuple)) and len(value) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        return (float(value[0]), float(value[1]))
    raise ConfigError(f"swish_init {value!r}: expected 'xavier' (the authors' init) or a pair [b1, b2] "
                      "of numbers (default [2, 0]: pure tiling)")


@register_transform
class FlipRepeat(ChildTransform):
    """f-RepeatNet: psi_ij(P) = S_ij * P with S in {-1, +1}, one latent score per child weight.

    ``scores`` has the child's shape and layout, so the stored 1-bit mask of child weight
    ``[o, i, y, x]`` is ``scores[o, i, y, x] >= 0``. Scores start uniform in ``score_init``
    (the authors' [0, 1e-3): all signs +1, i.e. pure tiling, yet inside the gradient window).
    A deployed model stores one bit per score, its sign; loading it restores each score to
    +-``RESTORED_SCORE``. The signs' gradient is the straight-through rule ``gradient``
    (``sign.surrogate_grad``).
    """

    name, code = "flip", "f"
    OPTIONS: ClassVar[dict] = {"gradient": "clamp", "score_init": (0.0, 1e-3)}
    #: |score| a packed model's scores are restored to: the authors' init scale, well inside both
    #: rules' gradient window (at +-1, Bi-Real's gradient is 0 and fine-tuning would freeze every sign).
    RESTORED_SCORE: ClassVar[float] = 1e-3

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
            raise ConfigError(f"unknown sign gradient rule {gradient!r}; expected one of {GRADIENT_RULES}")
        self.score_init = tuple(score_init)
        self.gradient = gradient
        self.scores = nn.Parameter(torch.empty(self.score_shape(parent_shape)))
        self.reset_parameters()

    def score_shape(self, parent_shape: tuple[int, int, int, int]) -> tuple[int, ...]:
        """One score per child weight (a coarser transform overrides this, and the generation)."""
        return self.child_shape(parent_shape)

    def reset_parameters(self) -> None:
        nn.init.uniform_(self.scores, *self.score_init)

    def parameter_kinds(self) -> dict[str, str]:
        return {"scores": "scores"}

    def diagnostics(self) -> dict[str, torch.Tensor]:
        """``moved``: the signs that differ from pure tiling (a negative score). Measured against
        tiling only when the scores start non-negative (the default ``score_init``); otherwise the
        share of negative signs is given as ``negative`` alone."""
        negative = self.scores < 0
        return {"moved": negative} if self.score_init[0] >= 0 else {"negative": negative}

    def bit_parameters(self) -> dict[str, int]:
        return {"scores": 1}

    def from_bits(self, name: str, bits: torch.Tensor) -> torch.Tensor:
        return torch.where(bits, self.RESTORED_SCORE, -self.RESTORED_SCORE)

    def signs(self) -> torch.Tensor:
        return sign_ste(self.scores, self.gradient)

    def generation_inputs(self) -> tuple[torch.Tensor, ...]:
        return (self.scores,)

    def reference(self, parent: torch.Tensor) -> torch.Tensor:
        n, m, kh, kw = parent.shape
        signs = self.signs().view(self.tile_out, n, self.tile_in, m, kh, kw)
        return (signs * tiles_view(parent)).reshape(self.scores.shape)

    def fused_forward(self, parent, scores, *, dtype):
        """sign(scores) * tiled parent in one child-sized buffer (no sign tensor kept)."""
        n, m, kh, kw = parent.shape
        signs6 = signs_of(scores).to(dtype).view(self.tile_out, n, self.tile_in, m, kh, kw)
        return signs6.mul_(tiles_view(parent.to(dtype)))

    def fused_backward(self, grad6, parent, scores, *, needs):
        """The straight-through backward written out, one child-sized buffer: first sign * g (the
        parent's gradient, summed over tiles), then surrogate'(score) * g * parent (the scores')."""
        scores6 = scores.view(grad6.shape)
        buffer = signs_of(scores6)
        grad_parent = sum_tiles(buffer.mul_(grad6)) if needs[0] else None
        grad_scores = None
        if needs[1]:
            slope = surrogate_grad(scores6, self.gradient, out=buffer)
            grad_scores = slope.mul_(grad6).mul_(tiles_view(parent)).view(scores.shape)
        return grad_parent, grad_scores

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, gradient={self.gradient!r}"


def make_transform(
    name: str,
    tile_out: int,
    tile_in: int,
    parent_shape: tuple[int, int, int, int],
    **options,
) -> ChildTransform:
    """Build a registered transform by name; ``options`` go to its constructor."""
    if name not in TRANSFORMS:
        raise ConfigError(f"unknown RepeatNet transform {name!r}; expected one of {tuple(TRANSFORMS)}")
    return TRANSFORMS[name](tile_out, tile_in, parent_shape, **options)
