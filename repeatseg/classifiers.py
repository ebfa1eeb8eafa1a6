"""Classification-only model families (not smp encoders): the rotated-digits CNNs of Table 4
(``rotcnn_*``, ``repeatseg/backbones/rotcnn.py`` and ``steerable.py``).

They are timm models under their own names; this module looks them up and accounts for them.
Accounting follows ``repeatseg.accounting`` with two differences: the model is built for real
(e2cnn samples its bases on the CPU; nothing is built on the meta device), and MACs are measured
on the folded model (``repeatseg.fold``: the RE-CNN exported to plain convs, the s-RepeatNet's
generated weights in plain convs) at the family's input size (29x29, one channel). Parameters and
stored bytes are the trained model's (basis coefficients for the RE-CNN, parents and s scalars for
the s-RepeatNet), as its checkpoint stores them.
"""

from __future__ import annotations

import functools

import timm
import torch
from torch import nn

from .accounting import STAT_KEYS, ModelStats, count_macs, count_storage
from .backbones.rotcnn import ROT_VARIANTS, RotVariant
from .errors import ConfigError

CLASSIFIERS: dict[str, RotVariant] = dict(ROT_VARIANTS)


def get_classifier(name: str) -> RotVariant | None:
    """The classification-only model called ``name``, or None (then it may be an encoder variant)."""
    return CLASSIFIERS.get(name)


def is_classifier(name: str) -> bool:
    return name in CLASSIFIERS


def timm_name_of(name: str) -> str:
    """The timm model a study trains for ``name``: a classifier's own name, an encoder's timm name."""
    if is_classifier(name):
        return name
    from .variants import get_variant

    return get_variant(name).timm_name


def build_classifier_model(name: str, **kwargs) -> nn.Module:
    """The timm model of a classification-only family (``kwargs`` as ``timm.create_model``'s)."""
    if not is_classifier(name):
        raise ConfigError(f"{name!r} is not a classification-only model; expected one of {', '.join(CLASSIFIERS)}")
    return timm.create_model(name, **kwargs)


def folded_conv_weights(model: nn.Module) -> int:
    """Weights of the plain convs the model folds into (what the exported model computes with)."""
    from .export import fold

    return sum(m.weight.numel() for m in fold(model).modules() if isinstance(m, nn.Conv2d))


@functools.lru_cache(maxsize=None)
def _measure(name: str, input_size: int, options: tuple = ()) -> dict[str, int]:
    from .export import fold

    variant = CLASSIFIERS[name]
    with torch.random.fork_rng():  # the counts do not depend on the init; the caller's RNG is left alone
        model = build_classifier_model(name, options=dict(options))
    return dict(count_storage(model), macs=count_macs(fold(model), input_size, variant.in_chans))


def describe_classifier(name: str, input_size: int | None = None, options: dict | None = None) -> ModelStats:
    """Accounting of a classification-only model (its classifier head included) at ``input_size``
    (default: the family's, 29), with ratios to the model it is compared with (``reference``)."""
    variant = CLASSIFIERS[name]
    size = input_size or variant.input_size
    key = tuple(sorted((options or {}).items()))
    numbers = _measure(name, size, key)
    reference = variant.reference
    dense = numbers if reference == variant else _measure(reference.name, size)
    return ModelStats(name=name, scope="classifier", input_size=size, dense_twin=reference.name,
                      ratio_to_dense={k: numbers[k] / dense[k] for k in STAT_KEYS if dense[k]}, **numbers)
