"""DACNN (Huang et al., CVPR workshops 2019; Gabriel-Huang/DACNN_release): one 3x3 conv kernel
shared by many layers, with per-layer BatchNorm.

- ``plain``: every conv of every block of every stage is one shared 3x3 conv (width 2 x base,
  128 for ResNet's 64; no bias). Blocks are ``relu(bn1(conv(x)))``, ``bn2(conv(.)) + x``, ReLU.
- ``mix``: stage widths base x 1, 2, 4, 8, one shared 3x3 conv (with bias) per stage. Stage 1
  uses it for every conv; in stages 2-4 block 0 is a transition (an unshared 3x3 conv with bias
  + BN + ReLU from the previous width, then the shared conv; a 1x1 conv + BN shortcut) and every
  other block uses the shared conv twice.
- ``_reg``: a per-block 1x1 conv (planes -> planes, no bias), the "regulator", after the second
  BN and before the residual add. The authors' release builds regulators but never calls them;
  the paper counts them, so here they are called.
- Option ``roll`` (default True, as the authors' code): channels are rolled by one before and
  after the second conv of every block and by two on the shortcut, so a kernel shared by
  consecutive convs meets its input channels in another order each time.

Adapted to an ImageNet encoder (the release is CIFAR-only): the ResNet stem (7x7/2 conv, BN, ReLU,
3x3/2 max pool; ``plain`` at its shared width), then the four stages with MaxPool(2) opening
stages 2-4, so features sit at strides 2..32 like a ResNet's and the skip adapters map them to
the base channels. A kernel shared across stages is one Parameter held by one conv module per
stage, so each stage keeps its own stride and dilation (output stride 16 / 8 work).

Names: ``dacnn_r18_mix`` / ``dacnn_resnet18_mix``, ``dacnn_r34_plain``, ``dacnn_r18_mix_reg``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from .base import ARCH_LAYERS, CompressionContrast, ResNetBackbone, Variant, check_options, create, register_variant


def tied_conv(source: nn.Conv2d) -> nn.Conv2d:
    """A conv module of ``source``'s shape whose weight (and bias) are ``source``'s Parameters."""
    conv = nn.Conv2d(source.in_channels, source.out_channels, source.kernel_size, source.stride, source.padding,
                     bias=source.bias is not None, device=source.weight.device)
    conv.weight = source.weight
    if source.bias is not None:
        conv.bias = source.bias
    return conv


class DacnnBlock(nn.Module):
    """A residual block whose second conv (and, outside transitions, its first) is the stage's
    shared conv. A transition (``in_channels != planes``) has its own first conv and a projection."""

    def __init__(self, in_channels: int, planes: int, shared: nn.Conv2d, regulator: bool, roll: bool):
        super().__init__()
        transition = in_channels != planes
        self.conv1 = nn.Conv2d(in_channels, planes, 3, padding=1) if transition else shared
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = shared
        self.bn2 = nn.BatchNorm2d(planes)
        self.regulator = nn.Conv2d(planes, planes, 1, bias=False) if regulator else None
        self.shortcut = None
        if transition:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, planes, 1, bias=False), nn.BatchNorm2d(planes))
        self.roll = roll

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.shortcut is None else self.shortcut(x)
        out = self.relu(self.bn1(self.conv1(x)))
        if self.roll:
            out = out.roll(-1, 1)
        out = self.bn2(self.conv2(out))
        if self.roll:
            out, shortcut = out.roll(-1, 1), shortcut.roll(-2, 1)
        if self.regulator is not None:
            out = self.regulator(out)
        return self.relu(out + shortcut)


class DACNN(ResNetBackbone):
    """DACNN-18/34 in the ResNet skeleton.

    Args:
        layers: blocks per stage.
        mode: ``"plain"`` (one kernel for the whole network) or ``"mix"`` (one per stage).
        regulators: add the per-block 1x1 regulator convs.
        base_width: 64 for ResNet (plain runs at 2 x base_width).
        options: ``roll`` (see the module docstring).
        **kwargs: ``ResNetBackbone``'s (num_classes, in_chans, drop_rate, output_stride, global_pool).
    """

    OPTIONS: ClassVar[dict] = {"roll": True}

    def __init__(self, layers: tuple[int, ...] = (2, 2, 2, 2), mode: str = "mix", regulators: bool = False,
                 base_width: int = 64, options: dict | None = None, **kwargs):
        if mode not in ("plain", "mix"):
            raise ValueError(f"DACNN mode must be 'plain' or 'mix', got {mode!r}")
        roll = bool(check_options(options, self.OPTIONS, "DACNN")["roll"])
        widths = [2 * base_width] * 4 if mode == "plain" else [base_width * 2**g for g in range(4)]
        plain_kernel = nn.Conv2d(widths[0], widths[0], 3, padding=1, bias=False) if mode == "plain" else None
        stages, in_channels = [], widths[0]
        for index, (blocks, planes) in enumerate(zip(layers, widths)):
            if plain_kernel is not None:  # one kernel for every stage, one module per stage
                shared = plain_kernel if index == 0 else tied_conv(plain_kernel)
            else:
                shared = nn.Conv2d(planes, planes, 3, padding=1, bias=True)
            stage = [nn.MaxPool2d(2)] if index else []
            for _ in range(blocks):
                stage.append(DacnnBlock(in_channels, planes, shared, regulators, roll))
                in_channels = planes
            stages.append((nn.Sequential(*stage), planes))
        super().__init__(stages, stem_width=widths[0], **kwargs)
        self.options = {"roll": roll}

    def dilate_stage(self, stage: nn.Module, rate: int) -> None:
        super().dilate_stage(stage, rate)
        for layer in stage.modules():  # the pool that opens a stage keeps the resolution too
            if isinstance(layer, nn.MaxPool2d):
                layer.kernel_size, layer.stride, layer.padding = 1, 1, 0


@dataclass(frozen=True)
class DacnnVariant(CompressionContrast, Variant):
    """``dacnn_r{18,34}_{plain,mix}`` and ``..._reg`` with regulators."""

    arch: str = "resnet18"
    mode: str = "mix"
    regulators: bool = False
    base_width: int = 64
    options: tuple = ()

    prefixes: ClassVar[tuple[str, ...]] = ("dacnn",)
    CODE: ClassVar[str] = r"(?P<mode>plain|mix)(?P<reg>_reg)?"
    model_cls: ClassVar[type[nn.Module]] = DACNN
    kind: ClassVar[str] = "compression"

    def __post_init__(self):
        if self.arch not in ARCH_LAYERS or self.mode not in ("plain", "mix"):
            raise ValueError(f"unknown DACNN variant {self.arch} {self.mode}")

    @property
    def code(self) -> str:
        return self.mode + ("_reg" if self.regulators else "")

    @classmethod
    def from_code(cls, arch: str, base_width: int, match) -> DacnnVariant:
        return cls(arch, match["mode"], bool(match["reg"]), base_width)

    def model_args(self) -> dict:
        return dict(layers=ARCH_LAYERS[self.arch], mode=self.mode, regulators=self.regulators,
                    base_width=self.base_width, options=self.option_dict)

    @classmethod
    def bench_sweep(cls, width: int, base: int) -> list[DacnnVariant]:
        return [cls("resnet18", "mix", False, base * width)]  # at the base width of layer1's channels

    @property
    def style(self) -> dict[str, str]:
        return {"color": "tab:purple", "marker": "^"}


VARIANT = DacnnVariant  # what the family table (repeatseg.variants.FAMILIES) reads


def _create(name: str, pretrained: bool = False, **kwargs) -> DACNN:
    return create(DacnnVariant.parse(name), pretrained, **kwargs)


# ------------------------------------------------------------------ registered variants (timm names)

@register_variant
def dacnn_resnet18_plain(pretrained=False, **kwargs) -> DACNN:
    return _create("dacnn_resnet18_plain", pretrained, **kwargs)


@register_variant
def dacnn_resnet18_mix(pretrained=False, **kwargs) -> DACNN:
    return _create("dacnn_resnet18_mix", pretrained, **kwargs)


@register_variant
def dacnn_resnet18_mix_reg(pretrained=False, **kwargs) -> DACNN:
    return _create("dacnn_resnet18_mix_reg", pretrained, **kwargs)


@register_variant
def dacnn_resnet34_plain(pretrained=False, **kwargs) -> DACNN:
    return _create("dacnn_resnet34_plain", pretrained, **kwargs)


@register_variant
def dacnn_resnet34_mix(pretrained=False, **kwargs) -> DACNN:
    return _create("dacnn_resnet34_mix", pretrained, **kwargs)


@register_variant
def dacnn_resnet34_mix_reg(pretrained=False, **kwargs) -> DACNN:
    return _create("dacnn_resnet34_mix_reg", pretrained, **kwargs)
