"""The family table, and looking a variant up by name. Every registry reads these.

Names (smp / timm), each family declared in one file of ``repeatseg/backbones``:

- dense:  ``dense_r18_w4``      / ``dense_resnet18_w4``      (plain convs, identical topology)
- repeat: ``repeat_r18_f4``     / ``repeat_resnet18_f4``     (one letter per transform: l, s, f, ...)
- basis:  ``basis_r34_s32u1``   / ``basis_resnet34_s32u1``   (shared filter bases; ``d``: two per stage)
- dacnn:  ``dacnn_r18_mix_reg`` / ``dacnn_resnet18_mix_reg`` (one kernel per network or stage; ``_reg``)

A variant with a base width other than ResNet's 64 (tests and demos use tiny ones) gets a
``_b<base>`` suffix: ``repeat_r18_f4_b8``. Model options can follow in brackets:
``repeat_r18_f4[gradient=bireal]`` (see ``Variant.smp_key``).
"""

from __future__ import annotations

import difflib
from importlib import import_module

from .backbones.base import ARCH_LAYERS, ENTRYPOINTS, Variant
from .backbones.resnet import WIDTHS, EncoderVariant
from .errors import ConfigError
from .layers import TRANSFORMS

# The family table: one line per family, the module of repeatseg/backbones that declares it
# (importing it registers its timm constructors; its ``VARIANT`` class parses its names). A family
# declared outside the package joins it with ``repeatseg.registry.register_family``.
FAMILIES: list[type[Variant]] = [import_module(f".backbones.{module}", __package__).VARIANT for module in (
    "resnet",   # dense_*, repeat_*: dense and RepeatNet ResNets
    "basis",    # basis_*: deeply shared filter bases
    "dacnn",    # dacnn_*: one kernel shared across layers (DACNN)
)]

TRANSFORM_CODES = {name: cls.code for name, cls in TRANSFORMS.items()}  # read-only view, kept for old imports


def parse_name(name: str) -> Variant | None:
    """The variant a well-formed name describes (``repeat_r18_f4_b16``), registered or not."""
    for family in FAMILIES:
        variant = family.parse(name)
        if variant is not None:
            return variant
    return None


def known_options() -> dict:
    """Every model option some family of the table reads, with its default."""
    return {name: default for family in FAMILIES for name, default in family.model_cls.option_defaults().items()}


def default_variants() -> list[Variant]:
    """The registered grid: every family's timm constructors (``@register_variant``)."""
    return [v for v in map(parse_name, ENTRYPOINTS) if v is not None]


VARIANTS: dict[str, Variant] = {v.name: v for v in default_variants()}
TIMM_VARIANTS: dict[str, Variant] = {v.timm_name: v for v in VARIANTS.values()}


def get_variant(name: str | Variant) -> Variant:
    """Look a variant up by its smp or timm name; an unknown name lists the valid ones.

    Names outside the registered grid that follow a family's grammar (another ``_b<base>`` base
    width, say, or ``[options]``) are understood too; ``repeatseg.register`` makes them smp/timm names.
    """
    if isinstance(name, Variant):
        return name
    if name in VARIANTS:
        return VARIANTS[name]
    if name in TIMM_VARIANTS:
        return TIMM_VARIANTS[name]
    parsed = parse_name(name)
    if parsed is not None:
        return parsed
    close = difflib.get_close_matches(name, list(VARIANTS) + list(TIMM_VARIANTS), n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ConfigError(f"unknown repeatseg encoder {name!r}.{hint} Valid names: {', '.join(VARIANTS)}")


__all__ = ["FAMILIES", "VARIANTS", "TIMM_VARIANTS", "ARCH_LAYERS", "WIDTHS", "TRANSFORM_CODES", "EncoderVariant",
           "Variant", "parse_name", "default_variants", "get_variant", "known_options"]
