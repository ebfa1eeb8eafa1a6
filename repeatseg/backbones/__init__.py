"""Classification backbones (timm models). Importing this package registers them in timm."""

from .resnet import BasicBlock, RepeatResNet, make_conv, register_timm_variant

__all__ = ["RepeatResNet", "BasicBlock", "make_conv", "register_timm_variant"]
