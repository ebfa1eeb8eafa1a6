"""The rotated-digits CNNs of the paper's Table 4 (section 4.3): a vanilla CNN, its s-RepeatNet
versions with the inference FLOPs of each rotation-equivariant CNN, and (beyond the paper) the
vanilla CNN widened densely to the same FLOPs. The equivariant CNNs are in ``steerable.py``.

Every model is the same skeleton (``RotCNN``), from the authors' code (transmuteAI/RepeatNet
``models/group_equivariant.py``) and Weiler & Cesa's steerable CNN:

- six blocks conv -> BatchNorm -> ELU, kernels 7 (padding 1), then 5 (padding 2) four times, then
  5 (padding 0); a 2x2 max pool after blocks 2 and 4. A 29x29 digit (28x28 padded right and
  bottom) gives maps of 25, 25 -> 12, 12, 12 -> 6, 6, 2 pixels;
- global average pool, a max over the ``group_size`` channels of each field (the equivariant
  models' group pooling; 1 for plain CNNs), Linear(F, 64) -> BatchNorm1d -> ELU -> Linear(64, classes).

Widths (hard-coded: recomputing ``int(c / sqrt(2))`` of irrational products is fragile):

- ``rotcnn_vanilla``: 22-33-45-45-67-90 (``int(c / sqrt(2))`` of Weiler & Cesa's 32-48-64-64-96-128),
  340,309 parameters, plain convs without bias, PyTorch's default init (the authors').
- ``rotcnn_s_c{4,8,16}``: every conv a ``RepeatConv2d`` with the s transform, generated from a
  parent of the vanilla conv's shape; children widened by sqrt(2N) (block 1 along outputs only):
  64-96-128-128-192-256 (C4), 90-135-181-181-271-362 (C8), 128-192-256-256-384-512 (C16). For C4
  and C16 the child convs have exactly the exported RE-CNN's shapes. Each repeated conv has a bias
  (init 0); parents and the s scalars start Xavier-uniform (the authors' init).
- ``rotcnn_dense_c{4,8,16}``: plain convs at the s-RepeatNet children's widths, so the FLOPs are
  the s-RepeatNet's and the parameters grow with them: the control that separates what the FLOPs
  buy from what repetition buys.

Partial tiles: a child width is not a whole multiple of its parent's (64 from 22). By default
(model option ``partial_tiles=crop``) the child is ``ceil`` whole tiles cropped to its width, so
every child weight is a tile's psi of a parent weight; ``partial_tiles=authors`` is the authors'
rule (extra rows and columns as psi of already generated ones, with scalars of their own), which
gives their parameter counts exactly (352,987 / 360,963 / 372,179). See ``layers/partial_tiles.py``.

Input: ``(B, 1, 29, 29)``, values in [0, 1], no normalisation (the authors' recipe).
``features_only`` returns the maps after blocks 2, 4, 5 and 6 (reductions 1, 2, 4 and 14).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import nn

from ..errors import ConfigError
from ..layers import RepeatConv2d
from ..layers.partial_tiles import PARTIAL_TILES
from .base import check_options

LAYOUT = ((7, 1), (5, 2), (5, 2), (5, 2), (5, 2), (5, 0))  # (kernel, padding) of the six blocks
POOLED_AFTER = (2, 4)  # blocks followed by a 2x2 max pool
FEATURE_BLOCKS = ((2, 1), (4, 2), (5, 4), (6, 14))  # (block, reduction) of feature_info
HIDDEN = 64
INPUT_SIZE = 29  # the 28x28 digit padded by one column and one row

VANILLA_WIDTHS = (22, 33, 45, 45, 67, 90)
#: Children of the s-RepeatNet (and dense) models with the inference FLOPs of the RE-CNN of group N.
FLOP_MATCHED_WIDTHS = {
    4: (64, 96, 128, 128, 192, 256),
    8: (90, 135, 181, 181, 271, 362),
    16: (128, 192, 256, 256, 384, 512),
}


def conv_block(conv: nn.Module, channels: int) -> nn.Sequential:
    """conv -> BatchNorm2d -> ELU (indices 0, 1, 2 of the block)."""
    return nn.Sequential(conv, nn.BatchNorm2d(channels), nn.ELU(inplace=True))


def plain_block(index: int, in_channels: int, out_channels: int, kernel: int, padding: int) -> nn.Sequential:
    return conv_block(nn.Conv2d(in_channels, out_channels, kernel, padding=padding, bias=False), out_channels)


def repeat_block(index: int, in_channels: int, out_channels: int, kernel: int, padding: int, *,
                 parents: tuple[int, ...], transform: str, options: dict) -> nn.Sequential:
    """Block ``index`` with a RepeatConv2d whose parent is (parents[index], parents[index - 1])
    (block 0: the input channels, repeated along outputs only)."""
    parent_in = in_channels if index == 0 else parents[index - 1]
    transform_options = {k: v for k, v in options.items() if k == "swish_init"} if transform == "swish" else {}
    conv = RepeatConv2d(in_channels, out_channels, kernel, padding=padding, bias=True, transform=transform,
                        transform_options=transform_options, parent_init=options["parent_init"],
                        parent_channels=(parents[index], parent_in), partial_tiles=options["partial_tiles"])
    return conv_block(conv, out_channels)


class FieldMaxPool(nn.Module):
    """(B, F * group_size, ...) -> (B, F): the maximum over each field's ``group_size`` channels
    (e2cnn's GroupPooling of regular fields, whose channels are contiguous per field), after a
    global pool; with ``group_size`` 1 a flatten."""

    def __init__(self, group_size: int = 1):
        super().__init__()
        self.group_size = group_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1).unflatten(1, (-1, self.group_size)).amax(2)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}"


class RotCNN(nn.Module):
    """The Table 4 skeleton (module docstring) with blocks from ``block``.

    Args:
        widths: output fields of the six blocks (channels for a plain CNN).
        block: ``block(index, in_channels, out_channels, kernel, padding)`` -> the block module,
            taking and returning plain tensors (``plain_block``, a ``repeat_block`` partial, ...).
        group_size: channels per field (N for regular fields of C_N; 1 for plain convs).
        num_classes, in_chans, drop_rate: as timm (``num_classes=0``: pooled hidden features).
    """

    OPTIONS: ClassVar[dict[str, Any]] = {}

    @classmethod
    def option_defaults(cls) -> dict[str, Any]:
        return dict(cls.OPTIONS)

    def __init__(self, widths: tuple[int, ...] = VANILLA_WIDTHS, block: Callable[..., nn.Module] = plain_block,
                 group_size: int = 1, num_classes: int = 10, in_chans: int = 1, drop_rate: float = 0.0,
                 options: dict | None = None, global_pool: str = "avg"):
        super().__init__()
        if len(widths) != len(LAYOUT):
            raise ValueError(f"RotCNN needs {len(LAYOUT)} widths, got {widths}")
        if global_pool != "avg":
            raise ValueError(f"only global_pool='avg' is supported, got {global_pool!r}")
        self.options = check_options(options, self.OPTIONS, type(self).__name__)
        self.widths, self.group_size, self.num_classes, self.drop_rate = tuple(widths), group_size, num_classes, drop_rate
        in_channels = in_chans
        for index, ((kernel, padding), width) in enumerate(zip(LAYOUT, widths)):
            self.add_module(f"block{index + 1}", block(index, in_channels, width * group_size, kernel, padding))
            if index + 1 in POOLED_AFTER:
                self.add_module(f"pool{POOLED_AFTER.index(index + 1) + 1}", nn.MaxPool2d(2))
            in_channels = width * group_size
        self.feature_info = [dict(num_chs=widths[b - 1] * group_size, reduction=r, module=f"block{b}")
                             for b, r in FEATURE_BLOCKS]
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.group_pool = FieldMaxPool(group_size)
        self.head = nn.Sequential(nn.Linear(widths[-1], HIDDEN), nn.BatchNorm1d(HIDDEN), nn.ELU(inplace=True))
        self.num_features = self.head_hidden_size = HIDDEN
        self.fc = nn.Linear(HIDDEN, num_classes) if num_classes else nn.Identity()

    @property
    def blocks(self) -> list[nn.Module]:
        return [getattr(self, f"block{index + 1}") for index in range(len(LAYOUT))]

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str = "avg") -> None:
        self.num_classes = num_classes
        self.fc = nn.Linear(HIDDEN, num_classes) if num_classes else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) -> (B, widths[-1] * group_size, h, w): the six blocks and two pools."""
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index + 1 in POOLED_AFTER:
                x = getattr(self, f"pool{POOLED_AFTER.index(index + 1) + 1}")(x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head(self.group_pool(self.global_pool(x)))
        if self.drop_rate:
            x = nn.functional.dropout(x, p=self.drop_rate, training=self.training)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class RepeatRotCNN(RotCNN):
    """RotCNN whose convs are RepeatConv2d children of ``parents``-wide parents (s-RepeatNet).

    Model options: ``partial_tiles`` (``"crop"``, default, or ``"authors"``), ``swish_init``
    (``"xavier"``, the authors', or a (b1, b2) pair; (2, 0) starts as pure tiling) and
    ``parent_init`` (``"xavier"``, the authors', or ``"he_child"``).
    """

    OPTIONS: ClassVar[dict[str, Any]] = {"partial_tiles": "crop", "swish_init": "xavier", "parent_init": "xavier"}

    def __init__(self, widths: tuple[int, ...], parents: tuple[int, ...] = VANILLA_WIDTHS, transform: str = "swish",
                 options: dict | None = None, **kwargs):
        options = check_options(options, self.OPTIONS, type(self).__name__)
        if options["partial_tiles"] not in PARTIAL_TILES:
            raise ConfigError(f"{type(self).__name__}: partial_tiles {options['partial_tiles']!r} is not one of {PARTIAL_TILES}")
        block = functools.partial(repeat_block, parents=tuple(parents), transform=transform, options=options)
        super().__init__(widths, block=block, options=options, **kwargs)
        self.parents, self.transform = tuple(parents), transform


# ---------------------------------------------------------------------------------- the family

#: The paper's Table 4 (rot-MNIST top-1 %, one run each; their claim, not reproduced here).
PAPER_TABLE4 = {"rotcnn_vanilla": 92.6, "rotcnn_c4": 96.5, "rotcnn_c8": 96.8, "rotcnn_c16": 96.3,
                "rotcnn_s_c4": 93.2, "rotcnn_s_c8": 94.4, "rotcnn_s_c16": 93.5}


@dataclass(frozen=True)
class RotVariant:
    """One model of the family: what it is, how it is labelled and what it is compared with.

    ``kind``: ``"dense"`` (the vanilla CNN, every row's reference), ``"equivariant"`` (RE-CNN),
    ``"repeat"`` (s-RepeatNet) or ``"wide"`` (dense, widened to the FLOPs of group ``group``).
    """

    name: str
    kind: str
    group: int | None = None

    family: ClassVar[str] = "rotcnn"
    input_size: ClassVar[int] = INPUT_SIZE
    in_chans: ClassVar[int] = 1
    num_classes: ClassVar[int] = 10

    @property
    def timm_name(self) -> str:
        return self.name

    @property
    def is_dense(self) -> bool:
        return self.kind == "dense"

    @property
    def label(self) -> str:
        return {"dense": "vanilla CNN", "equivariant": f"RE-CNN C{self.group}",
                "repeat": f"s-RepeatNet (C{self.group} FLOPs)", "wide": f"dense CNN (C{self.group} FLOPs)"}[self.kind]

    @property
    def colour(self) -> str:
        """How figures draw it."""
        return {"dense": "black", "equivariant": "tab:red", "repeat": "tab:blue", "wide": "tab:gray"}[self.kind]

    @property
    def reference(self) -> RotVariant:
        """The model ratios compare with: the vanilla CNN (Table 4's baseline)."""
        return ROT_VARIANTS["rotcnn_vanilla"]

    @property
    def contrast(self) -> tuple[RotVariant, RotVariant] | None:
        """(upper, lower) of the relative contribution (M - lower) / (upper - lower): for the
        FLOP-matched models, (the RE-CNN of their group, the vanilla CNN), Table 4's definition."""
        if self.kind not in ("repeat", "wide"):
            return None
        return ROT_VARIANTS[f"rotcnn_c{self.group}"], self.reference

    @property
    def flop_matched_dense(self) -> RotVariant | None:
        """For an s-RepeatNet, the dense CNN of its widths (same FLOPs): what its width alone would buy."""
        return ROT_VARIANTS[f"rotcnn_dense_c{self.group}"] if self.kind == "repeat" else None

    @property
    def paper_top1(self) -> float | None:
        """Table 4's top-1 (a fraction), or None for a row the paper does not have."""
        value = PAPER_TABLE4.get(self.name)
        return None if value is None else value / 100

    @property
    def paper_rel_contribution(self) -> float | None:
        """Table 4's relative contribution, from its numbers (15.4, 42.9, 24.3 %)."""
        if self.contrast is None or self.paper_top1 is None:
            return None
        upper, lower = (v.paper_top1 for v in self.contrast)
        return (self.paper_top1 - lower) / (upper - lower)

    def metadata(self) -> dict[str, str]:
        return {"model": self.name, "family": self.family, "kind": self.kind, "group": str(self.group or "")}


ROT_VARIANTS: dict[str, RotVariant] = {v.name: v for v in (
    RotVariant("rotcnn_vanilla", "dense"),
    *(RotVariant(f"rotcnn_c{n}", "equivariant", n) for n in (4, 8, 16)),
    *(RotVariant(f"rotcnn_s_c{n}", "repeat", n) for n in (4, 8, 16)),
    *(RotVariant(f"rotcnn_dense_c{n}", "wide", n) for n in (4, 8, 16)),
)}


def rotcnn_cfg(**kwargs) -> dict:
    """The pretrained cfg of a rotcnn model (no URL: weights are local files)."""
    return dict(url="", num_classes=10, input_size=(1, INPUT_SIZE, INPUT_SIZE), pool_size=None, crop_pct=1.0,
                interpolation="bilinear", mean=(0.0,), std=(1.0,), classifier="fc", license="apache-2.0", **kwargs)


def register_rotcnn(fn: Callable, first_conv: str = "block1.0") -> Callable:
    """timm's ``@register_model`` with the rotcnn cfg added to the defining module's ``default_cfgs``."""
    module = sys.modules[fn.__module__]
    cfg = rotcnn_cfg(first_conv=first_conv)
    module.__dict__.setdefault("default_cfgs", {}).update(generate_default_cfgs({fn.__name__: cfg}))
    return register_model(fn)


def create_rotcnn(model_cls: type[RotCNN], name: str, pretrained: bool = False, **kwargs) -> RotCNN:
    """Build a rotcnn timm model; model options come as ``options={...}`` or as keyword arguments
    named like them (``partial_tiles="authors"``)."""
    options = dict(kwargs.pop("options", None) or {})
    # any option of the family, so that one this model does not read is refused by name (check_options)
    options.update({k: kwargs.pop(k) for k in list(kwargs) if k in {**model_cls.OPTIONS, **RepeatRotCNN.OPTIONS}})
    feature_cfg = dict(out_indices=tuple(range(len(FEATURE_BLOCKS))))
    return build_model_with_cfg(model_cls, name, pretrained, feature_cfg=feature_cfg, options=options, **kwargs)


# ------------------------------------------------------------------ registered models (timm names)

@register_rotcnn
def rotcnn_vanilla(pretrained=False, **kwargs) -> RotCNN:
    return create_rotcnn(RotCNN, "rotcnn_vanilla", pretrained, widths=VANILLA_WIDTHS, **kwargs)


@register_rotcnn
def rotcnn_s_c4(pretrained=False, **kwargs) -> RepeatRotCNN:
    return create_rotcnn(RepeatRotCNN, "rotcnn_s_c4", pretrained, widths=FLOP_MATCHED_WIDTHS[4], **kwargs)


@register_rotcnn
def rotcnn_s_c8(pretrained=False, **kwargs) -> RepeatRotCNN:
    return create_rotcnn(RepeatRotCNN, "rotcnn_s_c8", pretrained, widths=FLOP_MATCHED_WIDTHS[8], **kwargs)


@register_rotcnn
def rotcnn_s_c16(pretrained=False, **kwargs) -> RepeatRotCNN:
    return create_rotcnn(RepeatRotCNN, "rotcnn_s_c16", pretrained, widths=FLOP_MATCHED_WIDTHS[16], **kwargs)


@register_rotcnn
def rotcnn_dense_c4(pretrained=False, **kwargs) -> RotCNN:
    return create_rotcnn(RotCNN, "rotcnn_dense_c4", pretrained, widths=FLOP_MATCHED_WIDTHS[4], **kwargs)


@register_rotcnn
def rotcnn_dense_c8(pretrained=False, **kwargs) -> RotCNN:
    return create_rotcnn(RotCNN, "rotcnn_dense_c8", pretrained, widths=FLOP_MATCHED_WIDTHS[8], **kwargs)


@register_rotcnn
def rotcnn_dense_c16(pretrained=False, **kwargs) -> RotCNN:
    return create_rotcnn(RotCNN, "rotcnn_dense_c16", pretrained, widths=FLOP_MATCHED_WIDTHS[16], **kwargs)
