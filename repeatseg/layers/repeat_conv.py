"""RepeatConv2d: a wide convolution whose weight is generated from a base-size parent.

It subclasses ``nn.Conv2d`` so that everything that walks a model looking for convolutions (smp's
dilation and in_channels patching, torch.export, torch.compile, hooks that read ``in_channels``)
treats it as the wide conv it computes. It holds no ``weight`` parameter: ``weight`` is a
read-only property that generates the child weight, and ``state_dict`` holds ``parent`` plus the
transform's own parameters (``transform.scores``, ``transform.b1``/``b2``).

Width repetition: one layer, ``tile_out x tile_in`` tiles of its own parent.
Depth repetition: several layers built with the same ``parent`` Parameter, each with its own
transform (``RepeatConv2d.sharing(parent_conv, ...)``); the parent is counted and updated once.

A layer generates its weight on every forward through one method, ``generate``: no generated
weight is kept between calls, so no write to the parameters (an optimiser step, ``.data``,
``load_state_dict``, ``.to()``) can leave a stale output. The fast paths are explicit:
``repeatseg.cached(model)`` (generate once per scope, for evaluation and inference) and
``repeatseg.fold(model)`` (plain convs holding the generated weights). Under autocast the weight
is generated directly in the compute dtype (the parent is cast, never the child).
"""

from __future__ import annotations

import math
import weakref
from typing import ClassVar, Optional

import torch
from torch import nn

from .partial_tiles import partial_transform
from .protocol import SharingLayer
from .transforms import ChildTransform, make_transform


class RepeatConv2d(SharingLayer, nn.Conv2d):
    """Conv2d of shape (out_channels, in_channels, k, k) generated from a parent of shape
    (out_channels // tile_out, in_channels // tile_in, k, k) by ``transform`` (see transforms.py
    for the tile layout).

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, bias, padding_mode:
            as ``nn.Conv2d``, for the wide (child) layer. ``groups`` must be 1.
        tile_in, tile_out: repetition factors along input and output channels.
        transform: a registered transform name (``"linear"``, ``"swish"``, ``"flip"``, ...).
        transform_options: passed to the transform (``score_init``, ``gradient`` for flip;
            ``swish_init`` for swish).
        parent: an existing parent Parameter to share (depth repetition); a new one is made if None.
        parent_init: how a new parent starts (``PARENT_INITS``): ``"he_child"`` (default) is He
            normal with the *child's* fan-out, so the generated weight starts distributed like
            torchvision's init of the dense wide conv it stands in for; ``"xavier"`` is the
            authors' Xavier-uniform on the parent tensor itself (transmuteAI/RepeatNet).
        parent_channels: (out, in) channels of a new parent when the child is not a whole multiple
            of it (64 from 22): tile factors are then ignored and ``partial_tiles`` ("crop" or
            "authors", see partial_tiles.py) says how the partial tiles are generated.
    """

    #: Model options this layer reads, with defaults (``RepeatResNet.option_defaults`` gathers them).
    OPTIONS: ClassVar[dict] = {"parent_init": "he_child"}

    # TorchScript must not compile the generating property as a module attribute.
    __jit_unused_properties__ = ["weight"]

    #: Memory for time: when True (set it on the class or on a layer), the conv does not keep the
    #: generated weight for backward but generates it again there (one more forward generation per
    #: step; a dense weight's worth of memory less per layer). Not inside a ``cached`` scope.
    regenerate_for_backward: bool = False

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = False,
        padding_mode: str = "zeros",
        *,
        tile_in: int = 1,
        tile_out: int = 1,
        transform: str = "flip",
        transform_options: dict | None = None,
        parent: nn.Parameter | None = None,
        parent_init: str = "he_child",
        parent_channels: tuple[int, int] | None = None,
        partial_tiles: str = "crop",
        device=None,
        dtype=None,
    ):
        if parent_init not in PARENT_INITS:
            raise ValueError(f"unknown parent_init {parent_init!r}; expected one of {PARENT_INITS}")
        if groups != 1:
            raise NotImplementedError("RepeatConv2d supports groups=1 only")
        if parent_channels is None and (in_channels % tile_in or out_channels % tile_out):
            raise ValueError(
                f"channels ({in_channels} in, {out_channels} out) must be multiples of the tile "
                f"factors (tile_in={tile_in}, tile_out={tile_out})"
            )
        # Build the Conv2d bookkeeping on the meta device: the dense wide weight is never allocated.
        super().__init__(
            in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
            bias=False, padding_mode=padding_mode, device="meta",
        )
        del self.weight
        self.parent_init = parent_init
        factory = {"device": device, "dtype": dtype}
        if parent_channels is None:
            parent_channels = (out_channels // tile_out, in_channels // tile_in)
        parent_shape = (*parent_channels, *self.kernel_size)
        if parent is None:
            parent = nn.Parameter(torch.empty(parent_shape, **factory))
            self._init_parent(parent)
        elif tuple(parent.shape) != parent_shape:
            raise ValueError(f"shared parent has shape {tuple(parent.shape)}, this layer needs {parent_shape}")
        self.parent = parent
        if (out_channels, in_channels) == (tile_out * parent_shape[0], tile_in * parent_shape[1]):
            self.transform: ChildTransform = make_transform(
                transform, tile_out, tile_in, parent_shape, **(transform_options or {})
            ).to(**factory)
        else:  # parent_channels given: partial_transform finds the tile factors, whole or partial
            self.transform = partial_transform(partial_tiles, transform, parent_shape, (out_channels, in_channels),
                                               **(transform_options or {})).to(**factory)
        self.bias = nn.Parameter(torch.zeros(out_channels, **factory)) if bias else None

    def _init_parent(self, parent: torch.Tensor) -> None:
        with torch.no_grad():
            if self.parent_init == "xavier":
                nn.init.xavier_uniform_(parent)
            else:
                parent.normal_(0.0, math.sqrt(2.0 / (self.out_channels * math.prod(self.kernel_size))))

    @classmethod
    def sharing(cls, source: "RepeatConv2d", transform: str, **kwargs) -> "RepeatConv2d":
        """A layer that reuses ``source``'s parent (depth repetition), with its own transform.

        Geometry (stride, padding, ...) defaults to the source's and can be overridden in kwargs.
        """
        geometry = dict(
            in_channels=source.in_channels, out_channels=source.out_channels,
            kernel_size=source.kernel_size, stride=source.stride, padding=source.padding,
            dilation=source.dilation, bias=source.bias is not None,
            tile_in=source.transform.tile_in, tile_out=source.transform.tile_out, parent_init=source.parent_init,
        )
        geometry.update(kwargs)
        return cls(transform=transform, parent=source.parent, **geometry)

    @property
    def tile_in(self) -> int:
        return self.transform.tile_in

    @property
    def tile_out(self) -> int:
        return self.transform.tile_out

    @property
    def weight(self) -> torch.Tensor:  # type: ignore[override]
        """The generated (child) weight, shape (out_channels, in_channels, k, k): the one forward uses."""
        return self.generated(compute_dtype(self.parent))

    def generate(self, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
        """The child weight generated now from the parent and the transform, in ``dtype`` (default:
        the compute dtype, autocast's when it is on), differentiable. The one place a weight is
        made: forward, ``weight``, ``fold``, ``cached``, regeneration for backward and the bench."""
        if not torch.jit.is_scripting() and dtype is None:
            dtype = compute_dtype(self.parent)
        return self.transform(self.parent, dtype)

    def reset_parameters(self) -> None:
        # nn.Conv2d.__init__ calls this before the parent exists.
        if "parent" not in self._parameters:
            return
        self._init_parent(self.parent)
        self.transform.reset_parameters()
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():
            return self._conv_forward(x, self.generate(self.parent.dtype), self.bias)
        weight = self.generated(compute_dtype(self.parent))
        if self.regenerate_for_backward and not torch.compiler.is_compiling() and weight.requires_grad \
                and not self.is_cached():
            with torch.autograd.graph.saved_tensors_hooks(*self._regenerating_hooks(weight)):
                return self._conv_forward(x, weight, self.bias)
        return self._conv_forward(x, weight, self.bias)

    def _regenerating_hooks(self, weight: torch.Tensor):
        """Saved-tensor hooks under which the conv saves, instead of ``weight``, a note to generate
        it again (without autograd) when backward needs it; inputs changed since are refused."""
        inputs = (self.parent, *self.transform.generation_inputs())
        versions = [t._version for t in inputs]
        target, dtype = weakref.ref(weight), weight.dtype  # the hooks must not keep the weight alive

        def pack(tensor: torch.Tensor):
            return _REGENERATE if tensor is target() else tensor

        def unpack(saved):
            if saved is not _REGENERATE:
                return saved
            if [t._version for t in inputs] != versions:
                raise RuntimeError("one of the variables needed for gradient computation has been modified by an "
                                   "inplace operation: an input of a RepeatConv2d weight regenerated for backward")
            with torch.no_grad():
                return self.generate(dtype)

        return pack, unpack

    def folded(self) -> nn.Conv2d:
        """A plain Conv2d holding the generated weight (and the bias)."""
        plain = nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size, self.stride, self.padding,
                          self.dilation, self.groups, bias=self.bias is not None, padding_mode=self.padding_mode,
                          device=self.parent.device, dtype=self.parent.dtype)
        with torch.no_grad():
            plain.weight.copy_(self.generate(self.parent.dtype))
            if self.bias is not None:
                plain.bias.copy_(self.bias)
        return plain

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, parent={tuple(self.parent.shape)}"


PARENT_INITS = ("he_child", "xavier")
_REGENERATE = object()  # what a conv saves instead of a weight it regenerates for backward


def compute_dtype(parent: torch.Tensor) -> torch.dtype:
    """The dtype a conv on ``parent``'s device computes in: autocast's when it is on."""
    device_type = parent.device.type
    if torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return parent.dtype
