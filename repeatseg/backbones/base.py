"""What every encoder family builds on: the ResNet skeleton, the variant (a name and what it
means), and the timm registration of a family's constructors.

A family is one file in this folder holding three things (``resnet.py``, ``basis.py``,
``dacnn.py`` are the examples):

1. a backbone class, a ``ResNetBackbone`` whose subclass builds the four stages (the stem,
   output-stride dilation, ``feature_info``, pooling and classifier are shared);
2. a ``Variant`` subclass: a frozen dataclass whose fields are what a name encodes, with the
   family's name grammar (``CODE`` and ``code``), its ``kind``, what it is compared against, the
   options it reads, what it folds into, how figures label and style it and what the bench sweeps;
3. its registered default variants, timm-style: one two-line ``@register_variant`` constructor
   per name (``def basis_resnet34_s32u1(pretrained=False, **kwargs)``).

plus one line in the family table (``repeatseg.variants.FAMILIES``). smp registration, the
encoder, accounting, export, the study, the report, the bench and the tools read everything else
from the variant; none of them switches on a family's name or kind.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from dataclasses import replace
from typing import Any, ClassVar

import torch
import yaml
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import nn

from ..errors import ConfigError
from ..layers import regularization_loss

ARCH_LAYERS = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3)}

# ---------------------------------------------------------------------------------- variants

_NAME = re.compile(r"^(?P<family>[a-z]+)_(?:r|resnet)(?P<depth>\d+)_(?P<code>[a-z0-9_]+?)(?:_b(?P<base>\d+))?"
                   r"(?:\[(?P<options>.*)\])?$")


def _hashable(value: Any) -> Any:
    return tuple(_hashable(v) for v in value) if isinstance(value, (list, tuple)) else value


def format_options(options: tuple[tuple[str, Any], ...]) -> str:
    """``(("gradient", "bireal"),)`` -> ``"gradient=bireal"`` (values as compact JSON, strings bare)."""
    def text(value):
        return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return ",".join(f"{key}={text(value)}" for key, value in options)


def parse_options(text: str) -> dict[str, Any]:
    """``"gradient=bireal,score_init=[0,0.001]"`` -> dict; values read as YAML, commas inside [] kept."""
    items, depth, start = [], 0, 0
    for index, char in enumerate(text + ","):
        depth += {"[": 1, "(": 1, "]": -1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            items.append(text[start:index])
            start = index + 1
    options = {}
    for item in filter(None, (i.strip() for i in items)):
        if "=" not in item:
            raise ConfigError(f"model option {item!r} is not key=value")
        key, value = (part.strip() for part in item.split("=", 1))
        if key in options:
            raise ConfigError(f"model option {key!r} is given more than once in [{text}]")
        try:
            options[key] = yaml.safe_load(value)
        except yaml.YAMLError as error:
            raise ConfigError(f"model option {item!r}: the value is not plain YAML ({str(error).splitlines()[0]})") from error
    return options


def check_options(options: dict | None, read: dict[str, Any], owner: str) -> dict[str, Any]:
    """``read``'s defaults updated by ``options``: the one check of model options, wherever they come
    from (a name's brackets, keyword arguments, ``options=``, a backbone's constructor). An option
    the model does not read is refused with ``ValueError``, naming it and the options it reads."""
    options = dict(options or {})
    unread = sorted(set(options) - set(read))
    if unread:
        reads = f"it reads {', '.join(read)}" if read else "it reads no model options"
        raise ConfigError(f"{owner} does not read model option(s) {', '.join(unread)}; {reads}")
    return {**read, **options}


class Variant:
    """Base of every family's variant: one row of the encoder table.

    Subclasses are frozen dataclasses with fields ``arch``, their own, ``base_width`` (64 for
    ResNet; ``_b<base>`` in names) and ``options`` (model options as sorted (key, value) pairs;
    not part of the name, see ``smp_key``). They declare:

    - ``prefixes``: the name prefixes they parse (``("basis",)``); ``family`` is the one in use;
    - ``CODE``: a regex (named groups) for the family part of a name, ``from_code`` and ``code``;
    - ``model_cls``: the backbone class, built with ``model_args()``;
    - ``ARCH_LAYERS``: the depths its names may have (``resnet18``, ``resnet34``: blocks per stage);
    - ``kind``: ``"dense"`` (the reference), ``"width"`` (as wide as a dense model, fewer stored
      bytes: compared with the dense model of the same width) or ``"compression"`` (smaller than
      dense 1x: compared with dense 1x); only the variant itself reads it, the rest of the
      toolkit asks the properties below;
    - ``reference`` and ``contrast``, ``options_read``, ``folds_into``, ``label`` and ``style``,
      ``bits_figure``, ``widened_from`` and ``bench_sweep`` (see their docstrings).
    """

    prefixes: ClassVar[tuple[str, ...]] = ()
    CODE: ClassVar[str] = ""
    ARCH_LAYERS: ClassVar[dict[str, tuple[int, ...]]] = ARCH_LAYERS
    model_cls: ClassVar[type[nn.Module]]
    kind: ClassVar[str] = "width"

    arch: str
    base_width: int
    options: tuple

    # ------------------------------------------------------------------ grammar
    @property
    def family(self) -> str:
        return self.prefixes[0]

    @property
    def code(self) -> str:
        """The family part of the name, e.g. ``f4`` or ``s32u1d``."""
        raise NotImplementedError

    @classmethod
    def from_code(cls, arch: str, base_width: int, match: re.Match) -> "Variant":
        raise NotImplementedError

    @classmethod
    def parse(cls, name: str) -> "Variant | None":
        """The variant a well-formed name describes (smp or timm form, ``_b<base>``, ``[options]``)."""
        match = _NAME.match(name)
        if not match or match["family"] not in cls.prefixes or f"resnet{match['depth']}" not in cls.ARCH_LAYERS:
            return None
        code = re.fullmatch(cls.CODE, match["code"])
        if code is None:
            return None
        if match["base"] is not None and int(match["base"]) < 1:
            raise ConfigError(f"{name}: the base width (_b{match['base']}) must be at least 1")
        try:
            variant = cls.from_code(f"resnet{match['depth']}", int(match["base"] or 64), code)
        except ValueError:  # fields out of range: not a name of this family
            return None
        if variant.family != match["family"]:
            return None
        return variant.with_options(**parse_options(match["options"] or ""))  # a bad option says so

    @property
    def depth(self) -> int:
        return int(self.arch.removeprefix("resnet"))

    @property
    def _suffix(self) -> str:
        return "" if self.base_width == 64 else f"_b{self.base_width}"

    @property
    def name(self) -> str:
        """The smp encoder name (options not included)."""
        return f"{self.family}_r{self.depth}_{self.code}{self._suffix}"

    @property
    def timm_name(self) -> str:
        return f"{self.family}_{self.arch}_{self.code}{self._suffix}"

    @property
    def smp_key(self) -> str:
        """The smp registry key: the name, plus ``[key=value,...]`` when options are set."""
        return f"{self.name}[{format_options(self.options)}]" if self.options else self.name

    # ------------------------------------------------------------------ model
    @property
    def option_dict(self) -> dict[str, Any]:
        return dict(self.options)

    @property
    def options_read(self) -> dict[str, Any]:
        """The model options this variant's layers read, with their defaults."""
        return self.model_cls.option_defaults()

    def with_options(self, **options) -> "Variant":
        """This variant with ``options`` added (one it does not read is refused: ``check_options``)."""
        if not options:
            return self
        check_options(options, self.options_read, self.name)
        merged = dict(self.options, **{k: _hashable(v) for k, v in options.items()})
        return replace(self, options=tuple(sorted(merged.items())))

    def recipe_options(self, options: dict | None) -> dict[str, Any]:
        """The options of a recipe (a config's ``model.options``) that this variant reads. A
        recipe is shared by every encoder of a study (``configs/cls/imagenet_r18_authors.yaml`` sets
        the flip and swish layers' options for dense encoders too), so options for layers this
        model lacks are left out; a name that no family of the table reads is refused."""
        from ..variants import known_options  # the family table is above this module

        check_options(options, known_options(), "repeatseg (any encoder)")
        return {k: v for k, v in (options or {}).items() if k in self.options_read}

    @property
    def base_channels(self) -> tuple[int, ...]:
        """Channels of the base (1x) ResNet at strides 2, 4, 8, 16, 32: what the skip adapters map to."""
        b = self.base_width
        return (b, b, 2 * b, 4 * b, 8 * b)

    @property
    def width(self) -> int:
        """Width factor against the base ResNet (1 for the compression families)."""
        return 1

    def model_args(self) -> dict:
        """Constructor arguments of ``model_cls`` (the options included)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ comparison
    @property
    def is_dense(self) -> bool:
        return self.kind == "dense"

    @property
    def reference(self) -> "Variant":
        """The dense model this one is compared with (ratios in accounting and bench); itself if dense."""
        raise NotImplementedError

    @property
    def contrast(self) -> "tuple[Variant, Variant] | None":
        """(upper, lower) dense models of the relative contribution (M - lower) / (upper - lower):
        for a width family (dense same width, dense 1x), the paper's definition; for a compression
        family (dense 1x, dense 1x at half the base width), how much of what the full-size dense
        model gains over the half-width one the compressed model keeps. None for dense models."""
        return None

    @property
    def folds_into(self) -> "Variant | None":
        """The variant whose model loads ``fold(model)``'s state_dict as it is (a RepeatNet model
        folds into its dense twin), or None if the folded model has a layout of its own."""
        return None

    @property
    def widened_from(self) -> "Variant | None":
        """The 1x model this one widens with plain convs (dense w4 -> dense w1): the report's width
        effect compares them. None for every other model."""
        return None

    @property
    def bits_figure(self) -> bool:
        """Whether the report's "what the stored bits buy" figure places it (by the mask bits it
        stores per generated weight, among the models compared at their own width)."""
        return False

    @classmethod
    def bench_sweep(cls, width: int, base: int) -> list["Variant"]:
        """The models of this family that ``tools/bench.py --sweep`` measures at a sweep point: width
        factor ``width`` on base width ``base``, i.e. layer1 with ``width * base`` channels."""
        return []

    @property
    def label(self) -> str:
        """How figures and the bench group encoders (``dense``, ``RepeatNet (flip)``, ``basis``, ...)."""
        return self.family

    @property
    def style(self) -> dict[str, str]:
        """Matplotlib keywords (``color``, ``marker``) of its group in every figure."""
        return {"color": "tab:olive", "marker": "o"}

    def metadata(self) -> dict[str, str]:
        """What export metadata records about the architecture (strings)."""
        return {"encoder": self.name, "model": self.timm_name, "family": self.family, "arch": self.arch,
                "width": str(self.width), "base_width": str(self.base_width),
                "options": json.dumps(self.option_dict, sort_keys=True)}


class CompressionContrast:
    """Mixin for the variants of a compression family (smaller than dense 1x): compared with dense 1x,
    and placed between dense 1x at half and at full base width (``compression_contrast``)."""

    @property
    def reference(self):
        return self.contrast[0]

    @property
    def contrast(self):
        return compression_contrast(self.arch, self.base_width)


def dense_at(arch: str, base_width: int, width: int = 1) -> Variant:
    """The dense ResNet at ``width`` that other families compare with."""
    from .resnet import EncoderVariant  # the dense family (it imports this module)

    return EncoderVariant(arch, width, None, base_width)


def compression_contrast(arch: str, base_width: int) -> tuple[Variant, Variant]:
    """(dense 1x, dense 1x at half the base width): a smaller-than-1x model's relative contribution."""
    return dense_at(arch, base_width), dense_at(arch, base_width // 2)


# ---------------------------------------------------------------------------------- skeleton

def dilate_(module: nn.Module, rate: int) -> None:
    """Trade every conv's stride for dilation ``rate`` (output strides 16 and 8)."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            layer.stride = (1, 1)
            layer.dilation = (rate, rate)
            layer.padding = tuple((k // 2) * rate for k in layer.kernel_size)


class ResNetBackbone(nn.Module):
    """Stem (7x7/2 conv, BN, ReLU, 3x3/2 max pool), four stages ``layer1..layer4``, average pool,
    classifier: the skeleton every family shares. Subclasses build the stages and pass them in.

    Features (``feature_info``) are read after ``act1`` (stride 2) and after each stage (4..32),
    so timm's ``features_only`` and the smp encoder work for every family. ``OPTIONS`` names the
    model options a family reads (with defaults); ``regularization_loss()`` is its layers' term.

    Args:
        stages: four (module, out_channels) pairs.
        stem_width: channels of the stem conv.
        num_classes, in_chans, drop_rate, global_pool: as timm; ``num_classes=0`` gives pooled features.
        output_stride: 32, 16 or 8 (later stages dilated instead of strided).
    """

    OPTIONS: ClassVar[dict[str, Any]] = {}

    @classmethod
    def option_defaults(cls) -> dict[str, Any]:
        """Every model option some model of this family reads, with its default (what ``create``
        takes from timm's keyword arguments; ``Variant.options_read`` is one model's)."""
        return dict(cls.OPTIONS)

    def __init__(self, stages: list[tuple[nn.Module, int]], stem_width: int, num_classes: int = 1000,
                 in_chans: int = 3, drop_rate: float = 0.0, output_stride: int = 32, global_pool: str = "avg"):
        super().__init__()
        if global_pool != "avg":
            raise ValueError(f"only global_pool='avg' is supported, got {global_pool!r}")
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        self.conv1 = nn.Conv2d(in_chans, stem_width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.act1 = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.feature_info = [dict(num_chs=stem_width, reduction=2, module="act1")]
        for index, (stage, channels) in enumerate(stages):
            self.add_module(f"layer{index + 1}", stage)
            self.feature_info.append(dict(num_chs=channels, reduction=4 * 2**index, module=f"layer{index + 1}"))
        self.num_features = self.head_hidden_size = stages[-1][1]
        self.global_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()
        self._init_weights()
        self.set_output_stride(output_stride)

    def _init_weights(self) -> None:
        # torchvision's ResNet init for plain convs; generated and basis convs initialise themselves.
        for module in self.modules():
            if type(module) is nn.Conv2d:
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def set_output_stride(self, output_stride: int) -> None:
        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
        if output_stride <= 16:
            self.dilate_stage(self.layer4, 32 // output_stride)
        if output_stride == 8:
            self.dilate_stage(self.layer3, 2)
        for info in self.feature_info:
            info["reduction"] = min(info["reduction"], output_stride)

    def dilate_stage(self, stage: nn.Module, rate: int) -> None:
        """Make ``stage`` keep its input's resolution, dilating by ``rate`` instead of striding (a
        family whose stages downsample otherwise, e.g. with a pool, extends this)."""
        dilate_(stage, rate)

    def regularization_loss(self) -> torch.Tensor | None:
        """The family's regularisation term (the trainer adds ``weight * term``), or None."""
        return regularization_loss(self)

    # timm's classifier API
    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str = "avg") -> None:
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.act1(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x)
        if self.drop_rate:
            x = nn.functional.dropout(x, p=self.drop_rate, training=self.training)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# ---------------------------------------------------------------------------------- timm

def default_cfg(**kwargs) -> dict:
    """The pretrained cfg of every repeatseg model: no URL (weights are local files: docs/getting-started.md)."""
    return dict(
        url="", num_classes=1000, input_size=(3, 224, 224), pool_size=(7, 7), crop_pct=0.875,
        interpolation="bilinear", mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD,
        first_conv="conv1", classifier="fc", license="apache-2.0", **kwargs,
    )


ENTRYPOINTS: dict[str, Callable] = {}  # timm name -> constructor, for the registered default variants


def register_variant(fn: Callable) -> Callable:
    """timm's ``@register_model`` for a family constructor named after its variant, with its
    pretrained cfg added to the defining module's ``default_cfgs`` first (timm reads it there)."""
    module = sys.modules[fn.__module__]
    cfgs = module.__dict__.setdefault("default_cfgs", {})
    cfgs.update(generate_default_cfgs({fn.__name__: default_cfg()}))
    ENTRYPOINTS[fn.__name__] = fn
    return register_model(fn)


def create(variant: Variant, pretrained: bool = False, **kwargs) -> nn.Module:
    """Build a variant's timm model. Options come as ``options={...}`` or as keyword arguments
    named like them (``gradient="bireal"``); local weights through timm's own
    ``pretrained_cfg_overlay=dict(file=PATH)``."""
    from ..variants import known_options  # the family table is above this module

    options = dict(kwargs.pop("options", None) or {})
    options.update({k: kwargs.pop(k) for k in list(kwargs) if k in known_options()})  # with_options checks them
    variant = variant.with_options(**options)
    return build_model_with_cfg(variant.model_cls, variant.timm_name, pretrained, **dict(variant.model_args(), **kwargs))


def register_on_demand(variant: Variant) -> None:
    """A timm constructor for a variant outside the default table (another base width)."""
    def entrypoint(pretrained: bool = False, **kwargs) -> nn.Module:
        return create(variant, pretrained, **kwargs)

    entrypoint.__name__ = entrypoint.__qualname__ = variant.timm_name
    entrypoint.__module__ = variant.model_cls.__module__
    entrypoint.__doc__ = f"{variant.timm_name} (registered on demand)."
    cfgs = sys.modules[entrypoint.__module__].__dict__.setdefault("default_cfgs", {})
    cfgs.update(generate_default_cfgs({variant.timm_name: default_cfg()}))
    register_model(entrypoint)
