"""The smp encoder of every family: a backbone without its head, plus 1x1 skip adapters.

The adapters (1x1 conv + BN) map each feature map of the backbone's ``feature_info`` back to the
base ResNet's channels (64, 64, 128, 256, 512 at strides 2..32; identity where a feature already
has them), so ``out_channels`` is the base ResNet's and every encoder, whatever its family and
width, gets a decoder of identical shapes: the study compares encoders, not decoders.

``SkipAdapterEncoder`` is written once; ``encoder_class(backbone_cls)`` combines it with a
family's backbone class (so ``state_dict`` keys stay the classification model's: ``conv1.weight``,
``layer1.0.conv1.parent``, ... plus ``adapters.*``, and a pretrained classifier loads as it is).
"""

from __future__ import annotations

import functools

import torch
from segmentation_models_pytorch.encoders._base import EncoderMixin
from torch import nn

from ..backbones.base import ResNetBackbone
from ..backbones.resnet import RepeatResNet


class SkipAdapter(nn.Module):
    """1x1 conv + BN from a wide feature map to ``out_channels``."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


def skip_adapter(in_channels: int, out_channels: int) -> nn.Module:
    return nn.Identity() if in_channels == out_channels else SkipAdapter(in_channels, out_channels)


class SkipAdapterEncoder(EncoderMixin):
    """Features at strides 1 (the input), 2, 4, 8, 16, 32 with base-width channels.

    Mixed into a ``ResNetBackbone`` subclass by ``encoder_class``. ``name`` is the registered smp
    name (weight files are checked against it); ``options`` the model options it was built with.
    """

    def __init__(self, out_channels: list[int], depth: int = 5, output_stride: int = 32, name: str | None = None,
                 **model_args):
        if not 1 <= depth <= 5:
            raise ValueError(f"{type(self).__name__} depth must be in [1, 5], got {depth}")
        super(EncoderMixin, self).__init__(num_classes=0, **model_args)  # the backbone's __init__
        del self.fc, self.global_pool
        self.name = name
        self._depth = depth
        self._in_channels = 3
        self._out_channels = list(out_channels)
        self._output_stride = output_stride
        wide_channels = [info["num_chs"] for info in self.feature_info]
        self.adapters = nn.ModuleList(skip_adapter(c, b) for c, b in zip(wide_channels, out_channels[1:]))

    def get_stages(self) -> dict[int, list[nn.Module]]:
        return {16: [self.layer3], 32: [self.layer4]}

    def make_dilated(self, output_stride: int) -> None:
        # The backbone's own rule (``dilate_stage``: a family whose stages pool dilates its pools too).
        if output_stride not in (8, 16):
            raise ValueError(f"Output stride should be 16 or 8, got {output_stride}.")
        self.set_output_stride(output_stride)
        self._output_stride = output_stride

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = [x]
        if self._depth >= 1:
            x = self.act1(self.bn1(self.conv1(x)))
            features.append(self.adapters[0](x))
        if self._depth >= 2:
            x = self.layer1(self.maxpool(x))
            features.append(self.adapters[1](x))
        if self._depth >= 3:
            x = self.layer2(x)
            features.append(self.adapters[2](x))
        if self._depth >= 4:
            x = self.layer3(x)
            features.append(self.adapters[3](x))
        if self._depth >= 5:
            x = self.layer4(x)
            features.append(self.adapters[4](x))
        return features


@functools.cache
def encoder_class(backbone_cls: type[ResNetBackbone]) -> type:
    """The smp encoder class of a family: ``SkipAdapterEncoder`` over ``backbone_cls``."""
    name = backbone_cls.__name__ + "Encoder"
    return type(name, (SkipAdapterEncoder, backbone_cls), {"__module__": __name__, "__qualname__": name})


RepeatResNetEncoder = encoder_class(RepeatResNet)
