"""repeatseg: parameter-sharing encoders (RepeatNet, shared filter bases, DACNN) and dense baselines for
semantic segmentation.

Importing the package registers every encoder of the family table (``repeatseg.variants``) in smp
(``repeat_r18_f4``, ``dense_r18_w4``, ``basis_r34_s32u1``, ...) and in timm
(``repeat_resnet18_f4``, ``dense_resnet18_w4``, ``basis_resnet34_s32u1``, ...); any other name of a
family's grammar (``repeat_r18_f4_b16``, ``repeat_resnet18_c4``, ``[options]``) is registered the first
time smp or timm looks it up (``repeatseg.registry.NamesOnDemand``).
"""

from .openmp import wait_briefly

wait_briefly()  # before torch loads OpenMP (repeatseg/openmp.py: no collapse beside other work)

from . import backbones, encoders  # noqa: F401  (registration side effects)
from .accounting import ModelStats, describe
from .backbones import RepeatResNet, ResNetBackbone, Variant
from .encoders import RepeatResNetEncoder, SkipAdapterEncoder
from .errors import (
    CheckpointError,
    ConfigError,
    DataError,
    DeviceError,
    FolderClaimedError,
    MissingExtraError,
    MissingFileError,
    MixedRecipesError,
    NonFiniteLossError,
    OutputError,
    OutputExistsError,
    RepeatsegError,
    WriteError,
)
from .export import fold, load_packed, pack
from .layers import RepeatConv2d, SharingLayer, cached
from .pretrained import save_pretrained
from .registry import register, register_family, resolve_names_on_demand
from .segmenter import DECODER_CHANNELS, build_segmenter, load_segmenter
from .variants import FAMILIES, VARIANTS, EncoderVariant, get_variant
from .weights import LoadReport, load_encoder_weights

resolve_names_on_demand()  # any grammar name in plain smp and timm: smp.FPN("repeat_r18_f4_b16")

__version__ = "0.2.0"


__all__ = [
    "build_segmenter", "load_segmenter", "describe", "fold", "cached", "pack", "load_packed", "register", "register_family",
    "load_encoder_weights", "get_variant", "save_pretrained",
    "RepeatConv2d", "SharingLayer", "RepeatResNet", "ResNetBackbone", "RepeatResNetEncoder", "SkipAdapterEncoder",
    "Variant", "EncoderVariant", "ModelStats", "LoadReport", "FAMILIES", "VARIANTS", "DECODER_CHANNELS",
    "RepeatsegError", "ConfigError", "DataError", "CheckpointError", "MissingFileError", "OutputError", "OutputExistsError",
    "WriteError",
    "FolderClaimedError", "DeviceError", "MixedRecipesError", "NonFiniteLossError", "MissingExtraError",
    "__version__",
]
