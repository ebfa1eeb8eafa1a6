"""Registering a variant in smp and timm after import (other base widths, model options), and a
family declared outside the package."""

from __future__ import annotations

from .variants import FAMILIES, TIMM_VARIANTS, VARIANTS, Variant, get_variant, parse_name


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


def register_family(family: type[Variant]) -> list[Variant]:
    """Add a family (its ``Variant`` class, whose module was imported: its ``@register_variant``
    constructors are in timm) to the family table, as a line of ``repeatseg.variants.FAMILIES``
    does for the package's own, and register its default variants in smp. Returns them."""
    from .backbones.base import ENTRYPOINTS

    if family not in FAMILIES:
        FAMILIES.append(family)
    members = [v for v in map(parse_name, ENTRYPOINTS) if isinstance(v, family)]
    for variant in members:  # already timm models: listed, then made smp encoders
        VARIANTS[variant.name] = variant
        TIMM_VARIANTS[variant.timm_name] = variant
    return [register(variant) for variant in members]
