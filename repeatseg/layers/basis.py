"""Deeply shared filter bases (Kang & Kim, NeurIPS 2021): 3x3 convs that share one filter basis.

A ResNet stage owns one or two ``FilterBasis`` convs (``Conv2d(planes, rank, 3)``, no bias). Each
``SharedBasisConv`` of the stage computes, for input x (planes channels)::

    y = coeff(BN(cat([unique(x), basis(x)], dim=1)))      unique channels first

with its own ``unique`` conv (``Conv2d(planes, unique_rank, 3)``), its own BN over the
unique_rank + rank channels and its own 1x1 ``coeff`` conv back to planes. The basis is one module
referenced by every conv that uses it: one Parameter, counted and updated once (``state_dict``
lists it under every user, as PyTorch does for tied weights).

The bases of a stage form a group (``FilterBasis.group``) that adds the orthogonality penalty
``||B B^T - I||_F^2`` for B = the group's weights flattened to (rows, planes * 9) and stacked,
normalised by the sum of rows^2 over the model, on the raw weights (so it also pulls row norms to
1). Its default weight in the loss is 10 (the authors').
"""

from __future__ import annotations

import torch
from torch import nn

from .protocol import SharingLayer


class FilterBasis(SharingLayer, nn.Conv2d):
    """A stage's shared basis: ``Conv2d(planes, rank, 3, padding=1, bias=False)``.

    ``group`` (all bases of the stage, this one included; a plain tuple, not submodules) is
    initialised orthogonally and jointly by ``group_bases``: one orthogonal (sum of ranks,
    planes * 9) matrix split between them, so two bases of a stage start orthogonal to each other.
    """

    regularization_weight = 10.0

    def __init__(self, planes: int, rank: int):
        super().__init__(planes, rank, 3, padding=1, bias=False)
        self.group: tuple[FilterBasis, ...] = (self,)

    def reset_parameters(self) -> None:
        group = getattr(self, "group", None)
        if group is None:  # nn.Conv2d.__init__ calls this before the group exists
            return super().reset_parameters()
        joint = torch.empty(sum(b.out_channels for b in group), self.weight[0].numel(), device=self.weight.device)
        if joint.device.type != "meta":
            nn.init.orthogonal_(joint)
        with torch.no_grad():
            for basis, rows in zip(group, joint.split([b.out_channels for b in group])):
                basis.weight.copy_(rows.view_as(basis.weight))

    def regularization_terms(self) -> list[tuple[torch.Tensor, float]]:
        if self.group[0] is not self:  # the group's first basis speaks for it
            return []
        matrix = torch.cat([b.weight.flatten(1) for b in self.group])
        rows = matrix.shape[0]
        eye = torch.eye(rows, device=matrix.device, dtype=matrix.dtype)
        return [((matrix @ matrix.T - eye).square().sum(), float(rows * rows))]


def group_bases(bases: list[FilterBasis]) -> list[FilterBasis]:
    """Make ``bases`` one orthogonality group and initialise them jointly; returns them."""
    for basis in bases:
        basis.group = tuple(bases)
    bases[0].reset_parameters()
    return bases


class SharedBasisConv(SharingLayer, nn.Module):
    """A 3x3, stride-1 conv (planes -> planes) built on a shared ``basis``.

    Folds, for inference, into one ``Conv2d(planes, planes, 3, bias=True)``: the 1x1 coefficients
    and the BN (eval statistics) are linear, so W = coeff @ diag(bn_scale) @ cat(unique, basis)
    and b = coeff @ bn_shift.
    """

    def __init__(self, planes: int, unique_rank: int, basis: FilterBasis):
        super().__init__()
        self.unique = nn.Conv2d(planes, unique_rank, 3, padding=1, bias=False)
        self.basis = basis
        self.bn = nn.BatchNorm2d(unique_rank + basis.out_channels)
        self.coeff = nn.Conv2d(unique_rank + basis.out_channels, planes, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.coeff(self.bn(torch.cat([self.unique(x), self.basis(x)], dim=1)))

    def folded(self) -> nn.Conv2d:
        scale = self.bn.weight / torch.sqrt(self.bn.running_var + self.bn.eps)
        shift = self.bn.bias - self.bn.running_mean * scale
        coeff = self.coeff.weight.flatten(1)  # (planes, unique + rank)
        stacked = torch.cat([self.unique.weight, self.basis.weight])  # (unique + rank, planes, 3, 3)
        plain = nn.Conv2d(self.unique.in_channels, self.coeff.out_channels, 3, 1, self.unique.padding,
                          self.unique.dilation, bias=True, device=stacked.device, dtype=stacked.dtype)
        with torch.no_grad():
            plain.weight.copy_(torch.einsum("oc,cikl->oikl", coeff * scale, stacked))
            plain.bias.copy_(coeff @ shift)
        return plain
