"""Deployment: fold shared and generated weights into plain convs, store bit parameters packed, ONNX.

- ``fold(model)``: every layer that folds (``SharingLayer.folded``) is replaced by the plain
  module it computes: a RepeatConv2d by an ``nn.Conv2d`` holding its generated weight (names
  become the dense twin's, ``layer1.0.conv1.weight``, so a folded RepeatNet loads into the dense
  registered model of the same width), a shared-basis conv by one 3x3 conv with bias (inference).
- ``pack(model, path)`` / ``load_packed(path)``: a safetensors file holding every float tensor
  once (a tensor shared by several layers is stored under its first name; the others are listed
  in the metadata as aliases) and, for the parameters layers store as bits (f-scores), one bit per
  element (8 per byte, ``np.packbits`` order over the flattened tensor) under
  ``<name without .scores>.signbits``. Its size is the closed-form ``packed_bytes`` of
  ``repeatseg.describe`` plus the safetensors header. A sha256 over everything that decides the
  loaded values (every tensor's name, dtype, shape and bytes, and the metadata) is stored and
  checked: a truncated or altered file, header included, is refused.

Bit convention (``SIGNBITS_MEANING``, also in every file's metadata under ``signbits``): bit 1 =
score >= 0 = sign +1, i.e. the tile keeps the parent's sign. The paper's flip mask M (1 = flip) is
the complement. Files keep this convention so that every packed file written so far still loads.
Loading asks each layer for values with the stored signs (``SharingLayer.from_bits``): f-scores
come back as +-1e-3, which reproduces the outputs exactly and leaves the scores inside the
straight-through gradient window of both rules, so a loaded model can be fine-tuned.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load, save
from torch import nn

from .errors import CheckpointError
from .files import atomic_write_bytes
from .layers import bit_parameter_names, fold_layers

PACK_FORMAT = "repeatseg-packed-v2"  # v1's checksum covered tensor bytes only
SIGNBITS = ".signbits"
SIGNBITS_MEANING = "1 = +1 (keep the parent's sign); the paper's flip mask M is the complement"


# ----------------------------------------------------------------------------------------- fold

def fold(model: nn.Module, fuse_bn: bool = False) -> nn.Module:
    """A copy of ``model`` in eval mode with every folding layer replaced by its plain module;
    with ``fuse_bn``, each conv directly followed by a BatchNorm in the same parent module also
    absorbs it (inference only; the BN becomes Identity)."""
    folded = fold_layers(copy.deepcopy(model).eval()).eval()  # eval twice: folded modules start in train mode
    if fuse_bn:
        _fuse_conv_bn(folded)
    return folded


def _fuse_conv_bn(model: nn.Module) -> None:
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for parent in list(model.modules()):
        children = list(parent.named_children())
        for (conv_name, conv), (bn_name, bn) in zip(children, children[1:]):
            if type(conv) is nn.Conv2d and isinstance(bn, nn.BatchNorm2d) and conv.out_channels == bn.num_features:
                setattr(parent, conv_name, fuse_conv_bn_eval(conv, bn))
                setattr(parent, bn_name, nn.Identity())


# ----------------------------------------------------------------------------------------- pack

def _checksum(tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> str:
    """sha256 over the metadata (but this checksum) and each tensor's name, dtype, shape and bytes:
    a header edit (F32 read as I32, a shape, the encoder name) changes it as surely as a flipped bit."""
    digest = hashlib.sha256()
    digest.update(json.dumps({k: v for k, v in meta.items() if k != "sha256"}, sort_keys=True).encode())
    for key in sorted(tensors):
        value = tensors[key].contiguous()
        digest.update(json.dumps([key, str(value.dtype), list(value.shape)]).encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())  # 0-d tensors too
    return digest.hexdigest()


def packed_tensors(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, list[int]], dict[str, str]]:
    """(tensors to store, {signbits key: shape of the bit-stored tensor}, {alias key: stored key})."""
    bit_keys = bit_parameter_names(model)
    tensors, shapes, aliases, first_key = {}, {}, {}, {}
    for key, value in model.state_dict(keep_vars=True).items():
        if key.endswith("num_batches_tracked"):
            continue  # a training counter, not needed to run the model
        if id(value) in first_key:  # shared by several layers: stored once
            aliases[key] = first_key[id(value)]
            continue
        first_key[id(value)] = key
        value = value.detach().cpu()
        if key in bit_keys:
            stem = key.rsplit(".", 1)[0]
            tensors[stem + SIGNBITS] = torch.from_numpy(np.packbits((value >= 0).numpy().reshape(-1)))
            shapes[stem + SIGNBITS] = list(value.shape)
        else:
            tensors[key] = value.contiguous().clone()
    return tensors, shapes, aliases


def pack(model: nn.Module, path: str | Path, metadata: dict | None = None) -> dict:
    """Write ``model`` in packed form; ``metadata`` must let ``load_packed`` rebuild it (the
    segmenter's ``encoder``, ``classes``, ``in_channels``, model ``options``; values that are not
    strings are stored as JSON). Returns the stored metadata."""
    tensors, shapes, aliases = packed_tensors(model)
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
    meta.update(format=PACK_FORMAT, signbit_shapes=json.dumps(shapes), aliases=json.dumps(aliases),
                signbits=SIGNBITS_MEANING)
    meta["sha256"] = _checksum(tensors, meta)
    atomic_write_bytes(path, save(tensors, metadata=meta))
    return meta


def read_packed(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a packed file, checked: format, size and checksum."""
    path = Path(path)
    data = path.read_bytes()
    try:
        tensors = load(data)
        header_size = int.from_bytes(data[:8], "little")
        meta = json.loads(data[8:8 + header_size]).get("__metadata__", {})
    except (SafetensorError, ValueError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path} is truncated or not a safetensors file ({error})") from error
    if meta.get("format") == "repeatseg-packed-v1":
        raise CheckpointError(f"{path} is a packed file of the older format v1, whose checksum does not cover dtypes, "
                              "shapes or metadata: export it again with tools/export.py --pack")
    if meta.get("format") != PACK_FORMAT:
        raise CheckpointError(f"{path} is not a repeatseg packed file (format {meta.get('format')!r})")
    if _checksum(tensors, meta) != meta.get("sha256"):
        raise CheckpointError(f"{path} failed its checksum: the file was altered or damaged")
    return tensors, meta


def unpack_state(model: nn.Module, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> dict[str, torch.Tensor]:
    """``model``'s state_dict from a packed file: the float tensors as stored, and each bit
    parameter as its layer restores it from the bits (``SharingLayer.from_bits``). Bits the model
    has no parameter for stay under their stored key (``load_state_dict`` reports them)."""
    shapes, state = json.loads(meta["signbit_shapes"]), dict(tensors)
    layers = dict(model.named_modules())
    for key in bit_parameter_names(model):
        prefix, _, name = key.rpartition(".")
        stored = prefix + SIGNBITS
        if stored in shapes and stored in state:
            state[key] = layers[prefix].from_bits(name, _unpack_bits(state.pop(stored), shapes[stored], stored))
    for alias, stored in json.loads(meta.get("aliases") or "{}").items():
        state[alias] = state[stored]
    return state


def _unpack_bits(packed: torch.Tensor, shape: list[int], key: str) -> torch.Tensor:
    """The bool tensor of ``shape`` stored in ``packed`` (True = bit 1 = sign +1)."""
    count = int(np.prod(shape))
    if packed.numel() != (count + 7) // 8:
        raise CheckpointError(f"{key}: {packed.numel()} bytes of signs for {count} weights")
    return torch.from_numpy(np.unpackbits(packed.numpy(), count=count).reshape(shape).astype(bool))


def load_packed(path: str | Path) -> nn.Module:
    """Rebuild the segmenter stored by ``pack`` (eval mode), outputs identical to the packed model."""
    from .segmenter import build_segmenter

    tensors, meta = read_packed(path)
    if "encoder" not in meta:
        raise CheckpointError(f"{path} does not name its encoder")
    from .segmenter import segmenter_arguments

    model = build_segmenter(meta["encoder"], **segmenter_arguments(meta))
    missing, unexpected = model.load_state_dict(unpack_state(model, tensors, meta), strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise CheckpointError(f"{path} does not match {meta['encoder']}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model.eval()


# ----------------------------------------------------------------------------------------- onnx

def export_onnx(model: nn.Module, path: str | Path, input_size: int = 512, in_channels: int = 3) -> Path:
    """Export the folded model to ONNX with the installed exporter's default opset."""
    folded = fold(model)
    example = torch.randn(1, in_channels, input_size, input_size)
    torch.onnx.export(folded, (example,), str(path), input_names=["image"], output_names=["logits"], dynamo=True)
    return Path(path)
