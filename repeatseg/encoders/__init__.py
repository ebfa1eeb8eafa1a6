"""smp registration: every variant of ``repeatseg.variants`` becomes an smp encoder name.

smp 0.6 loads pretrained encoders only from the Hugging Face hub; repeatseg's weights are local
files, loaded by ``repeatseg.build_segmenter(name, encoder_weights=PATH_OR_TAG)``. An entry's
``pretrained_settings`` therefore refuses every tag with a message that says so, before smp can
reach its hub loader.
"""

from __future__ import annotations

import segmentation_models_pytorch as smp

from ..variants import VARIANTS, EncoderVariant
from .resnet import RepeatResNetEncoder, SkipAdapter, skip_adapter


class LocalWeightsOnly(dict):
    """``pretrained_settings`` of a repeatseg encoder: smp's ``weights in settings`` check raises."""

    def __init__(self, encoder_name: str):
        super().__init__()
        self.encoder_name = encoder_name

    def __contains__(self, tag) -> bool:
        raise KeyError(
            f"repeatseg encoder {self.encoder_name!r} has no hub weights (smp would download "
            f"encoder_weights={tag!r}). Build with encoder_weights=None, or load local weights with "
            f"repeatseg.build_segmenter({self.encoder_name!r}, encoder_weights=PATH_OR_TAG) or "
            "repeatseg.load_encoder_weights(model.encoder, PATH_OR_TAG)."
        )


def register_smp_variant(variant: EncoderVariant) -> None:
    """Add ``variant`` to smp's encoder dict under ``variant.name``."""
    smp.encoders.encoders[variant.name] = {
        "encoder": RepeatResNetEncoder,
        "pretrained_settings": LocalWeightsOnly(variant.name),
        "params": dict(out_channels=[3, *variant.base_channels], name=variant.name, **variant.model_args()),
    }


for _variant in VARIANTS.values():
    register_smp_variant(_variant)

__all__ = ["RepeatResNetEncoder", "SkipAdapter", "skip_adapter", "LocalWeightsOnly", "register_smp_variant"]
