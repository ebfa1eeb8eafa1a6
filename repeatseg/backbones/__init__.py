"""Classification backbones, one file per family (timm models). Importing registers them in timm."""

from . import steerable  # noqa: F401  (registers rotcnn_c4/8/16; e2cnn is imported only to build them)
from .base import ARCH_LAYERS, ResNetBackbone, Variant
from .basis import BasisResNet, BasisVariant
from .resnet import BasicBlock, EncoderVariant, RepeatResNet, plain_conv, repeat_conv

__all__ = ["ResNetBackbone", "Variant", "ARCH_LAYERS", "RepeatResNet", "EncoderVariant", "BasicBlock", "plain_conv",
           "repeat_conv", "BasisResNet", "BasisVariant"]
