import pytest
import timm
import torch
from tiny import tiny_named
from torch import nn

import repeatseg
from repeatseg.backbones.basis import BasisResNet, SharedBasisBlock
from repeatseg.backbones.resnet import BasicBlock
from repeatseg.layers import FilterBasis, regularization_loss
from repeatseg.layers.basis import SharedBasisConv


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # a shared tensor counts once


# ../shared/FAMILIES.md section 1: the authors' counts (1,000 classes), exact.
@pytest.mark.parametrize("name, expected", [
    ("basis_resnet34_s48u1d", 11_786_968), ("basis_resnet34_s32u1d", 9_762_776), ("basis_resnet34_s32u1", 8_196_056),
    ("basis_resnet34_s16u1", 6_955_224), ("basis_resnet18_s32u1", 7_448_292), ("basis_resnet18_s16u1", 6_489_892),
    ("dense_resnet34_w1", 21_797_672), ("dense_resnet18_w1", 11_689_512),
])
def test_parameter_counts_are_the_authors(name, expected):
    with torch.device("meta"):
        model = timm.create_model(name)
        assert count(model) == expected
        model.reset_classifier(0)
        assert count(model) == expected - 513_000


def test_cifar_stem_and_100_classes_give_the_authors_cifar100_counts():
    # FAMILIES.md: the same counting with a 3x3 CIFAR stem and 100 classes gives 5.87M, 6.49M, 7.73M.
    for shared, millions in ((8, 5.87), (16, 6.49), (32, 7.73)):
        with torch.device("meta"):
            model = BasisResNet((3, 4, 6, 3), shared, 1, num_classes=100)
        stem_difference = 64 * 3 * (7 * 7 - 3 * 3)
        assert round((count(model) - stem_difference) / 1e6, 2) == millions


def _shared_convs(stage):
    return [conv for block in stage[1:] for conv in (block.conv1, block.conv2)]


def test_block_zero_is_plain_and_later_blocks_share_one_basis_per_stage():
    model = BasisResNet((3, 4, 6, 3), 8, 1, base_width=8, num_classes=0)
    for index in range(1, 5):
        stage = getattr(model, f"layer{index}")
        assert type(stage[0]) is BasicBlock and all(type(b) is SharedBasisBlock for b in stage[1:])
        bases = {id(conv.basis) for conv in _shared_convs(stage)}
        assert len(bases) == 1
        rank = 8 * 2 ** (index - 1)
        assert [c.unique.out_channels for c in _shared_convs(stage)] == [2 ** (index - 1)] * 2 * (len(stage) - 1)
        assert _shared_convs(stage)[0].basis.out_channels == rank


def test_two_bases_serve_first_and_second_convs():
    model = BasisResNet((3, 4, 6, 3), 4, 1, two_bases=True, base_width=8, num_classes=0)
    stage = model.layer3
    first = {id(block.conv1.basis) for block in stage[1:]}
    second = {id(block.conv2.basis) for block in stage[1:]}
    assert len(first) == len(second) == 1 and first != second


def test_bases_start_orthogonal_jointly_and_the_penalty_starts_at_zero():
    model = BasisResNet((2, 2, 2, 2), 4, 1, two_bases=True, base_width=8, num_classes=0)
    basis = model.layer2[1].conv1.basis
    joint = torch.cat([b.weight.flatten(1) for b in basis.group])
    torch.testing.assert_close(joint @ joint.T, torch.eye(joint.shape[0]), atol=1e-5, rtol=0)
    assert float(regularization_loss(model).detach()) < 1e-10


def test_penalty_is_the_normalised_sum_over_stages():
    model = BasisResNet((2, 2, 2, 2), 4, 1, two_bases=True, base_width=8, num_classes=0)
    with torch.no_grad():
        for basis in (m for m in model.modules() if isinstance(m, FilterBasis)):
            basis.weight.normal_()
    numerator, denominator = 0.0, 0.0
    for index in range(1, 5):
        block = getattr(model, f"layer{index}")[1]
        matrix = torch.cat([block.conv1.basis.weight.flatten(1), block.conv2.basis.weight.flatten(1)]).detach()
        numerator += float((matrix @ matrix.T - torch.eye(len(matrix))).square().sum())
        denominator += len(matrix) ** 2
    torch.testing.assert_close(float(model.regularization_loss().detach()), numerator / denominator)
    model.regularization_loss().backward()
    assert model.layer1[1].conv1.basis.weight.grad.abs().sum() > 0


def test_shared_conv_folds_into_one_biased_3x3_conv():
    basis = FilterBasis(8, 6)
    conv = SharedBasisConv(8, 2, basis)
    with torch.no_grad():
        conv.bn.running_mean.normal_()
        conv.bn.running_var.uniform_(0.5, 2.0)
        conv.bn.weight.normal_()
        conv.bn.bias.normal_()
    conv.eval()
    x = torch.randn(2, 8, 9, 9)
    plain = conv.folded()
    assert type(plain) is nn.Conv2d and plain.bias is not None and plain.weight.shape == (8, 8, 3, 3)
    torch.testing.assert_close(plain(x), conv(x), rtol=1e-5, atol=1e-5)


def test_names_ranks_and_base_width():
    variant = tiny_named("basis_r34_s4u1d_b8")
    assert (variant.shared_rank, variant.unique_rank, variant.two_bases, variant.base_width) == (4, 1, True, 8)
    assert variant.timm_name == "basis_resnet34_s4u1d_b8" and repeatseg.get_variant(variant.timm_name) == variant
    assert variant.reference.name == "dense_r34_w1_b8"
    assert [v.name for v in variant.contrast] == ["dense_r34_w1_b8", "dense_r34_w1_b4"]
    with pytest.raises(ValueError, match="unknown repeatseg encoder"):
        repeatseg.get_variant("basis_r18_s999u1_b8")  # more rows than 9 x planes: cannot be orthogonal
