import pytest
import torch
import torch.nn.functional as F
from torch import nn

from repeatseg.layers import RepeatConv2d
from repeatseg.layers.transforms import TRANSFORMS


def make(transform="flip", **kwargs):
    options = dict(tile_in=2, tile_out=3, transform=transform)
    options.update(kwargs)
    return RepeatConv2d(8, 12, 3, stride=2, padding=1, **options)


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_is_a_conv2d_that_computes_the_generated_weight(transform):
    conv = make(transform)
    assert isinstance(conv, nn.Conv2d)
    assert conv.weight.shape == (12, 8, 3, 3) and conv.parent.shape == (4, 4, 3, 3)
    x = torch.randn(2, 8, 9, 9)
    torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight, None, 2, 1))


def test_state_dict_holds_parent_and_transform_not_the_wide_weight():
    assert set(make("flip").state_dict()) == {"parent", "transform.scores"}
    assert set(make("swish").state_dict()) == {"parent", "transform.b1", "transform.b2"}
    assert set(make("linear", bias=True).state_dict()) == {"parent", "bias"}


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_every_parameter_receives_a_gradient(transform):
    conv = make(transform, bias=True, transform_options={"score_init": (-0.5, 0.5)} if transform == "flip" else None)
    conv(torch.randn(2, 8, 7, 7)).square().sum().backward()
    for name, param in conv.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_channels_must_be_multiples_of_the_tiles():
    with pytest.raises(ValueError, match="multiples"):
        RepeatConv2d(8, 10, 3, tile_in=2, tile_out=3)


def test_depth_repetition_shares_one_parent_with_own_transforms():
    first = RepeatConv2d(6, 6, 3, padding=1, tile_in=1, tile_out=1, transform="flip",
                         transform_options={"score_init": (-1.0, 1.0)})
    second = RepeatConv2d.sharing(first, "swish")
    third = RepeatConv2d.sharing(first, "flip", transform_options={"score_init": (-1.0, 1.0)})
    stack = nn.Sequential(first, nn.ReLU(), second, nn.ReLU(), third)
    assert second.parent is first.parent and third.parent is first.parent
    assert sum(p is first.parent for p in stack.parameters()) == 1  # counted once
    assert not torch.equal(first.weight, third.weight)  # own transforms, different children

    x = torch.randn(2, 6, 5, 5)
    stack(x).sum().backward()
    # The shared parent's gradient is the sum of what each layer sends it.
    total = first.parent.grad.clone()
    parts = []
    for layer in (first, second, third):
        stack.zero_grad()
        weight = layer.transform(first.parent)
        h = x
        for module in stack:
            if module is layer:
                h = F.conv2d(h, weight, None, 1, 1)
            elif isinstance(module, RepeatConv2d):
                h = F.conv2d(h, module.weight.detach(), None, 1, 1)
            else:
                h = module(h)
        h.sum().backward()
        parts.append(first.parent.grad.clone())
    torch.testing.assert_close(total, sum(parts))


def test_sharing_refuses_a_parent_of_the_wrong_shape():
    source = RepeatConv2d(4, 4, 3, padding=1)
    with pytest.raises(ValueError, match="shared parent"):
        RepeatConv2d.sharing(source, "flip", kernel_size=1, padding=0)


def test_meta_device_build_allocates_nothing_and_keeps_shapes():
    with torch.device("meta"):
        conv = RepeatConv2d(512, 512, 3, padding=1, tile_in=8, tile_out=8)
        out = conv(torch.empty(1, 512, 4, 4))
    assert conv.parent.is_meta and out.shape == (1, 512, 4, 4)


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_export_compile_and_script_match_eager(transform):
    conv = make(transform).eval()
    x = torch.randn(1, 8, 6, 6)
    expected = conv(x)
    torch.testing.assert_close(torch.export.export(conv, (x,)).module()(x), expected)
    torch.testing.assert_close(torch.compile(conv, backend="eager", fullgraph=True)(x), expected)
    torch.testing.assert_close(torch.jit.script(conv)(x), expected)


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_reset_parameters_restores_the_initial_transform(transform):
    conv = make(transform)
    with torch.no_grad():
        for param in conv.transform.parameters():
            param.uniform_(-1, 1)
    conv.reset_parameters()
    tiles = conv.weight.view(3, 4, 2, 4, 3, 3)
    parent = conv.parent.view(1, 4, 1, 4, 3, 3)
    if transform == "random_sign":  # its start is its seeded signs at scale 1, not pure tiling
        assert torch.equal(tiles, conv.transform.signs.view(3, 4, 2, 4, 3, 3) * parent)
    else:
        assert torch.equal(tiles, parent.expand_as(tiles))
