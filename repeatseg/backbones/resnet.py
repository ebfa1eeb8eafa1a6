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
"""

from __future__ import annotations

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import nn

from ..layers import RepeatConv2d
from ..variants import VARIANTS, EncoderVariant


def make_conv(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int = 1,
    *,
    tile_in: int = 1,
    tile_out: int = 1,
    transform: str | None = None,
    transform_options: dict | None = None,
) -> nn.Conv2d:
    """A bias-free 'same'-padded conv: plain when ``transform`` is None, else a RepeatConv2d."""
    padding = kernel_size // 2
    if transform is None:
        return nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False)
    return RepeatConv2d(
        in_channels, out_channels, kernel_size, stride, padding,
        tile_in=tile_in, tile_out=tile_out, transform=transform, transform_options=transform_options,
    )


class BasicBlock(nn.Module):
    """ResNet basic block; ``tile_in``/``tile_out`` are the repetition factors of its input and output."""

    def __init__(self, in_channels: int, channels: int, stride: int, tile_in: int, tile_out: int, conv_args: dict):
        super().__init__()
        self.conv1 = make_conv(in_channels, channels, 3, stride, tile_in=tile_in, tile_out=tile_out, **conv_args)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = make_conv(channels, channels, 3, tile_in=tile_out, tile_out=tile_out, **conv_args)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(
                make_conv(in_channels, channels, 1, stride, tile_in=tile_in, tile_out=tile_out, **conv_args),
                nn.BatchNorm2d(channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.bn2(self.conv2(x))
        return self.relu(x + shortcut)


def dilate_(module: nn.Module, rate: int) -> None:
    """Trade every conv's stride for dilation ``rate`` (how output strides 16 and 8 are made)."""
    for conv in module.modules():
        if isinstance(conv, nn.Conv2d):
            conv.stride = (1, 1)
            conv.dilation = (rate, rate)
            conv.padding = tuple((k // 2) * rate for k in conv.kernel_size)


class RepeatResNet(nn.Module):
    """ResNet classifier, dense (``transform=None``) or RepeatNet (``linear``/``swish``/``flip``).

    Args:
        layers: blocks per stage, (2, 2, 2, 2) for ResNet-18, (3, 4, 6, 3) for ResNet-34.
        width: width factor of layer1..layer4 (the repetition factor of a RepeatNet model).
        transform: None for plain convs, else the RepeatNet child transform.
        transform_options: options of the transform (``score_init``, ``gradient``, ``init``).
        base_width: stem width of the 1x model (64 for ResNet; tests use tiny ones).
        num_classes, in_chans, drop_rate: as timm; ``num_classes=0`` returns pooled features.
        output_stride: 32, 16 or 8 (later stages dilated instead of strided).
    """

    def __init__(
        self,
        layers: tuple[int, ...] = (2, 2, 2, 2),
        width: int = 1,
        transform: str | None = None,
        transform_options: dict | None = None,
        base_width: int = 64,
        num_classes: int = 1000,
        in_chans: int = 3,
        drop_rate: float = 0.0,
        output_stride: int = 32,
        global_pool: str = "avg",
    ):
        super().__init__()
        if global_pool != "avg":
            raise ValueError(f"only global_pool='avg' is supported, got {global_pool!r}")
        self.width = width
        self.transform = transform
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        self.conv1 = nn.Conv2d(in_chans, base_width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(base_width)
        self.act1 = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)

        conv_args = dict(transform=transform, transform_options=transform_options)
        in_channels, tile_in = base_width, 1
        self.feature_info = [dict(num_chs=base_width, reduction=2, module="act1")]
        for index, blocks in enumerate(layers):
            channels = base_width * 2**index * width
            stride = 1 if index == 0 else 2
            stage = []
            for block in range(blocks):
                stage.append(BasicBlock(in_channels, channels, stride if block == 0 else 1, tile_in, width, conv_args))
                in_channels, tile_in = channels, width
            self.add_module(f"layer{index + 1}", nn.Sequential(*stage))
            self.feature_info.append(dict(num_chs=channels, reduction=4 * 2**index, module=f"layer{index + 1}"))
        self.num_features = self.head_hidden_size = in_channels

        self.global_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()
        self._init_weights()
        self.set_output_stride(output_stride)

    def _init_weights(self) -> None:
        # torchvision's ResNet init; RepeatConv2d initialises its own parent.
        for module in self.modules():
            if type(module) is nn.Conv2d:
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def set_output_stride(self, output_stride: int) -> None:
        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
        if output_stride <= 16:
            dilate_(self.layer4, 32 // output_stride)
        if output_stride == 8:
            dilate_(self.layer3, 2)
        for info in self.feature_info:
            info["reduction"] = min(info["reduction"], output_stride)

    # timm's classifier API
    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str = "avg") -> None:
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.act1(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x)
        if self.drop_rate:
            x = nn.functional.dropout(x, p=self.drop_rate, training=self.training)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# ---------------------------------------------------------------------------------------------
# timm registration: one entrypoint per row of the variant table (repeatseg.variants).

def _cfg(**kwargs) -> dict:
    return dict(
        url="", num_classes=1000, input_size=(3, 224, 224), pool_size=(7, 7), crop_pct=0.875,
        interpolation="bilinear", mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD,
        first_conv="conv1", classifier="fc", license="apache-2.0", **kwargs,
    )


default_cfgs: dict = {}


def register_timm_variant(variant: EncoderVariant) -> None:
    """Register ``variant`` as a timm model (``timm.create_model(variant.timm_name)``).

    Local ImageNet weights load through timm's own mechanism:
    ``timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=PATH))``.
    """
    name = variant.timm_name

    def entrypoint(pretrained: bool = False, **kwargs) -> RepeatResNet:
        return build_model_with_cfg(RepeatResNet, name, pretrained, **dict(variant.model_args(), **kwargs))

    entrypoint.__name__ = entrypoint.__qualname__ = name
    entrypoint.__module__ = __name__
    entrypoint.__doc__ = f"{name}: {variant.arch}, width {variant.width}, {variant.transform or 'dense'}."
    default_cfgs.update(generate_default_cfgs({name: _cfg()}))
    register_model(entrypoint)


for _variant in VARIANTS.values():
    register_timm_variant(_variant)
