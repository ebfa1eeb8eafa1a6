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

from typing import ClassVar, Optional

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


def keep_inputs(ctx, *inputs: torch.Tensor) -> None:
    """``save_for_backward`` for a generating ``autograd.Function``, except that the inputs are kept
    by reference and not released after one backward: RepeatConv2d reuses a generated weight while
    a graph holds it, so one generation node may sit in two graphs that backpropagate separately.
    An input modified in place before backward is refused, as autograd refuses it."""
    if torch.compiler.is_compiling():  # compiled graphs get autograd's own bookkeeping
        ctx.save_for_backward(*inputs)
        return
    ctx.kept, ctx.versions = inputs, tuple(t._version for t in inputs)


def kept_inputs(ctx) -> tuple[torch.Tensor, ...]:
    """The inputs ``keep_inputs`` stored, checked against in-place modification."""
    if not hasattr(ctx, "kept"):
        return ctx.saved_tensors
    for tensor, version in zip(ctx.kept, ctx.versions):
        if tensor._version != version:
            raise RuntimeError("one of the variables needed for gradient computation has been modified by an "
                               f"inplace operation: a generating input of shape {tuple(tensor.shape)} is at version "
                               f"{tensor._version}; expected version {version} instead")
    return ctx.kept


class ChildTransform(SharingLayer, nn.Module):
    """Base class: holds the tile factors and maps a parent to its child.

    Subclasses take ``(tile_out, tile_in, parent_shape, **options)``; ``OPTIONS`` names the model
    options they read (``gradient``, ``score_init``, ...) with their defaults.

    ``forward(parent, dtype=None)`` returns the child in ``dtype`` (default: the parent's; under
    autocast RepeatConv2d asks for the compute dtype). The pattern every transform follows, so that
    generation costs one pass and no activation memory:

    - generate with one ``torch.autograd.Function`` whose forward builds the child from broadcast
      views directly in ``dtype`` (cast the small parent, never the child) and whose backward
      recomputes what it needs; store only the inputs, with ``keep_inputs`` / ``kept_inputs``
      (see ``_FlipGenerate``, ``_SwishGenerate``). Work in place in as few child-sized buffers as
      you can (each fresh one costs page faults on CPU), prefer arithmetic to ``torch.where`` /
      ``masked_fill`` (not vectorised on CPU), and reduce over tiles with ``sum_tiles`` /
      ``sum_taps``, in the parent's dtype.
    - the child must depend only on ``parent`` and the transform's parameters and buffers (hold a
      scheduled value, e.g. a temperature, in a buffer): RepeatConv2d reuses a generated weight until
      one of them changes (version, storage, device, dtype), so that eval-mode inference costs what
      the dense twin costs, and a layer called twice in one step generates once.
    - give TorchScript a plain-ops path (``if torch.jit.is_scripting(): return self.reference(...)``).
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

    def forward(self, parent: torch.Tensor, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
        if torch.jit.is_scripting():
            return parent.to(dtype if dtype is not None else parent.dtype).repeat(self.tile_out, self.tile_in, 1, 1)
        return _linear_generate(parent, self.tile_out, self.tile_in, dtype or parent.dtype)


class _LinearGenerate(torch.autograd.Function):
    """child = tiled parent (``repeat``); backward sums the tiles with ``sum_tiles``, several times
    faster on CPU than ``repeat``'s own backward. Keeps nothing."""

    @staticmethod
    def forward(parent, tile_out: int, tile_in: int, dtype: torch.dtype):
        return parent.to(dtype).repeat(tile_out, tile_in, 1, 1)

    @staticmethod
    def setup_context(ctx, inputs, output):
        parent, tile_out, tile_in, _ = inputs
        ctx.tiles, ctx.parent_dtype = (tile_out, tile_in), parent.dtype

    @staticmethod
    def backward(ctx, grad_child):
        (tile_out, tile_in), (rows, cols, kh, kw) = ctx.tiles, grad_child.shape
        grad6 = grad_child.contiguous().view(tile_out, rows // tile_out, tile_in, cols // tile_in, kh, kw)
        return sum_tiles(grad6.to(ctx.parent_dtype)), None, None, None


@torch.jit.ignore
def _linear_generate(parent: torch.Tensor, tile_out: int, tile_in: int, dtype: torch.dtype) -> torch.Tensor:
    return _LinearGenerate.apply(parent, tile_out, tile_in, dtype)


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

    def forward(self, parent: torch.Tensor, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
        if torch.jit.is_scripting():
            return self.reference(parent).to(dtype if dtype is not None else parent.dtype)
        return _swish_generate(parent, self.b1, self.b2, dtype or parent.dtype)

    def reference(self, parent: torch.Tensor) -> torch.Tensor:
        """The same child from plain tensor ops (TorchScript path; tests compare gradients)."""
        n, m, kh, kw = parent.shape
        x = _tiles_view(parent)
        b1 = self.b1.view(self.tile_out, 1, self.tile_in, 1, 1, 1)
        b2 = self.b2.view(self.tile_out, 1, self.tile_in, 1, 1, 1)
        # b1 * x / (1 + exp(b2 x)) == b1 * x * sigmoid(-b2 x), the overflow-free form.
        child = b1 * x * torch.sigmoid(-b2 * x)
        return child.reshape(self.tile_out * n, self.tile_in * m, kh, kw)


class _SwishGenerate(torch.autograd.Function):
    """child = b1 * x * sigmoid(-b2 x) over the broadcast tile view, built in place in one buffer,
    keeping only (parent, b1, b2); backward recomputes the sigmoid. With s = sigmoid(-b2 x):
    d child/dx = b1 s (1 - b2 x (1 - s)), d child/d b1 = x s, d child/d b2 = -b1 x^2 s (1 - s).
    Backward works in place in three child-sized buffers."""

    @staticmethod
    def forward(parent, b1, b2, dtype: torch.dtype):
        (tile_out, tile_in), (n, m, kh, kw) = b1.shape, parent.shape
        x = parent.to(dtype).contiguous().view(1, n, 1, m, kh, kw)  # a channels_last parent would make it strided
        child = torch.mul(x, b2.to(dtype).neg().view(tile_out, 1, tile_in, 1, 1, 1)).sigmoid_()
        child.mul_(x).mul_(b1.to(dtype).view(tile_out, 1, tile_in, 1, 1, 1))
        return child.view(tile_out * n, tile_in * m, kh, kw)

    @staticmethod
    def setup_context(ctx, inputs, output):
        parent, b1, b2, _ = inputs
        keep_inputs(ctx, parent, b1, b2)

    @staticmethod
    def backward(ctx, grad_child):
        parent, b1, b2 = kept_inputs(ctx)
        (tile_out, tile_in), (n, m, kh, kw) = b1.shape, parent.shape
        x = parent.contiguous().view(1, n, 1, m, kh, kw)
        per_tile = (tile_out, 1, tile_in, 1, 1, 1)
        grad = grad_child.contiguous().view(tile_out, n, tile_in, m, kh, kw)  # channels_last arrives strided
        q = torch.mul(x, b2.neg().view(per_tile)).sigmoid_()  # s
        gs = grad * q  # g s (in the parent's dtype under autocast: type promotion)
        products = torch.mul(gs, x)  # g s x
        grad_b1 = sum_taps(products)
        torch.sub(products, q.mul_(products), out=q)  # g s x - g s x s = g s x (1 - s)
        grad_b2 = sum_taps(torch.mul(q, x, out=products)).mul_(b1.neg())
        grad_parent = sum_tiles(gs.mul_(b1.view(per_tile)).addcmul_(q, (b1 * b2).neg().view(per_tile)))
        return grad_parent, grad_b1, grad_b2, None


def _swish_init(value) -> tuple[float, float] | str:
    """``"xavier"`` or a (b1, b2) pair of numbers; anything else is refused naming both forms."""
    if value == "xavier":
        return value
    if (isinstance(value, (list, tuple)) and len(value) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        return (float(value[0]), float(value[1]))
    raise ValueError(f"swish_init {value!r}: expected 'xavier' (the authors' init) or a pair [b1, b2] "
                     "of numbers (default [2, 0]: pure tiling)")


@torch.jit.ignore
def _swish_generate(parent: torch.Tensor, b1: torch.Tensor, b2: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return _SwishGenerate.apply(parent, b1, b2, dtype)


@register_transform
class FlipRepeat(ChildTransform):
    """f-RepeatNet: psi_ij(P) = S_ij * P with S in {-1, +1}, one latent score per child weight.

    ``scores`` has the child's shape and layout, so the stored 1-bit mask of child weight
    ``[o, i, y, x]`` is ``scores[o, i, y, x] >= 0``. Scores start uniform in ``score_init``
    (the authors' [0, 1e-3): all signs +1, i.e. pure tiling, yet inside the gradient window).
    A deployed model stores one bit per score, its sign; loading it restores each score to
    +-``RESTORED_SCORE``.
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
            raise ValueError(f"unknown sign gradient rule {gradient!r}; expected one of {GRADIENT_RULES}")
        self.score_init = tuple(score_init)
        self.gradient = gradient
        self.scores = nn.Parameter(torch.empty(self.score_shape(parent_shape)))
        self.reset_parameters()

    def score_shape(self, parent_shape: tuple[int, int, int, int]) -> tuple[int, ...]:
        """One score per child weight (a coarser transform overrides this, and forward)."""
        return self.child_shape(parent_shape)

    def reset_parameters(self) -> None:
        nn.init.uniform_(self.scores, *self.score_init)

    def parameter_kinds(self) -> dict[str, str]:
        return {"scores": "scores"}

    def bit_parameters(self) -> dict[str, int]:
        return {"scores": 1}

    def from_bits(self, name: str, bits: torch.Tensor) -> torch.Tensor:
        return torch.where(bits, self.RESTORED_SCORE, -self.RESTORED_SCORE)

    def signs(self) -> torch.Tensor:
        return sign_ste(self.scores, self.gradient)

    def forward(self, parent: torch.Tensor, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
        if torch.jit.is_scripting():
            return self.reference(parent).to(dtype if dtype is not None else parent.dtype)
        return _flip_generate(parent, self.scores, self.tile_out, self.tile_in, self.gradient, dtype or parent.dtype)

    def reference(self, parent: torch.Tensor) -> torch.Tensor:
        """The same child and gradients from plain tensor ops (TorchScript path; tests compare)."""
        n, m, kh, kw = parent.shape
        signs = self.signs().view(self.tile_out, n, self.tile_in, m, kh, kw)
        return (signs * _tiles_view(parent)).reshape(self.scores.shape)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, gradient={self.gradient!r}"


def signs_of(scores: torch.Tensor) -> torch.Tensor:
    """+1.0 where ``scores >= 0``, -1.0 elsewhere (as ``hard_sign``), in a new buffer, from a
    comparison written as floats and in-place arithmetic: CPU kernels vectorise these, not
    ``torch.where`` (several times slower on a child)."""
    return torch.ge(scores, 0, out=torch.empty_like(scores)).mul_(2.0).sub_(1.0)


class _FlipGenerate(torch.autograd.Function):
    """child = sign(scores) * tiled parent, with the straight-through backward written out: it
    keeps nothing but the two inputs (no sign tensor, no tiled parent), and each direction
    allocates one child-sized buffer, the one it returns."""

    @staticmethod
    def forward(parent, scores, tile_out: int, tile_in: int, rule: str, dtype: torch.dtype):
        n, m, kh, kw = parent.shape
        signs6 = signs_of(scores).to(dtype).view(tile_out, n, tile_in, m, kh, kw)
        return signs6.mul_(parent.to(dtype).view(1, n, 1, m, kh, kw)).view(scores.shape)

    @staticmethod
    def setup_context(ctx, inputs, output):
        parent, scores, tile_out, tile_in, rule, _ = inputs
        keep_inputs(ctx, parent, scores)
        ctx.tiles, ctx.rule = (tile_out, tile_in), rule

    @staticmethod
    def backward(ctx, grad_child):
        parent, scores = kept_inputs(ctx)
        (tile_out, tile_in), (n, m, kh, kw) = ctx.tiles, parent.shape
        grad6 = grad_child.contiguous().view(tile_out, n, tile_in, m, kh, kw)
        scores6 = scores.view(tile_out, n, tile_in, m, kh, kw)
        buffer = signs_of(scores6)  # first sign * g, then the scores' gradient
        grad_parent = sum_tiles(buffer.mul_(grad6)) if ctx.needs_input_grad[0] else None
        grad_scores = None
        if ctx.needs_input_grad[1]:  # d child / d score = parent * surrogate'(score)
            surrogate = torch.abs(scores6, out=buffer)
            if ctx.rule == "clamp":  # 1 inside |s| <= 1 (le_ writes 1.0 / 0.0 in place)
                surrogate.le_(1.0)
            else:  # 2 - 2|s| inside |s| < 1
                surrogate.mul_(-2.0).add_(2.0).clamp_(min=0.0)
            grad_scores = surrogate.mul_(grad6).mul_(parent.view(1, n, 1, m, kh, kw)).view(scores.shape)
        return grad_parent, grad_scores, None, None, None, None


@torch.jit.ignore
def _flip_generate(parent: torch.Tensor, scores: torch.Tensor, tile_out: int, tile_in: int, rule: str,
                   dtype: torch.dtype) -> torch.Tensor:
    return _FlipGenerate.apply(parent, scores, tile_out, tile_in, rule, dtype)


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
