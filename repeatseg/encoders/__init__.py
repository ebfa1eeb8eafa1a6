"""smp registration: every variant of ``repeatseg.variants`` becomes an smp encoder name.

An entry of smp's encoder dict (``{"encoder", "pretrained_settings", "params"}``, smp's own
mechanism, read when a model is built) per variant; the encoder class is the family's backbone
with skip adapters (``encoder_class``). smp 0.6 loads pretrained encoders only from the Hugging
Face hub; repeatseg's weights are local files, loaded by ``repeatseg.build_segmenter(name,
encoder_weights=PATH_OR_TAG)``. An entry's ``pretrained_settings`` therefore refuses every tag
with a message that says so, before smp can reach its hub loader, however smp looks the tag up.
"""

from __future__ import annotations

import segmentation_models_pytorch as smp

from ..variants import VARIANTS, Variant
from .resnet import RepeatResNetEncoder, SkipAdapter, SkipAdapterEncoder, encoder_class, skip_adapter


class LocalWeightsOnly(dict):
    """``pretrained_settings`` of a repeatseg encoder: any lookup of a weights tag raises."""

    def __init__(self, encoder_name: str):
        super().__init__()
        self.encoder_name = encoder_name

    def _refuse(self, tag=None, *_args):
        raise KeyError(
            f"repeatseg encoder {self.encoder_name!r} has no hub weights (smp would download "
            f"encoder_weights={tag!r}). Build with encoder_weights=None, or load local weights with "
            f"repeatseg.build_segmenter({self.encoder_name!r}, encoder_weights=PATH_OR_TAG) or "
            "repeatseg.load_encoder_weights(model.encoder, PATH_OR_TAG)."
        )

    __contains__ = __getitem__ = get = _refuse


def register_smp_variant(variant: Variant) -> None:
    """Add ``variant`` to smp's encoder dict under ``variant.smp_key``."""
    smp.encoders.encoders[variant.smp_key] = {
        "encoder": encoder_class(variant.model_cls),
        "pretrained_settings": LocalWeightsOnly(variant.name),
        "params": dict(out_channels=[3, *variant.base_channels], name=variant.name, **variant.model_args()),
    }


for _variant in VARIANTS.values():
    register_smp_variant(_variant)

__all__ = ["RepeatResNetEncoder", "SkipAdapterEncoder", "SkipAdapter", "skip_adapter", "encoder_class",
           "LocalWeightsOnly", "register_smp_variant"]
