"""ResNet with deeply shared filter bases (Kang & Kim, NeurIPS 2021; ssregibility/Net_RL2).

``ResNetXX-SsUu``: stage g (0..3) has planes = base * 2^g, a shared basis of rank s * 2^g and, in
every shared conv, a unique basis of rank u * 2^g (S48U1: shared ranks 48/96/192/384, unique
1/2/4/8). Block 0 of every stage is a plain BasicBlock (its strided convs and projection shortcut
are never shared, so dilation works per stage); every later block's two 3x3 convs are
``SharedBasisConv``s on the stage's basis, followed by the block's BN(planes), ReLU after the
first, the residual add and ReLU after the second. With the ``d`` suffix a stage has two bases:
the first conv of every shared block uses basis 1, the second basis 2.

ResNet-18 has one sharable block per stage, so only the one-basis form shares a basis across
convs there; with two bases each serves a single conv (a low-rank factorisation, nothing shared).
The authors published no ResNet-18 shared model; it is allowed here for small studies.

Initialisation: every conv kaiming-normal (fan-out), BN 1 / 0, then the bases of each stage
orthogonally and jointly. Training adds 10 x the orthogonality penalty (``layers.basis``).

Names: ``basis_r34_s32u1`` / ``basis_resnet34_s32u1``, ``basis_r34_s48u1d`` (two bases per stage).
Parameter counts with 1,000 classes match the authors' (tested): R34 S48U1d 11,786,968; R34 S32U1
8,196,056; R18 S32U1 7,448,292.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ..layers.basis import FilterBasis, SharedBasisConv, group_bases
from .base import ARCH_LAYERS, CompressionContrast, ResNetBackbone, Variant, check_options, create, register_variant
from .resnet import BasicBlock


class SharedBasisBlock(nn.Module):
    """A basic block (planes -> planes, stride 1, identity shortcut) of two shared-basis convs."""

    def __init__(self, planes: int, unique_rank: int, first: FilterBasis, second: FilterBasis):
        super().__init__()
        self.conv1 = SharedBasisConv(planes, unique_rank, first)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = SharedBasisConv(planes, unique_rank, second)
        self.bn2 = nn.BatchNorm2d(planes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + x)


class BasisResNet(ResNetBackbone):
    """ResNet-18/34 whose shared blocks build their convs on per-stage filter bases.

    Args:
        layers: blocks per stage.
        shared_rank, unique_rank: ranks at stage 1 (doubled per stage).
        two_bases: one basis per stage (False) or two (True, the ``d`` suffix).
        base_width: planes of stage 1 (64 for ResNet).
        **kwargs: ``ResNetBackbone``'s (num_classes, in_chans, drop_rate, output_stride, global_pool).
    """

    def __init__(self, layers: tuple[int, ...] = (2, 2, 2, 2), shared_rank: int = 32, unique_rank: int = 1,
                 two_bases: bool = False, base_width: int = 64, options: dict | None = None, **kwargs):
        check_options(options, self.OPTIONS, "BasisResNet")
        stages, in_channels = [], base_width
        for index, blocks in enumerate(layers):
            planes, scale = base_width * 2**index, 2**index
            bases = group_bases([FilterBasis(planes, shared_rank * scale) for _ in range(2 if two_bases else 1)])
            stage = [BasicBlock(in_channels, planes, 2 if index else 1)]
            stage += [SharedBasisBlock(planes, unique_rank * scale, bases[0], bases[-1]) for _ in range(blocks - 1)]
            stages.append((nn.Sequential(*stage), planes))
            in_channels = planes
        super().__init__(stages, stem_width=base_width, **kwargs)


@dataclass(frozen=True)
class BasisVariant(CompressionContrast, Variant):
    """``basis_r{18,34}_s{S}u{U}`` (one basis per stage) and ``..._s{S}u{U}d`` (two)."""

    arch: str = "resnet34"
    shared_rank: int = 32
    unique_rank: int = 1
    two_bases: bool = False
    base_width: int = 64
    options: tuple = ()

    prefixes: ClassVar[tuple[str, ...]] = ("basis",)
    CODE: ClassVar[str] = r"s(?P<shared>\d+)u(?P<unique>\d+)(?P<two>d?)"
    model_cls: ClassVar[type[nn.Module]] = BasisResNet
    kind: ClassVar[str] = "compression"

    def __post_init__(self):
        if self.arch not in ARCH_LAYERS:
            raise ValueError(f"unknown architecture {self.arch!r}; expected one of {sorted(ARCH_LAYERS)}")
        rows = self.shared_rank * (2 if self.two_bases else 1)
        if self.shared_rank < 1 or self.unique_rank < 1 or rows > 9 * self.base_width:
            raise ValueError(f"shared rank {self.shared_rank} and unique rank {self.unique_rank} must be >= 1 and "
                             f"the bases of a stage at most 9 x planes = {9 * self.base_width} rows (orthogonality)")

    @property
    def code(self) -> str:
        return f"s{self.shared_rank}u{self.unique_rank}{'d' if self.two_bases else ''}"

    @classmethod
    def from_code(cls, arch: str, base_width: int, match) -> BasisVariant:
        return cls(arch, int(match["shared"]), int(match["unique"]), bool(match["two"]), base_width)

    def model_args(self) -> dict:
        return dict(layers=ARCH_LAYERS[self.arch], shared_rank=self.shared_rank, unique_rank=self.unique_rank,
                    two_bases=self.two_bases, base_width=self.base_width, options=self.option_dict)

    @classmethod
    def bench_sweep(cls, width: int, base: int) -> list[BasisVariant]:
        wide = base * width  # at the base width of layer1's channels, shared rank a quarter of the planes
        return [cls("resnet18", wide // 4, 1, False, wide)]

    @property
    def style(self) -> dict[str, str]:
        return {"color": "tab:green", "marker": "s"}


VARIANT = BasisVariant  # what the family table (repeatseg.variants.FAMILIES) reads


def _create(name: str, pretrained: bool = False, **kwargs) -> BasisResNet:
    return create(BasisVariant.parse(name), pretrained, **kwargs)


# ------------------------------------------------------------------ registered variants (timm names)

@register_variant
def basis_resnet18_s16u1(pretrained=False, **kwargs) -> BasisResNet:
    return _create("basis_resnet18_s16u1", pretrained, **kwargs)


@register_variant
def basis_resnet18_s32u1(pretrained=False, **kwargs) -> BasisResNet:
    return _create("basis_resnet18_s32u1", pretrained, **kwargs)


@register_variant
def basis_resnet34_s16u1(pretrained=False, **kwargs) -> BasisResNet:
    return _create("basis_resnet34_s16u1", pretrained, **kwargs)


@register_variant
def basis_resnet34_s32u1(pretrained=False, **kwargs) -> BasisResNet:
    return _create("basis_resnet34_s32u1", pretrained, **kwargs)


@register_variant
def basis_resnet34_s32u1d(pretrained=False, **kwargs) -> BasisResNet:
    return _create("basis_resnet34_s32u1d", pretrained, **kwargs)


@register_variant
def basis_resnet34_s48u1d(pretrained=False, **kwargs) -> BasisResNet:
    return _create("basis_resnet34_s48u1d", pretrained, **kwargs)
