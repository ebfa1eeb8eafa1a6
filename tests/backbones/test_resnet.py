import pytest
import timm
import torch
from safetensors.torch import load_file, save_file
from tiny import TINY_NAMES, tiny
from torch import nn

from repeatseg.layers import FlipRepeat, RepeatConv2d, SwishRepeat
from repeatseg.variants import ARCH_LAYERS, EncoderVariant, default_variants


def closed_form(arch: str, width: int, base: int = 64) -> dict[str, int]:
    """Conv weights of the wide model and parent/tile counts of its RepeatNet form, written out by hand.

    Stem 7x7 at base width; stage s has channels base*2^s*width; the first block of a stage has
    a 1x1 downsample when its stride is 2 or its input is narrower (layer1 once widened).
    """
    stem = base * 3 * 7 * 7
    dense, parents, tile_pairs, bn_channels = stem, stem, 0, base
    in_c, in_base = base, base
    for stage, blocks in enumerate(ARCH_LAYERS[arch]):
        c, c_base = base * 2**stage * width, base * 2**stage
        for block in range(blocks):
            convs = [(c, in_c, c_base, in_base, 3), (c, c, c_base, c_base, 3)]
            if block == 0 and (stage > 0 or in_c != c):
                convs.append((c, in_c, c_base, in_base, 1))
            for out_c, inp_c, out_b, inp_b, k in convs:
                dense += out_c * inp_c * k * k
                parents += out_b * inp_b * k * k
                tile_pairs += (out_c // out_b) * (inp_c // inp_b)
                bn_channels += out_c
            in_c, in_base = c, c_base
    return dict(dense=dense, parents=parents, children=dense - stem, tile_pairs=tile_pairs, bn=2 * bn_channels)


# BRIEF 2, quoted at the precision given there (millions of conv weights, stem at base width).
@pytest.mark.parametrize("arch, width, millions, digits", [
    ("resnet18", 1, 11.17, 2), ("resnet18", 2, 44.57, 2), ("resnet18", 4, 178.10, 2), ("resnet18", 8, 712.06, 2),
    ("resnet34", 1, 21.27, 2), ("resnet34", 2, 84.98, 2), ("resnet34", 4, 339.7, 1), ("resnet34", 8, 1359, 0),
])
def test_closed_form_agrees_with_the_brief(arch, width, millions, digits):
    assert round(closed_form(arch, width)["dense"] / 1e6, digits) == millions


RESNETS = [v for v in default_variants() if isinstance(v, EncoderVariant)]


def _meta_model(variant):
    with torch.device("meta"):
        return timm.create_model(variant.timm_name, num_classes=0)


@pytest.mark.parametrize("variant", RESNETS, ids=lambda v: v.name)
def test_parameter_counts_match_closed_form(variant):
    model = _meta_model(variant)
    expected = closed_form(variant.arch, variant.width)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    bn = sum(p.numel() for m in model.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters())
    assert bn == expected["bn"]
    assert sum(math_prod(c.weight.shape) for c in convs) == expected["dense"]  # generated shapes too
    if variant.is_dense:
        assert sum(p.numel() for p in model.parameters()) == expected["dense"] + expected["bn"]
        return
    repeat = [c for c in convs if isinstance(c, RepeatConv2d)]
    assert len(repeat) == len(convs) - 1  # all but the stem
    assert model.conv1.weight.shape == (64, 3, 7, 7)
    assert sum(c.parent.numel() for c in repeat) + model.conv1.weight.numel() == expected["parents"]
    extra = {"linear": 0, "swish": 2 * expected["tile_pairs"], "flip": expected["children"]}[variant.transform]
    assert sum(p.numel() for p in model.parameters()) == expected["parents"] + expected["bn"] + extra


def math_prod(shape):
    out = 1
    for s in shape:
        out *= s
    return out


def test_layer1_first_conv_repeats_along_outputs_only():
    model = _meta_model(next(v for v in default_variants() if v.name == "repeat_r18_f4"))
    first = model.layer1[0]
    assert (first.conv1.tile_in, first.conv1.tile_out) == (1, 4)
    assert (first.downsample[0].tile_in, first.downsample[0].tile_out) == (1, 4)
    assert (model.layer2[0].conv1.tile_in, model.layer2[0].conv1.tile_out) == (4, 4)
    assert model.layer1[0].bn1.num_features == 256  # BN at full width


@pytest.mark.parametrize("variant", RESNETS, ids=lambda v: v.name)
def test_every_registered_name_classifies_with_the_right_shapes(variant):
    with torch.device("meta"):
        model = timm.create_model(variant.timm_name, num_classes=7)
        features = timm.create_model(variant.timm_name, features_only=True)
        x = torch.empty(2, 3, 64, 64)
        assert model(x).shape == (2, 7)
        shapes = [tuple(f.shape) for f in features(x)]
    w = variant.width
    assert shapes == [(2, 64, 32, 32), (2, 64 * w, 16, 16), (2, 128 * w, 8, 8), (2, 256 * w, 4, 4), (2, 512 * w, 2, 2)]
    assert features.feature_info.reduction() == [2, 4, 8, 16, 32]


@pytest.mark.parametrize("name", TINY_NAMES)
def test_tiny_models_train_every_parameter(name):
    from repeatseg import get_variant

    model = timm.create_model(get_variant(name).timm_name, num_classes=5)
    model(torch.randn(2, 3, 32, 32)).logsumexp(1).sum().backward()
    for pname, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("transform", [None, "linear", "swish", "flip"])
def test_state_dict_round_trip_gives_identical_outputs(tmp_path, transform):
    name = tiny("resnet18", 2, transform).timm_name
    model = timm.create_model(name, num_classes=4)
    for module in model.modules():  # move off the init so the test sees real values
        if isinstance(module, FlipRepeat):
            nn.init.uniform_(module.scores, -1, 1)
        if isinstance(module, SwishRepeat):
            nn.init.normal_(module.b1)
            nn.init.normal_(module.b2)
    model.eval()
    save_file(model.state_dict(), tmp_path / "m.safetensors")
    rebuilt = timm.create_model(name, num_classes=4)
    rebuilt.load_state_dict(load_file(tmp_path / "m.safetensors"))
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(rebuilt.eval()(x), model(x))


def test_timm_loads_a_local_pretrained_file(tmp_path):
    name = tiny("resnet18", 2, "flip").timm_name
    source = timm.create_model(name, num_classes=10).eval()
    save_file(source.state_dict(), tmp_path / "w.safetensors")
    loaded = timm.create_model(name, num_classes=10, pretrained=True,
                               pretrained_cfg_overlay=dict(file=str(tmp_path / "w.safetensors"), num_classes=10)).eval()
    x = torch.randn(1, 3, 32, 32)
    assert torch.equal(loaded(x), source(x))


def test_output_stride_dilates_later_stages():
    model = timm.create_model(tiny("resnet18", 2, "swish").timm_name, features_only=True, output_stride=8)
    shapes = [f.shape[-1] for f in model(torch.randn(1, 3, 64, 64))]
    assert shapes == [32, 16, 8, 8, 8]
