"""Wide ResNet-18/34, dense or RepeatNet, in the authors' form (transmuteAI/RepeatNet resnet_rep.py).

- The stem (7x7 conv, BN) stays at base width; layer1..layer4 are ``width`` times wider.
- In a RepeatNet model every conv of layer1..layer4, the 1x1 downsample convs included, is a
  ``RepeatConv2d`` generated from a parent of the base ResNet's shape. layer1's first conv (and
  its downsample, which exists only once widened) repeats along outputs only: its input is the stem.
- Every BatchNorm is full width with its own parameters.

Parameter names follow torchvision and timm (``conv1``, ``bn1``, ``layer1.0.conv1``,
``layer2.0.downsample.0``, ``fc``), so a dense 1x model loads their ImageNet checkpoints as they
are (see ``repeatseg.weights``). RepeatNet convs hold ``parent`` and ``transform.*`` instead of
``weight``.

Names: ``dense_r18_w4`` / ``dense_resnet18_w4`` and ``repeat_r18_f4`` / ``repeat_resnet18_f4``
(one letter per registered transform: ``l`` linear, ``s`` swish, ``f`` flip, ...).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from ..layers import TRANSFORMS, RepeatConv2d
from .base import ARCH_LAYERS, ResNetBackbone, Variant, check_options, create, register_variant

WIDTHS = (1, 2, 4, 8)


def plain_conv(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
               tile_in: int = 1, tile_out: int = 1) -> nn.Conv2d:
    """A bias-free 'same'-padded conv (the tile factors are ignored: a dense layer)."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=False)


def repeat_conv(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, tile_in: int = 1,
                tile_out: int = 1, *, transform: str, transform_options: dict | None = None,
                **conv_options) -> RepeatConv2d:
    """A bias-free 'same'-padded RepeatConv2d with ``tile_out x tile_in`` tiles of its parent;
    ``conv_options`` are the layer's own (``RepeatConv2d.OPTIONS``: ``parent_init``)."""
    return RepeatConv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, tile_in=tile_in,
                        tile_out=tile_out, transform=transform, transform_options=transform_options, **conv_options)


class BasicBlock(nn.Module):
    """ResNet basic block. ``conv`` builds its convs (``plain_conv`` or a ``repeat_conv`` partial);
    ``tile_in``/``tile_out`` are the repetition factors of its input and output."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1, tile_in: int = 1, tile_out: int = 1,
                 conv: Callable[..., nn.Conv2d] = plain_conv):
        super().__init__()
        self.conv1 = conv(in_channels, channels, 3, stride, tile_in, tile_out)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv(channels, channels, 3, 1, tile_out, tile_out)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(conv(in_channels, channels, 1, stride, tile_in, tile_out),
                                            nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.bn2(self.conv2(x))
        return self.relu(x + shortcut)


def repeat_option_defaults() -> dict[str, Any]:
    """Every option RepeatConv2d or some registered transform reads, with its default."""
    return {**RepeatConv2d.OPTIONS,
            **{name: default for cls in TRANSFORMS.values() for name, default in cls.OPTIONS.items()}}


class RepeatResNet(ResNetBackbone):
    """ResNet classifier, dense (``transform=None``) or RepeatNet (a registered transform name).

    Args:
        layers: blocks per stage, (2, 2, 2, 2) for ResNet-18, (3, 4, 6, 3) for ResNet-34.
        width: width factor of layer1..layer4 (the repetition factor of a RepeatNet model).
        transform: None for plain convs, else the RepeatNet child transform.
        options: model options (``gradient``, ``score_init``, ``swish_init``, ``parent_init``, ...);
            each transform reads its own, every RepeatConv2d ``parent_init``. ``transform_options`` is the older name.
        base_width: stem width of the 1x model (64 for ResNet; tests use tiny ones).
        **kwargs: ``ResNetBackbone``'s (num_classes, in_chans, drop_rate, output_stride, global_pool).
    """

    @classmethod
    def option_defaults(cls) -> dict[str, Any]:
        return repeat_option_defaults()  # read at call time: transforms may register later

    @staticmethod
    def options_read(transform: str | None) -> dict[str, Any]:
        """The options a model with ``transform`` reads: none for plain convs; else every
        RepeatConv2d's (``parent_init``) and the transform's own."""
        if transform is None:
            return {}
        if transform not in TRANSFORMS:
            raise ValueError(f"unknown RepeatNet transform {transform!r}; expected one of {tuple(TRANSFORMS)}")
        return {**RepeatConv2d.OPTIONS, **TRANSFORMS[transform].OPTIONS}

    def __init__(self, layers: tuple[int, ...] = (2, 2, 2, 2), width: int = 1, transform: str | None = None,
                 options: dict | None = None, base_width: int = 64, transform_options: dict | None = None, **kwargs):
        owner = f"{type(self).__name__}(transform={transform!r})"
        options = check_options({**(transform_options or {}), **(options or {})}, self.options_read(transform), owner)
        conv = plain_conv
        if transform is not None:
            own = {k: v for k, v in options.items() if k in TRANSFORMS[transform].OPTIONS}
            layer = {k: v for k, v in options.items() if k in RepeatConv2d.OPTIONS}
            conv = functools.partial(repeat_conv, transform=transform, transform_options=own, **layer)
        stages, in_channels, tile_in = [], base_width, 1
        for index, blocks in enumerate(layers):
            channels = base_width * 2**index * width
            stage = []
            for block in range(blocks):
                stride = 2 if index > 0 and block == 0 else 1
                stage.append(BasicBlock(in_channels, channels, stride, tile_in, width, conv))
                in_channels, tile_in = channels, width
            stages.append((nn.Sequential(*stage), channels))
        super().__init__(stages, stem_width=base_width, **kwargs)
        self.width, self.transform, self.options = width, transform, options


@dataclass(frozen=True)
class EncoderVariant(Variant):
    """Dense (``transform=None``) and RepeatNet ResNets: ``dense_r18_w4``, ``repeat_r18_f4``."""

    arch: str = "resnet18"
    width: int = 1
    transform: str | None = None
    base_width: int = 64
    options: tuple = ()

    prefixes: ClassVar[tuple[str, ...]] = ("dense", "repeat")
    CODE: ClassVar[str] = r"(?P<letter>[a-z])(?P<width>\d+)"
    model_cls: ClassVar[type[nn.Module]] = RepeatResNet

    def __post_init__(self):
        if self.arch not in ARCH_LAYERS:
            raise ValueError(f"unknown architecture {self.arch!r}; expected one of {sorted(ARCH_LAYERS)}")
        if self.transform is not None and self.transform not in TRANSFORMS:
            raise ValueError(f"unknown transform {self.transform!r}; expected one of {tuple(TRANSFORMS)}")
        if self.width < 1 or (self.transform is not None and self.width < 2):
            raise ValueError(f"width must be >= 1 (>= 2 for a RepeatNet variant), got {self.width}")

    @property
    def kind(self) -> str:  # type: ignore[override]
        return "dense" if self.transform is None else "width"

    @property
    def family(self) -> str:
        return "dense" if self.transform is None else "repeat"

    @property
    def code(self) -> str:
        return f"{'w' if self.transform is None else TRANSFORMS[self.transform].code}{self.width}"

    @classmethod
    def from_code(cls, arch: str, base_width: int, match) -> EncoderVariant | None:
        letter = match["letter"]
        transform = None if letter == "w" else next((n for n, t in TRANSFORMS.items() if t.code == letter), "?")
        return cls(arch, int(match["width"]), transform, base_width)

    def model_args(self) -> dict:
        return dict(layers=ARCH_LAYERS[self.arch], width=self.width, transform=self.transform,
                    base_width=self.base_width, options=self.option_dict)

    @property
    def options_read(self) -> dict[str, Any]:
        return RepeatResNet.options_read(self.transform)

    @property
    def dense_twin(self) -> EncoderVariant:
        """The dense model of the same width: what ratios and relative contributions compare against."""
        return EncoderVariant(self.arch, self.width, None, self.base_width)

    @property
    def reference(self) -> EncoderVariant:
        return self.dense_twin

    @property
    def contrast(self) -> tuple[EncoderVariant, EncoderVariant] | None:
        if self.transform is None:
            return None
        return self.dense_twin, EncoderVariant(self.arch, 1, None, self.base_width)

    @property
    def folds_into(self) -> EncoderVariant:
        return self.dense_twin  # a folded RepeatNet is its dense twin; a dense model is already plain

    @property
    def widened_from(self) -> EncoderVariant | None:
        return EncoderVariant(self.arch, 1, None, self.base_width) if self.is_dense and self.width > 1 else None

    @property
    def bits_figure(self) -> bool:
        return self.transform is not None

    @classmethod
    def bench_sweep(cls, width: int, base: int) -> list[EncoderVariant]:
        """RepeatNet with the paper's transforms at ``width`` on ``base`` (their references: its dense twins)."""
        return [cls("resnet18", width, transform, base) for transform in SWEPT_TRANSFORMS]

    @property
    def label(self) -> str:
        return "dense" if self.transform is None else f"RepeatNet ({self.transform})"

    @property
    def style(self) -> dict[str, str]:
        if self.transform is None:
            return {"color": "black", "marker": "o"}
        others = [name for name in TRANSFORMS if name not in TRANSFORM_COLOURS]
        colour = TRANSFORM_COLOURS.get(self.transform) or SPARE_COLOURS[others.index(self.transform) % len(SPARE_COLOURS)]
        return {"color": colour, "marker": "o"}

    def metadata(self) -> dict[str, str]:
        return dict(super().metadata(), transform=self.transform or "dense")


SWEPT_TRANSFORMS = ("linear", "swish", "flip")  # the paper's three: what bench sweeps measure
TRANSFORM_COLOURS = {"linear": "tab:gray", "swish": "tab:blue", "flip": "tab:red"}
SPARE_COLOURS = ("tab:orange", "tab:brown", "tab:pink", "tab:cyan")  # other transforms, in registration order


VARIANT = EncoderVariant  # what the family table (repeatseg.variants.FAMILIES) reads


def _create(name: str, pretrained: bool = False, **kwargs) -> RepeatResNet:
    return create(EncoderVariant.parse(name), pretrained, **kwargs)


# ------------------------------------------------------------------ registered variants (timm names)

@register_variant
def dense_resnet18_w1(pretrained=False, **kwargs) -> RepeatResNet:
    return _create("dense_resnet18_w1", pretrained, **kwargs)


@register_variant
def dense_resnet18_w2(pretrained=False, **kwargs) -> RepeatResNet:
    return _create("dense_resnet18_w2", pretrained, **kwargs)


@register_variant
def dense_resnet18_w4(pretrained=False, **kwargs) -> RepeatResNet:
    return _create("dense_resnet18_w4", pretrained, **kwargs)


@register_variant
def dense_resnet18_w8(pretrained=False, **kwargs) -> RepeatResNet:
    return _create("dense_resnet18_w8", pretrained, **kwargs)


@register_variant
def repeat_resnet18_l2(pretrained=False, **kwargs) -> RepeatResNet:
    return _create("repeat_resnet18_l2", pretrained, **kwargs)


@register_variant
def repeat_resnet18_l4(pretrained=False, **kwargs) -> RepeatResNet:
    return _create("repeat_resnet18_l4", pretrained, **kwargs)


@register_variant
def repeat_resnet18_l8(pretrained=False, **kwargs) -> RepeatResNet:
    return _create("repeat_resnet18_l8", pretrained, **kwargs)


@register_variant
def repeat_resnet18_s2(pretrained=False, **kwargs) -> RepeatResNet:
    return _create("repeat_resnet18_s2", pretrained, **kwargs)


@register_variant
def repeat_resnet18_s4(pretrained=False, **kwargs) -> RepeatResNet:
    return _create("repeat_resnet18_s4", pretrained, **kwargs)


@register_variant
def repeat_resnet18_s8(pretrained=False, **kwargs) -> RepeatResNet:
    return _create("repeat_resnet18_s8", pretrained, **kwargs)


@register_variant
def repeat_resnet18_f2(pretrained=False, **kwargs) -> RepeatResNet:
    return _create("repeat_resnet18_f2", pretrained, **kwargs)


@register_variant
def repeat_resnet18_f4(pretrained=False, **kwargs) -> RepeatResNet:
    return _create("repeat_resnet18_f4", pretrained, **kwargs)


@register_variant
def repeat_resnet18_f8(pretrained=False, **kwargs) -> RepeatResNet:
    return _create("repeat_resnet18_f8", pretrained, **kwargs)


@register_variant
def dense_resnet34_w1(pretrained=False, **kwargs) -> RepeatResNet:
    return _create("dense_resnet34_w1", pretrained, **kwargs)


@register_variant
def dense_resnet34_w2(pretrained=False, **kwargs) -> RepeatResNet:
    return _create("dense_resnet34_w2", pretrained, **kwargs)


@register_variant
def dense_resnet34_w4(pretrained=False, **kwargs) -> RepeatResNet:
    return _create("dense_resnet34_w4", pretrained, **kwargs)


@register_variant
def dense_resnet34_w8(pretrained=False, **kwargs) -> RepeatResNet:
    return _create("dense_resnet34_w8", pretrained, **kwargs)


@register_variant
def repeat_resnet34_l2(pretrained=False, **kwargs) -> RepeatResNet:
    return _create("repeat_resnet34_l2", pretrained, **kwargs)


@register_variant
def repeat_resnet34_l4(pretrained=False, **kwargs) -> RepeatResNet:
    return _create("repeat_resnet34_l4", pretrained, **kwargs)


@register_variant
def repeat_resnet34_l8(pretrained=False, **kwargs) -> RepeatResNet:
    return _create("repeat_resnet34_l8", pretrained, **kwargs)


@register_variant
def repeat_resnet34_s2(pretrained=False, **kwargs) -> RepeatResNet:
    return _create("repeat_resnet34_s2", pretrained, **kwargs)


@register_variant
def repeat_resnet34_s4(pretrained=False, **kwargs) -> RepeatResNet:
    return _create("repeat_resnet34_s4", pretrained, **kwargs)


@register_variant
def repeat_resnet34_s8(pretrained=False, **kwargs) -> RepeatResNet:
    return _create("repeat_resnet34_s8", pretrained, **kwargs)


@register_variant
def repeat_resnet34_f2(pretrained=False, **kwargs) -> RepeatResNet:
    return _create("repeat_resnet34_f2", pretrained, **kwargs)


@register_variant
def repeat_resnet34_f4(pretrained=False, **kwargs) -> RepeatResNet:
    return _create("repeat_resnet34_f4", pretrained, **kwargs)


@register_variant
def repeat_resnet34_f8(pretrained=False, **kwargs) -> RepeatResNet:
    return _create("repeat_resnet34_f8", pretrained, **kwargs)
