"""Registering a variant in smp and timm after import (tiny test models, other base widths)."""

from __future__ import annotations

from .variants import TIMM_VARIANTS, VARIANTS, EncoderVariant


def register(variant: EncoderVariant) -> EncoderVariant:
    """Register ``variant`` in smp and timm under its names; idempotent."""
    if VARIANTS.get(variant.name) == variant:
        return variant
    from .backbones import register_timm_variant
    from .encoders import register_smp_variant

    register_timm_variant(variant)
    register_smp_variant(variant)
    VARIANTS[variant.name] = variant
    TIMM_VARIANTS[variant.timm_name] = variant
    return variant
