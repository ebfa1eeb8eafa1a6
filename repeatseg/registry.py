"""Registering a variant in smp and timm after import (other base widths, model options)."""

from __future__ import annotations

from .variants import TIMM_VARIANTS, VARIANTS, Variant, get_variant


def register(variant: Variant | str, **options) -> Variant:
    """Register ``variant`` (or a name) in smp under ``variant.smp_key`` and in timm under its
    timm name (options reach timm models as keyword arguments); idempotent. Returns the variant,
    with ``options`` added: ``smp.FPN(repeatseg.register("repeat_r18_f4", gradient="bireal").smp_key)``.
    """
    from .backbones.base import register_on_demand
    from .encoders import register_smp_variant

    variant = get_variant(variant).with_options(**options)
    plain = get_variant(variant.name)
    if plain.timm_name not in TIMM_VARIANTS:
        register_on_demand(plain)
        VARIANTS[plain.name] = plain
        TIMM_VARIANTS[plain.timm_name] = plain
    register_smp_variant(variant)
    return variant
