"""Rotation-equivariant steerable CNNs (RE-CNN) of the paper's Table 4, built with ``e2cnn``
(the library the paper used; ``pip install 'repeatseg[equivariant]'``).

The authors' ``SteerableCNN(N, k)`` (transmuteAI/RepeatNet ``models/group_equivariant.py``; Weiler
& Cesa's ``exp_e2sfcnn`` with half the channels) in the ``RotCNN`` skeleton of ``rotcnn.py``:

- group ``Rot2dOnR2(N)`` (rotations C_N, no reflections); the input is one trivial field;
- six blocks R2Conv (no bias) -> InnerBatchNorm -> ELU on regular fields (N channels each).
  Block 1: kernel 7, padding 1, rings [0, 1, 2, 3], sigma [0.6, 0.6, 0.6, 0.4], frequency cut-off
  0 on ring 0, 3 on ring 2, else 2. Blocks 2-6: kernel 5, padding 2 (block 6: 0), rings
  [0, 1, 2], sigma [0.6, 0.6, 0.4], cut-off 0 on ring 0, else 2. Max pools as the skeleton's
  (e2cnn's PointwiseMaxPool is a plain max pool);
- global average pool, group pooling (max over each field's N channels), the skeleton's head.

Fields per block (hard-coded, ``round(k * c)`` for c in 16-24-32-32-48-64): C4 (k = 1)
16-24-32-32-48-64, 304,154 parameters; C8 (k = sqrt(2) / 2) 11-17-23-23-34-45, 305,098;
C16 (k = 1/2) 8-12-16-16-24-32, 301,746. Names ``rotcnn_c4``, ``rotcnn_c8``, ``rotcnn_c16``.

Each block takes and returns plain tensors (B, N * fields, H, W), so the model is an ordinary
timm model (``features_only`` too), and folds (``repeatseg.fold``) through e2cnn's export into
Conv2d (no bias) + BatchNorm2d + ELU with outputs equal to the e2cnn model's: MACs are measured
on that folded model. Building a model samples its steerable bases (seconds per model on a core).

State: a checkpoint holds the basis coefficients (``conv.weights``), the batch norms' parameters
and running statistics. e2cnn's derived buffers (sampled bases, index tables, the filter it caches
in eval mode) are rebuilt from the architecture and left out of ``state_dict``, so a checkpoint
saved in either mode loads into a freshly built model.
"""

from __future__ import annotations

import functools
import warnings

import torch
from torch import nn

from ..layers import SharingLayer
from ..layers.protocol import NORMS
from .rotcnn import RotCNN, create_rotcnn, register_rotcnn

EXTRA_HINT = "pip install 'repeatseg[equivariant]'"

#: Regular fields per block of the RE-CNN of group C_N.
FIELDS = {4: (16, 24, 32, 32, 48, 64), 8: (11, 17, 23, 23, 34, 45), 16: (8, 12, 16, 16, 24, 32)}


def _first_cutoff(ring: float) -> int:
    return 0 if ring == 0 else (3 if ring == 2 else 2)


def _cutoff(ring: float) -> int:
    return 0 if ring == 0 else 2


FIRST_BASIS = dict(rings=[0, 1, 2, 3], sigma=[0.6, 0.6, 0.6, 0.4], frequencies_cutoff=_first_cutoff)
BASIS = dict(rings=[0, 1, 2], sigma=[0.6, 0.6, 0.4], frequencies_cutoff=_cutoff)


def e2cnn_modules():
    """(e2cnn.gspaces, e2cnn.nn), or an ImportError that names the extra to install."""
    try:
        from e2cnn import gspaces
        from e2cnn import nn as enn
    except ImportError as error:
        raise ImportError(f"the rotation-equivariant models (rotcnn_c4, rotcnn_c8, rotcnn_c16) need e2cnn: "
                          f"{EXTRA_HINT}") from error
    return gspaces, enn


class SteerableBlock(SharingLayer, nn.Module):
    """R2Conv -> InnerBatchNorm -> ELU from ``in_type`` to ``out_fields`` regular fields, on plain
    tensors: (B, in_type.size, H, W) -> (B, N * out_fields, H', W')."""

    def __init__(self, in_type, out_fields: int, kernel: int, padding: int, basis: dict):
        super().__init__()
        _, enn = e2cnn_modules()
        gspace = in_type.gspace
        out_type = enn.FieldType(gspace, out_fields * [gspace.regular_repr])
        with warnings.catch_warnings():  # e2cnn 0.2.3 indexes with uint8 masks while sampling bases
            warnings.filterwarnings("ignore", message=".*dtype torch.uint8.*", category=UserWarning)
            self.conv = enn.R2Conv(in_type, out_type, kernel, padding=padding, bias=False, padding_mode="zeros",
                                   **basis)
        self.bn = enn.InnerBatchNorm(out_type)
        self.act = enn.ELU(out_type, inplace=True)
        self.in_type, self.out_type = in_type, out_type
        self.train()  # drops the zero filter R2Conv registers before its first eval()

    def train(self, mode: bool = True) -> "SteerableBlock":
        super().train(mode)  # R2Conv caches its filter as a buffer in eval mode and drops it in training
        for module in self.modules():  # only BN statistics are state; the rest is rebuilt from the architecture
            if not isinstance(module, NORMS):
                module._non_persistent_buffers_set.update(module._buffers)
                for name, buffer in module._buffers.items():  # e2cnn expands the eval filter with its graph
                    if buffer is not None and buffer.grad_fn is not None:
                        module._buffers[name] = buffer.detach()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from e2cnn.nn import GeometricTensor

        return self.act(self.bn(self.conv(GeometricTensor(x, self.in_type)))).tensor

    def generate(self) -> torch.Tensor:
        """The conv filter expanded from its basis coefficients (what a training forward does)."""
        return self.conv.expand_parameters()[0]

    def folded(self) -> nn.Module:
        """Conv2d + BatchNorm2d + ELU (e2cnn's export; the block is left in eval mode)."""
        return nn.Sequential(self.conv.export(), self.bn.export(), self.act.export())


def steerable_block(index: int, in_channels: int, out_channels: int, kernel: int, padding: int, *,
                    gspace) -> SteerableBlock:
    """Block ``index`` of the RE-CNN; its input is trivial fields for block 0, else regular ones."""
    _, enn = e2cnn_modules()
    group_size = gspace.regular_repr.size
    in_type = enn.FieldType(gspace, [gspace.trivial_repr] * in_channels if index == 0 else
                            [gspace.regular_repr] * (in_channels // group_size))
    return SteerableBlock(in_type, out_channels // group_size, kernel, padding, FIRST_BASIS if index == 0 else BASIS)


class SteerableRotCNN(RotCNN):
    """The RE-CNN of rotation group C_``group`` with ``fields`` regular fields per block."""

    def __init__(self, group: int, fields: tuple[int, ...], **kwargs):
        gspaces, _ = e2cnn_modules()
        block = functools.partial(steerable_block, gspace=gspaces.Rot2dOnR2(N=group))
        super().__init__(fields, block=block, group_size=group, **kwargs)
        self.group = group


register_steerable = functools.partial(register_rotcnn, first_conv="block1.conv")


# ------------------------------------------------------------------ registered models (timm names)

@register_steerable
def rotcnn_c4(pretrained=False, **kwargs) -> SteerableRotCNN:
    return create_rotcnn(SteerableRotCNN, "rotcnn_c4", pretrained, group=4, fields=FIELDS[4], **kwargs)


@register_steerable
def rotcnn_c8(pretrained=False, **kwargs) -> SteerableRotCNN:
    return create_rotcnn(SteerableRotCNN, "rotcnn_c8", pretrained, group=8, fields=FIELDS[8], **kwargs)


@register_steerable
def rotcnn_c16(pretrained=False, **kwargs) -> SteerableRotCNN:
    return create_rotcnn(SteerableRotCNN, "rotcnn_c16", pretrained, group=16, fields=FIELDS[16], **kwargs)
