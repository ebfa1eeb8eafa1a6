"""RepeatConv2d: a wide convolution whose weight is generated from a base-size parent.

It subclasses ``nn.Conv2d`` so that everything that walks a model looking for convolutions (smp's
dilation and in_channels patching, torch.export, torch.compile, hooks that read ``in_channels``)
treats it as the wide conv it computes. It holds no ``weight`` parameter: ``weight`` is a
read-only property that generates the child weight, and ``state_dict`` holds ``parent`` plus the
transform's own parameters (``transform.scores``, ``transform.b1``/``b2``).

Width repetition: one layer, ``tile_out x tile_in`` tiles of its own parent.
Depth repetition: several layers built with the same ``parent`` Parameter, each with its own
transform (``RepeatConv2d.sharing(parent_conv, ...)``); the parent is counted and updated once.

Generated weights are reused, never regenerated for nothing (``GeneratedWeight``):

- inference (eval mode, and no grad or frozen parameters): the weight is kept and reused until
  one of its inputs changes (the parent's and the transform's tensors: version, storage, device,
  dtype, requires_grad; the autocast dtype, grad and inference mode),
  so eval-mode inference costs what the dense twin costs. ``train()``/``eval()``, ``.to()`` and
  ``load_state_dict`` drop it. In-place writes that bypass autograd's version counter (through
  ``param.data``; fused optimisers, as of torch 2.14) are seen after the next training forward or
  ``train()``/``eval()`` switch, as in every training loop.
- otherwise (training): the weight is held weakly, alive only while an autograd graph holds it, so a
  layer called twice before backward generates once and nothing is kept after backward.
- under autocast the weight is generated directly in the compute dtype (the parent is cast).
- while compiling or tracing (torch.compile, torch.export, jit.trace) nothing is reused: the graph
  generates the weight from its parameters.
"""

from __future__ import annotations

import math
import weakref
from typing import ClassVar

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
    #: step; a dense weight's worth of memory less per layer; a layer called twice then generates twice).
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
        self._generated = GeneratedWeight()

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
        return self.generated_weight()

    @torch.jit.unused
    def generated_weight(self) -> torch.Tensor:
        """The child weight in the compute dtype, reused when its inputs are unchanged (module doc)."""
        dtype = compute_dtype(self.parent)
        if torch.compiler.is_compiling() or torch.jit.is_tracing():
            return self.transform(self.parent, dtype)
        key = self._generation_key(dtype)
        weight = self._generated.get(key)
        if weight is None:
            weight = self.transform(self.parent, dtype)
            # Kept only for inference, and only a weight that carries no autograd graph.
            self._generated = GeneratedWeight(key, weight, keep=not (self.training or weight.requires_grad))
        return weight

    def generate(self) -> torch.Tensor:
        """The child weight generated afresh in the compute dtype (what a training forward costs)."""
        return self.transform(self.parent, compute_dtype(self.parent))

    def _generation_inputs(self) -> tuple[torch.Tensor, ...]:
        """The parent and the transform's parameters and buffers (read from the module's own
        dicts, a few microseconds a forward cheaper than ``parameters()``, unless it nests modules)."""
        transform = self.transform
        if transform._modules:
            return (self.parent, *transform.parameters(), *transform.buffers())
        own = (*transform._parameters.values(), *transform._buffers.values())
        return (self.parent, *(t for t in own if t is not None))

    def _generation_key(self, dtype: torch.dtype) -> tuple | None:
        """What the generated weight depends on, or None if it cannot be told (never reuse then)."""
        key: list = [dtype, self.training, torch.is_grad_enabled(), torch.is_inference_mode_enabled()]
        for tensor in self._generation_inputs():
            if type(tensor) not in PLAIN_TENSORS or tensor.is_inference() or is_wrapped(tensor):
                return None  # functorch, fake or inference tensors: no version counter to trust
            key += (id(tensor), tensor.data_ptr(), tensor._version, tensor.dtype, tensor.device, tensor.requires_grad)
        return tuple(key)

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
            return self._conv_forward(x, self.transform(self.parent, None), self.bias)
        weight = self.generated_weight()
        if not (self.regenerate_for_backward and weight.requires_grad) or torch.compiler.is_compiling():
            return self._conv_forward(x, weight, self.bias)
        with torch.autograd.graph.saved_tensors_hooks(*self._regenerating_hooks(weight)):
            return self._conv_forward(x, weight, self.bias)

    def _regenerating_hooks(self, weight: torch.Tensor):
        """Saved-tensor hooks under which the conv saves, instead of ``weight``, a note to generate
        it again (without autograd) when backward needs it; inputs changed since are refused."""
        inputs = self._generation_inputs()
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
                return self.transform(self.parent, dtype)

        return pack, unpack

    # Anything that may replace or convert the inputs drops the kept weight (their versions need not move).
    def train(self, mode: bool = True) -> "RepeatConv2d":
        self._generated = GeneratedWeight()
        return super().train(mode)

    def _apply(self, fn, recurse=True):
        self._generated = GeneratedWeight()
        return super()._apply(fn, recurse)

    def _load_from_state_dict(self, *args, **kwargs):
        self._generated = GeneratedWeight()
        return super()._load_from_state_dict(*args, **kwargs)

    def folded(self) -> nn.Conv2d:
        """A plain Conv2d holding the generated weight (and the bias)."""
        plain = nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size, self.stride, self.padding,
                          self.dilation, self.groups, bias=self.bias is not None, padding_mode=self.padding_mode,
                          device=self.parent.device, dtype=self.parent.dtype)
        with torch.no_grad():
            plain.weight.copy_(self.transform(self.parent))
            if self.bias is not None:
                plain.bias.copy_(self.bias)
        return plain

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, parent={tuple(self.parent.shape)}"


PARENT_INITS = ("he_child", "xavier")
PLAIN_TENSORS = (torch.Tensor, nn.Parameter)
_REGENERATE = object()  # what a conv saves instead of a weight it regenerates for backward


def compute_dtype(parent: torch.Tensor) -> torch.dtype:
    """The dtype a conv on ``parent``'s device computes in: autocast's when it is on."""
    device_type = parent.device.type
    if torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return parent.dtype


def is_wrapped(tensor: torch.Tensor) -> bool:
    """A functorch (vmap, grad) wrapper: its version and storage are not the wrapped tensor's."""
    return torch._C._functorch.is_functorch_wrapped_tensor(tensor)


class GeneratedWeight:
    """A layer's last generated weight and the key of the inputs it came from.

    Kept (a strong reference) only for inference; otherwise a weak reference, alive while an
    autograd graph saves the weight for backward and gone after it. Never copied or pickled:
    ``deepcopy`` and ``torch.save`` of a model see an empty one.
    """

    __slots__ = ("key", "kept", "weak")

    def __init__(self, key: tuple | None = None, weight: torch.Tensor | None = None, keep: bool = False):
        self.key = key if weight is not None else None
        self.kept = weight if keep else None
        self.weak = weakref.ref(weight) if weight is not None else None

    def get(self, key: tuple | None) -> torch.Tensor | None:
        if key is None or key != self.key:
            return None
        return self.kept if self.kept is not None else self.weak()

    def __reduce__(self):
        return (GeneratedWeight, ())
