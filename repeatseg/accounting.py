"""Honest accounting of a model: what it trains, what it must store, what it computes.

Definitions (all counts are elements, all bytes are exact):

- ``trainable_params``: elements of trainable parameters, as the optimiser sees them. An
  f-RepeatNet layer trains a float score per child weight, so this is as large as the dense twin.
- ``stored_floats``: floats a deployed model keeps: every parameter except those its layers store
  as bits (f-scores), plus the BN running statistics (parents, BN, adapters, swish scalars, bases,
  decoder). A shared tensor (a shared parent, a filter basis) counts once. Non-persistent buffers
  (what a layer regenerates, e.g. seeded signs) are not stored and not counted.
- ``mask_bits``: bits a deployed model keeps (one per f-RepeatNet child weight, the sign of its
  score), as the layers declare them (``SharingLayer.bit_parameters``).
- ``fp32_bytes``: a plain fp32 checkpoint of the training-time model: 4 x (trainable + BN statistics).
- ``packed_bytes``: 4 x ``stored_floats`` + ``ceil(bits / 8)`` per bit-stored tensor + the bytes
  of integer buffers a layer keeps (a seeded transform's int64 seed, 8 bytes per layer).
- ``macs``: multiply-accumulates of the convolutions and linear layers for one image of
  ``input_size`` x ``input_size``; BN, activations, pooling and interpolation are not counted.

Ratios compare with the variant's ``reference``: the dense model of the same width for a width
family (RepeatNet), dense 1x for a compression family (shared bases, DACNN).

Models are built on the meta device, so describing an 8x ResNet-34 allocates nothing.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from .layers import bit_parameters
from .registry import register
from .variants import get_variant

STAT_KEYS = ("trainable_params", "stored_floats", "mask_bits", "fp32_bytes", "packed_bytes", "macs")


@dataclass
class ModelStats:
    """What one model trains, stores and computes (definitions: this module's docstring), and its ratios
    to the model it is compared with (``dense_twin``). Counts are elements, bytes exact."""

    name: str
    scope: str  # "encoder" or "segmenter"
    input_size: int
    trainable_params: int
    stored_floats: int
    mask_bits: int
    fp32_bytes: int
    packed_bytes: int
    macs: int
    dense_twin: str = ""  # the dense model the ratios compare with (variant.reference)
    ratio_to_dense: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        lines = [f"{self.name} ({self.scope}, MACs at {self.input_size}x{self.input_size}), vs {self.dense_twin}:"]
        for key in STAT_KEYS:
            ratio = self.ratio_to_dense.get(key)
            ratio_text = f"{ratio:8.3f}x" if ratio is not None else "        -"
            lines.append(f"  {key:<17} {format_count(getattr(self, key), key):>12}   {ratio_text}")
        return "\n".join(lines)


def format_count(value: int, key: str) -> str:
    """1234567 -> '1.23M'; bytes in MiB/GiB."""
    if key.endswith("bytes"):
        return f"{value / 2**30:.2f} GiB" if value >= 2**30 else f"{value / 2**20:.1f} MiB"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:.2f}{unit}"
    return str(value)


def count_macs(model: nn.Module, input_size: int, in_channels: int = 3) -> int:
    """Conv and linear multiply-accumulates for one image (forward on the model's device)."""
    total = 0

    def conv_hook(module: nn.Conv2d, _inputs, output: torch.Tensor) -> None:
        nonlocal total
        per_output = module.in_channels // module.groups * math.prod(module.kernel_size)
        total += output[0].numel() * per_output

    def linear_hook(module: nn.Linear, _inputs, output: torch.Tensor) -> None:
        nonlocal total
        total += output[0].numel() * module.in_features

    handles = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(linear_hook))
    device = next(model.parameters()).device
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, in_channels, input_size, input_size, device=device))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return total


def count_storage(model: nn.Module) -> dict[str, int]:
    """Parameter and storage counts (see the module docstring for definitions)."""
    bits = bit_parameters(model)  # id(parameter) -> bits per element
    params = list(model.parameters())  # unique: a shared tensor counts once
    trainable = sum(p.numel() for p in params if p.requires_grad)
    buffers = persistent_buffers(model)
    statistics = sum(b.numel() for b in buffers if b.is_floating_point())
    integers = sum(b.numel() * b.element_size() for b in buffers if not b.is_floating_point())
    mask_layers = [p.numel() * bits[id(p)] for p in params if id(p) in bits]
    stored = sum(p.numel() for p in params if id(p) not in bits) + statistics
    return dict(
        trainable_params=trainable,
        stored_floats=stored,
        mask_bits=sum(mask_layers),
        fp32_bytes=4 * (trainable + statistics) + integers,
        packed_bytes=4 * stored + sum(math.ceil(count / 8) for count in mask_layers) + integers,
    )


def persistent_buffers(model: nn.Module) -> list[torch.Tensor]:
    """The buffers a checkpoint stores: not the non-persistent ones (a seeded transform's signs,
    regenerated from its seed) and not BN's ``num_batches_tracked`` (a training counter that
    packed files drop). Each shared buffer once."""
    seen, kept = set(), []
    for module in model.modules():
        for name, buffer in module._buffers.items():
            if buffer is None or name in module._non_persistent_buffers_set or name == "num_batches_tracked":
                continue
            if id(buffer) not in seen:
                seen.add(id(buffer))
                kept.append(buffer)
    return kept


def _build(name: str, segmenter: bool, classes: int, decoder: tuple[int, ...] | None = None) -> nn.Module:
    from segmentation_models_pytorch.encoders import get_encoder

    from .segmenter import build_segmenter

    with torch.device("meta"):
        if segmenter:
            return build_segmenter(name, classes=classes, decoder_channels=decoder)
        return get_encoder(register(name).smp_key)


@functools.lru_cache(maxsize=None)
def _measure(name: str, input_size: int, segmenter: bool, classes: int,
             decoder: tuple[int, ...] | None = None) -> dict[str, int]:
    model = _build(name, segmenter, classes, decoder)
    return dict(count_storage(model), macs=count_macs(model, input_size))


@functools.lru_cache(maxsize=None)
def bits_per_generated_weight(name: str) -> float:
    """Mask bits a deployed encoder stores per conv weight it computes with (generated or plain):
    1 for f-RepeatNet (one bit per generated weight, ~1 over the whole encoder), 0 for encoders
    that store floats only. The x axis of "what do the bits buy"."""
    variant = get_variant(name)
    model = _build(variant.smp_key, False, 21)
    conv_weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Conv2d))
    return count_storage(model)["mask_bits"] / conv_weights


def describe(name: str, input_size: int = 512, segmenter: bool = False, classes: int = 21,
             decoder_channels: tuple[int, ...] | list[int] | None = None) -> ModelStats:
    """Accounting of a registered encoder (or, with ``segmenter=True``, of its U-Net with
    ``decoder_channels``, default smp's) and its
    ratio to the dense model it is compared with (``variant.reference``). The encoder is the smp
    encoder: backbone without classifier, plus skip adapters; the segmenter adds decoder and head.
    """
    from .classifiers import describe_classifier, is_classifier

    if is_classifier(name) and not segmenter:  # classification-only models (rotcnn_*): repeatseg.classifiers
        return describe_classifier(name, input_size)
    variant = get_variant(name)
    decoder = tuple(decoder_channels) if segmenter and decoder_channels else None
    numbers = _measure(variant.smp_key, input_size, segmenter, classes, decoder)
    twin = variant.reference
    dense = numbers if twin == variant else _measure(twin.smp_key, input_size, segmenter, classes, decoder)
    ratios = {key: numbers[key] / dense[key] for key in STAT_KEYS if dense[key]}
    return ModelStats(
        name=variant.name, scope="segmenter" if segmenter else "encoder", input_size=input_size,
        dense_twin=twin.name, ratio_to_dense=ratios, **numbers,
    )


TABLE_SCOPES = {
    "encoder": "encoder (backbone + skip adapters)",
    "segmenter": "U-Net segmenter",
    "classifier": "classifier (head included; MACs on the folded model)",
}


def accounting_table(stats: Sequence[ModelStats] | None = None) -> str:
    """The accounting of several models as one text table, with a title line saying what is counted
    (``tools/model_info.py --all`` prints it; the docs' encoder table is it). ``stats`` defaults to
    the family table's registered grid (``default_variants()``: names ``register`` added at run time
    are not in it) at 512x512, built on the meta device.
    """
    from .variants import default_variants

    stats = list(stats) if stats is not None else [describe(v.name) for v in default_variants()]
    if not stats:
        raise ValueError("accounting_table: no models to tabulate")
    header = ["name", *STAT_KEYS, "vs", "packed vs dense", "trainable vs dense"]
    rows = [
        [s.name, *(format_count(getattr(s, key), key) for key in STAT_KEYS), s.dense_twin,
         f"{s.ratio_to_dense['packed_bytes']:.3f}x", f"{s.ratio_to_dense['trainable_params']:.3f}x"]
        for s in stats
    ]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    size = stats[0].input_size
    lines = [f"{TABLE_SCOPES.get(stats[0].scope, stats[0].scope)}; MACs at {size}x{size}; ratios against the model "
             "in 'vs' (same width; dense 1x for compression families; the vanilla CNN for rotcnn_*)",
             "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(row, widths)))
              + " |" for row in rows]
    return "\n".join(lines)
