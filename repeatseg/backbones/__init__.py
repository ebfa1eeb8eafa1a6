"""Classification backbones, one file per family (timm models). Importing registers them in timm."""

from .base import ARCH_LAYERS, ResNetBackbone, Variant
from .basis import BasisResNet, BasisVariant
from .resnet import BasicBlock, EncoderVariant, RepeatResNet, plain_conv, repeat_conv

__all__ = ["ResNetBackbone", "Variant", "ARCH_LAYERS", "RepeatResNet", "EncoderVariant", "BasicBlock", "plain_conv",
           "repeat_conv", "BasisResNet", "BasisVariant"]
