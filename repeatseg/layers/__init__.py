"""Building blocks of the encoder families: generated-weight and shared-basis convolutions, child
transforms, the straight-through sign, and the protocol through which layers describe themselves."""

from .basis import FilterBasis, SharedBasisConv, group_bases
from .coarse_flip import CoarseFlipRepeat
from .protocol import (
    SharingLayer,
    bit_parameter_names,
    bit_parameters,
    cached,
    default_regularization_weight,
    fold_layers,
    generating_layers,
    parameter_kinds,
    regularization_loss,
    regularized_layers,
    sharing_diagnostics,
)
from .repeat_conv import RepeatConv2d
from .seeded import RandomSignRepeat
from .sign import GRADIENT_RULES, hard_sign, sign_ste, surrogate_grad
from .transforms import (
    TRANSFORMS,
    ChildTransform,
    FlipRepeat,
    FusedGeneration,
    LinearRepeat,
    SwishRepeat,
    make_transform,
    register_transform,
)

__all__ = [
    "RepeatConv2d", "ChildTransform", "FusedGeneration", "LinearRepeat", "SwishRepeat", "FlipRepeat", "RandomSignRepeat",
    "CoarseFlipRepeat", "make_transform", "sharing_diagnostics",
    "register_transform", "TRANSFORMS", "GRADIENT_RULES", "hard_sign", "sign_ste", "surrogate_grad",
    "FilterBasis", "SharedBasisConv", "group_bases", "SharingLayer", "parameter_kinds", "bit_parameters",
    "bit_parameter_names", "fold_layers", "generating_layers", "cached",
    "regularization_loss", "regularized_layers", "default_regularization_weight",
]
