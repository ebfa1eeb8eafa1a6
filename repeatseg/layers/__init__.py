"""RepeatNet building blocks: generated-weight convolutions, child transforms, straight-through sign."""

from .repeat_conv import RepeatConv2d
from .sign import GRADIENT_RULES, hard_sign, sign_ste, surrogate_grad
from .transforms import TRANSFORMS, ChildTransform, FlipRepeat, LinearRepeat, SwishRepeat, make_transform

__all__ = [
    "RepeatConv2d", "ChildTransform", "LinearRepeat", "SwishRepeat", "FlipRepeat", "make_transform",
    "TRANSFORMS", "GRADIENT_RULES", "hard_sign", "sign_ste", "surrogate_grad",
]
