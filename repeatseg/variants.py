"""The table of encoder variants: architecture x width x transform. Every registry reads it.

Names (smp / timm):

- dense:  ``dense_r18_w4``   / ``dense_resnet18_w4``   (plain convs, identical topology)
- repeat: ``repeat_r18_f4``  / ``repeat_resnet18_f4``  (``l`` linear, ``s`` swish, ``f`` flip)

A variant with a base width other than ResNet's 64 (tests and demos use tiny ones) gets a
``_b<base>`` suffix: ``repeat_r18_f4_b8``.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass

ARCH_LAYERS = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3)}
TRANSFORM_CODES = {"linear": "l", "swish": "s", "flip": "f"}
WIDTHS = (1, 2, 4, 8)


@dataclass(frozen=True)
class EncoderVariant:
    """One row of the table. ``transform=None`` is the dense baseline."""

    arch: str = "resnet18"
    width: int = 1
    transform: str | None = None
    base_width: int = 64

    def __post_init__(self):
        if self.arch not in ARCH_LAYERS:
            raise ValueError(f"unknown architecture {self.arch!r}; expected one of {sorted(ARCH_LAYERS)}")
        if self.transform is not None and self.transform not in TRANSFORM_CODES:
            raise ValueError(f"unknown transform {self.transform!r}; expected one of {sorted(TRANSFORM_CODES)}")
        if self.width < 1 or (self.transform is not None and self.width < 2):
            raise ValueError(f"width must be >= 1 (>= 2 for a RepeatNet variant), got {self.width}")

    @property
    def depth(self) -> int:
        return int(self.arch.removeprefix("resnet"))

    @property
    def is_dense(self) -> bool:
        return self.transform is None

    @property
    def _suffix(self) -> str:
        return "" if self.base_width == 64 else f"_b{self.base_width}"

    @property
    def name(self) -> str:
        """The smp encoder name."""
        kind = f"dense_r{self.depth}_w" if self.is_dense else f"repeat_r{self.depth}_{TRANSFORM_CODES[self.transform]}"
        return f"{kind}{self.width}{self._suffix}"

    @property
    def timm_name(self) -> str:
        kind = f"dense_{self.arch}_w" if self.is_dense else f"repeat_{self.arch}_{TRANSFORM_CODES[self.transform]}"
        return f"{kind}{self.width}{self._suffix}"

    @property
    def dense_twin(self) -> "EncoderVariant":
        """The dense model of the same width: what ratios and relative contributions compare against."""
        return dataclasses.replace(self, transform=None)

    @property
    def base_channels(self) -> tuple[int, ...]:
        """Channels of the base (1x) ResNet at strides 2, 4, 8, 16, 32."""
        b = self.base_width
        return (b, b, 2 * b, 4 * b, 8 * b)

    def model_args(self) -> dict:
        """Constructor arguments of ``backbones.resnet.RepeatResNet``."""
        return dict(layers=ARCH_LAYERS[self.arch], width=self.width, transform=self.transform,
                    base_width=self.base_width)


def default_variants() -> list[EncoderVariant]:
    """The registered grid: dense at widths 1, 2, 4, 8 and every transform at 2, 4, 8, for r18 and r34."""
    rows = []
    for arch in ARCH_LAYERS:
        rows += [EncoderVariant(arch, width) for width in WIDTHS]
        rows += [EncoderVariant(arch, width, t) for t in TRANSFORM_CODES for width in WIDTHS[1:]]
    return rows


VARIANTS: dict[str, EncoderVariant] = {v.name: v for v in default_variants()}
TIMM_VARIANTS: dict[str, EncoderVariant] = {v.timm_name: v for v in VARIANTS.values()}


_NAME = re.compile(r"^(?P<kind>dense|repeat)_(?:r|resnet)(?P<depth>18|34)_(?P<code>[wlsf])(?P<width>\d+)(?:_b(?P<base>\d+))?$")
_CODES = {"w": None, **{code: transform for transform, code in TRANSFORM_CODES.items()}}


def parse_name(name: str) -> EncoderVariant | None:
    """The variant a well-formed name describes (``repeat_r18_f4_b16``), registered or not."""
    match = _NAME.match(name)
    if not match or (match["kind"] == "dense") != (match["code"] == "w"):
        return None
    try:
        return EncoderVariant(f"resnet{match['depth']}", int(match["width"]), _CODES[match["code"]],
                              int(match["base"] or 64))
    except ValueError:
        return None


def get_variant(name: str) -> EncoderVariant:
    """Look a variant up by its smp or timm name; an unknown name lists the valid ones.

    Names outside the registered grid that follow the pattern (another ``_b<base>`` base width,
    say) are understood too; ``repeatseg.register`` makes them smp/timm names.
    """
    if name in VARIANTS:
        return VARIANTS[name]
    if name in TIMM_VARIANTS:
        return TIMM_VARIANTS[name]
    parsed = parse_name(name)
    if parsed is not None:
        return parsed
    close = difflib.get_close_matches(name, list(VARIANTS) + list(TIMM_VARIANTS), n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ValueError(f"unknown repeatseg encoder {name!r}.{hint} Valid names: {', '.join(VARIANTS)}")
