from collections import Counter

import pytest
import segmentation_models_pytorch as smp
import torch
from segmentation_models_pytorch.encoders import get_encoder
from tiny import TINY_NAMES, tiny

import repeatseg
from repeatseg.backbones.base import ENTRYPOINTS
from repeatseg.variants import FAMILIES, default_variants, parse_name

REGISTERED = [v.name for v in default_variants()]
ONE_PER_KIND = [tiny("resnet18", w, t).name for w, t in [(1, None), (2, "linear"), (4, "swish"), (2, "flip")]]


def test_every_variant_is_registered_in_smp_and_timm():
    import timm

    for variant in default_variants():
        assert variant.name in smp.encoders.get_encoder_names()
        assert timm.is_model(variant.timm_name)
    assert {"repeat_r18_f4", "dense_r18_w4", "repeat_r34_s8", "dense_r34_w1", "basis_r34_s48u1d"} <= set(REGISTERED)
    # every family of the table registers each of its @register_variant constructors, and nothing else
    constructors = Counter(type(parse_name(name)) for name in ENTRYPOINTS if parse_name(name) is not None)
    assert Counter(type(v) for v in default_variants()) == constructors
    assert all(constructors[family] > 0 for family in FAMILIES)


@pytest.mark.parametrize("name", REGISTERED)
def test_features_have_base_channels_at_strides_1_to_32(name):
    with torch.device("meta"):
        encoder = get_encoder(name)
        features = encoder(torch.empty(2, 3, 64, 64))
    assert encoder.out_channels == [3, 64, 64, 128, 256, 512]
    assert [tuple(f.shape) for f in features] == [
        (2, 3, 64, 64), (2, 64, 32, 32), (2, 64, 16, 16), (2, 128, 8, 8), (2, 256, 4, 4), (2, 512, 2, 2)]


def _decoder_signature(model):
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.startswith("encoder.")}
    counts = [sum(p.numel() for p in part.parameters()) for part in (model.decoder, model.segmentation_head)]
    return shapes, counts


def test_the_decoder_is_identical_for_every_registered_encoder():
    with torch.device("meta"):
        reference = _decoder_signature(repeatseg.build_segmenter("dense_r18_w1"))
        for name in REGISTERED:
            assert _decoder_signature(repeatseg.build_segmenter(name)) == reference, name
    # Blocks 1-4 merge the layer3, layer2, layer1 and stem skips; block 5 has no skip.
    shapes = reference[0]
    in_channels = [shapes[f"decoder.blocks.{i}.conv1.0.weight"][1] for i in range(5)]
    assert in_channels == [512 + 256, 256 + 128, 128 + 64, 64 + 64, 32]


# Each decoder path once per encoder, each with another input channel count: the count changes only the
# stem, the decoder only what follows the encoder, so the three forwards cover every pair's parts (a
# forward on the meta device costs ~0.5 s: the full 3 x 3 product took 160 s of the suite).
DECODER_PATHS = [(smp.FPN, {}, 1), (smp.DeepLabV3Plus, {"encoder_output_stride": 16}, 3),
                 (smp.DeepLabV3Plus, {"encoder_output_stride": 8}, 4)]


@pytest.mark.parametrize("name", REGISTERED)
def test_every_registered_encoder_builds_in_fpn_and_deeplab_with_1_3_and_4_input_channels(name):
    with torch.device("meta"):
        for decoder, options, in_channels in DECODER_PATHS:
            model = decoder(name, encoder_weights=None, in_channels=in_channels, classes=3, **options)
            assert model(torch.empty(2, in_channels, 64, 64)).shape == (2, 3, 64, 64), (decoder.__name__, options)


@pytest.mark.parametrize("name", TINY_NAMES)
@pytest.mark.parametrize("in_channels", [1, 4])
def test_tiny_encoders_run_in_unet_fpn_deeplab(name, in_channels):
    x = torch.randn(2, in_channels, 64, 64)
    for model in (
        smp.Unet(name, encoder_weights=None, in_channels=in_channels, classes=3),
        smp.FPN(name, encoder_weights=None, in_channels=in_channels, classes=3, decoder_pyramid_channels=32,
                decoder_segmentation_channels=32),
        smp.DeepLabV3Plus(name, encoder_weights=None, in_channels=in_channels, classes=3, encoder_output_stride=8,
                          decoder_channels=32),
    ):
        out = model(x)
        assert out.shape == (2, 3, 64, 64) and torch.isfinite(out).all()


@pytest.mark.parametrize("stride, expected", [(16, [32, 16, 8, 4, 4]), (8, [32, 16, 8, 8, 8])])
def test_dilated_encoder_keeps_resolution(stride, expected):
    encoder = get_encoder(tiny("resnet18", 2, "flip").name, output_stride=stride)
    features = encoder(torch.randn(1, 3, 64, 64))
    assert [f.shape[-1] for f in features[1:]] == expected
    assert encoder.layer4[0].conv1.dilation == (32 // stride, 32 // stride)


@pytest.mark.parametrize("depth", [3, 4, 5])
def test_encoder_depth_gives_depth_plus_one_features(depth):
    encoder = get_encoder(tiny("resnet34", 2, "swish").name, depth=depth)
    features = encoder(torch.randn(1, 3, 64, 64))
    assert len(features) == depth + 1 and features[-1].shape[1] == encoder.out_channels[-1]
    model = smp.Unet(tiny("resnet34", 2, "swish").name, encoder_weights=None, encoder_depth=depth,
                     decoder_channels=[16] * depth, classes=2)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 2, 64, 64)


def test_widened_features_pass_through_adapters_identity_at_width_one():
    wide = get_encoder(tiny("resnet18", 4, "flip").name)
    assert [type(a).__name__ for a in wide.adapters] == ["Identity"] + ["SkipAdapter"] * 4
    narrow = get_encoder(tiny("resnet18", 1, None).name)
    assert all(type(a).__name__ == "Identity" for a in narrow.adapters)


def test_smp_hub_weights_are_refused_with_a_pointer_to_local_loading():
    with pytest.raises(KeyError, match="build_segmenter"):
        smp.Unet(tiny("resnet18", 2, "flip").name)  # smp's default encoder_weights="imagenet"


@pytest.mark.parametrize("name", ONE_PER_KIND)
def test_segmenter_exports_and_compiles(name):
    model = smp.Unet(name, encoder_weights=None, classes=3, decoder_channels=(32, 16, 16, 8, 8)).eval()
    x = torch.randn(1, 3, 64, 64)
    expected = model(x)
    torch.testing.assert_close(torch.export.export(model, (x,)).module()(x), expected)
    torch.testing.assert_close(torch.compile(model, backend="eager", fullgraph=True)(x), expected)


@pytest.mark.parametrize("name", ONE_PER_KIND)
def test_encoder_scripts(name):
    encoder = get_encoder(name).eval()
    x = torch.randn(1, 3, 64, 64)
    for got, want in zip(torch.jit.script(encoder)(x), encoder(x)):
        torch.testing.assert_close(got, want)


def test_timm_universal_path_gives_wide_features():
    name = tiny("resnet18", 2, "flip").timm_name
    model = smp.Unet(f"tu-{name}", encoder_weights=None, classes=3)
    assert model.encoder.out_channels == [3, 8, 16, 32, 64, 128]  # wide: no skip adapters on this path
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 3, 64, 64)
    dilated = smp.DeepLabV3Plus(f"tu-{name}", encoder_weights=None, classes=3, encoder_output_stride=8)
    assert dilated(torch.randn(2, 3, 64, 64)).shape == (2, 3, 64, 64)
