"""repeatseg: RepeatNet encoders and dense baselines for semantic segmentation.

Importing the package registers every encoder of ``repeatseg.variants`` in smp (``repeat_r18_f4``,
``dense_r18_w4``, ...) and in timm (``repeat_resnet18_f4``, ``dense_resnet18_w4``, ...).
"""

from . import backbones, encoders  # noqa: F401  (registration side effects)
from .accounting import ModelStats, describe
from .backbones import RepeatResNet
from .encoders import RepeatResNetEncoder
from .export import fold, load_packed, pack
from .layers import RepeatConv2d
from .registry import register
from .segmenter import DECODER_CHANNELS, build_segmenter, load_segmenter
from .variants import VARIANTS, EncoderVariant, get_variant
from .weights import LoadReport, load_encoder_weights

__version__ = "0.1.0"


__all__ = [
    "build_segmenter", "load_segmenter", "describe", "fold", "pack", "load_packed", "register",
    "load_encoder_weights", "get_variant",
    "RepeatConv2d", "RepeatResNet", "RepeatResNetEncoder", "EncoderVariant", "ModelStats", "LoadReport",
    "VARIANTS", "DECODER_CHANNELS", "__version__",
]
