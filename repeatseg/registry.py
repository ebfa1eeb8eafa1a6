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
    outer, NamesOnDemand.registering = NamesOnDemand.registering, True  # timm looks the name up while it registers it
    try:
        if plain.timm_name not in TIMM_VARIANTS:
            register_on_demand(plain)
            VARIANTS[plain.name] = plain
            TIMM_VARIANTS[plain.timm_name] = plain
        register_smp_variant(variant)
    finally:
        NamesOnDemand.registering = outer
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


class NamesOnDemand(dict):
    """smp's encoder table or timm's model table, which registers a name of a family's grammar
    (``repeat_r18_f4_b16``, ``repeat_resnet18_c4``, ``repeat_r18_f4[gradient=bireal]``) the first time
    smp or timm looks it up, so any grammar name works in plain ``smp.FPN(name)`` and
    ``timm.create_model(name)`` after ``import repeatseg``. Other names behave as in a plain dict."""

    registering = False  # one registration at a time, for both tables: timm looks a name up while it registers it

    def __init__(self, table: dict, kind: str):
        super().__init__(table)
        self.kind = kind  # "smp" or "timm": which name of a variant this table holds

    def __contains__(self, name) -> bool:
        return super().__contains__(name) or self.resolve(name)

    def __missing__(self, name):
        if self.resolve(name):
            return super().__getitem__(name)
        raise KeyError(name)

    def resolve(self, name) -> bool:
        """Register ``name`` if it is a grammar name of this table's kind; whether the table now holds it."""
        if not isinstance(name, str) or NamesOnDemand.registering:
            return False
        variant = parse_name(name)
        if variant is None or name != (variant.smp_key if self.kind == "smp" else variant.timm_name):
            return False
        register(variant)
        return super().__contains__(name)


def resolve_names_on_demand() -> None:
    """Swap smp's encoder table and timm's model table for ``NamesOnDemand`` copies (idempotent).
    Both libraries read the table by its module-level name at every lookup."""
    import segmentation_models_pytorch.encoders as smp_encoders
    import timm.models._registry as timm_registry

    if not isinstance(smp_encoders.encoders, NamesOnDemand):
        smp_encoders.encoders = NamesOnDemand(smp_encoders.encoders, "smp")
    if not isinstance(timm_registry._model_entrypoints, NamesOnDemand):
        timm_registry._model_entrypoints = NamesOnDemand(timm_registry._model_entrypoints, "timm")
