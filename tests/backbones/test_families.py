"""What every family must do, checked on tiny members of each (the family table's rows)."""

import json

import pytest
import segmentation_models_pytorch as smp
import timm
import torch
from segmentation_models_pytorch.encoders import get_encoder
from tiny import FAMILY_TINY_NAMES, tiny

import repeatseg
from repeatseg.export import fold, load_packed, pack
from repeatseg.layers import SharingLayer
from repeatseg.variants import FAMILIES, default_variants, get_variant

ALL_TINY = [tiny("resnet18", 4, "flip").name, tiny("resnet18", 4, "swish").name, *FAMILY_TINY_NAMES]


def test_every_family_registers_defaults_whose_names_round_trip():
    for family in FAMILIES:
        members = [v for v in default_variants() if isinstance(v, family)]
        assert members, family
        for variant in members:
            assert get_variant(variant.name) == variant == get_variant(variant.timm_name)
            assert family.parse(variant.name + "_b16").base_width == 16
            assert timm.is_model(variant.timm_name) and variant.name in smp.encoders.get_encoder_names()


@pytest.mark.parametrize("name", FAMILY_TINY_NAMES)
def test_timm_classifier_and_features_only(name):
    variant = get_variant(name)
    model = timm.create_model(variant.timm_name, num_classes=5)
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 5)
    features = timm.create_model(variant.timm_name, features_only=True)
    outputs = features(torch.randn(1, 3, 64, 64))
    assert [o.shape[-1] for o in outputs] == [32, 16, 8, 4, 2]
    assert features.feature_info.reduction() == [2, 4, 8, 16, 32]
    # features_only keeps every shared tensor: same parameters as the classifier minus its head
    head = sum(p.numel() for p in model.fc.parameters())
    assert sum(p.numel() for p in features.parameters()) == sum(p.numel() for p in model.parameters()) - head


@pytest.mark.parametrize("name", FAMILY_TINY_NAMES)
@pytest.mark.parametrize("in_channels", [1, 4])
def test_smp_architectures_in_channels_and_output_strides(name, in_channels):
    x = torch.randn(2, in_channels, 64, 64)
    for model in (
        smp.Unet(name, encoder_weights=None, in_channels=in_channels, classes=3),
        smp.FPN(name, encoder_weights=None, in_channels=in_channels, classes=3, decoder_pyramid_channels=32,
                decoder_segmentation_channels=32),
        *[smp.DeepLabV3Plus(name, encoder_weights=None, in_channels=in_channels, classes=3, decoder_channels=16,
                            encoder_output_stride=stride) for stride in (16, 8)],
    ):
        assert model(x).shape == (2, 3, 64, 64)


@pytest.mark.parametrize("name", FAMILY_TINY_NAMES)
@pytest.mark.parametrize("stride, expected", [(16, [32, 16, 8, 4, 4]), (8, [32, 16, 8, 8, 8])])
def test_dilation_keeps_resolution(name, stride, expected):
    encoder = get_encoder(name, output_stride=stride)
    assert [f.shape[-1] for f in encoder(torch.randn(1, 3, 64, 64))[1:]] == expected


@pytest.mark.parametrize("name", FAMILY_TINY_NAMES)
@pytest.mark.parametrize("depth", [3, 4])
def test_encoder_depths(name, depth):
    model = smp.Unet(name, encoder_weights=None, encoder_depth=depth, decoder_channels=[8] * depth, classes=2)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 2, 64, 64)


@pytest.mark.parametrize("name", FAMILY_TINY_NAMES)
def test_export_and_compile(name):
    model = repeatseg.build_segmenter(name, classes=3).eval()
    x = torch.randn(1, 3, 64, 64)
    expected = model(x)
    torch.testing.assert_close(torch.export.export(model, (x,)).module()(x), expected)
    torch.testing.assert_close(torch.compile(model, backend="eager", fullgraph=True)(x), expected)


def _randomise_statistics(model):
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 1.5)


@pytest.mark.parametrize("name", ALL_TINY)
def test_fold_leaves_plain_convs_with_the_same_outputs(name):
    model = repeatseg.build_segmenter(name, classes=3)
    _randomise_statistics(model)
    model.eval()
    x = torch.randn(2, 3, 64, 64)
    expected = model(x)
    folded = fold(model)
    assert all(m.folded() is None for m in folded.modules() if isinstance(m, SharingLayer))  # nothing left to fold
    # Folding reassociates the arithmetic: compare relative to the output's scale.
    for plain in (folded, fold(model, fuse_bn=True)):
        assert (plain(x) - expected).abs().max() <= 1e-4 * expected.abs().max()


@pytest.mark.parametrize("name", ALL_TINY)
def test_pack_round_trip_stores_shared_tensors_once(tmp_path, name):
    model = repeatseg.build_segmenter(name, classes=3).eval()
    pack(model, tmp_path / "m.safetensors", {"encoder": name, "classes": 3})
    loaded = load_packed(tmp_path / "m.safetensors")
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(loaded(x), model(x))
    stats = repeatseg.describe(name, segmenter=True, classes=3)
    size = (tmp_path / "m.safetensors").stat().st_size
    assert stats.packed_bytes <= size < stats.packed_bytes * 1.25 + 60_000  # + the safetensors header


@pytest.mark.parametrize("name", FAMILY_TINY_NAMES)
def test_accounting_counts_shared_tensors_once_and_compares_with_the_reference(name):
    stats = repeatseg.describe(name, input_size=64)
    variant = get_variant(name)
    with torch.device("meta"):
        encoder = get_encoder(variant.smp_key)
    assert stats.trainable_params == sum(p.numel() for p in encoder.parameters())
    assert stats.dense_twin == variant.reference.name and stats.mask_bits == 0
    reference = repeatseg.describe(variant.reference.name, input_size=64)
    assert stats.ratio_to_dense["packed_bytes"] == pytest.approx(stats.packed_bytes / reference.packed_bytes)


def test_model_options_from_a_name_keywords_and_checkpoint_metadata(tmp_path):
    name = tiny("resnet18", 2, "flip").name
    from_name = repeatseg.build_segmenter(f"{name}[gradient=bireal]", classes=3)
    from_kwargs = repeatseg.build_segmenter(name, classes=3, options={"gradient": "bireal"})
    for model in (from_name, from_kwargs):
        assert model.encoder.layer1[0].conv1.transform.gradient == "bireal"
        assert model.encoder_variant.option_dict == {"gradient": "bireal"}
    assert repeatseg.build_segmenter(name, classes=3).encoder.layer1[0].conv1.transform.gradient == "clamp"
    timm_model = timm.create_model(tiny("resnet18", 2, "flip").timm_name, gradient="bireal", num_classes=0)
    assert timm_model.layer2[0].conv1.transform.gradient == "bireal"
    with pytest.raises(ValueError, match="does not read model option.*gradiant.*reads parent_init, gradient"):
        repeatseg.build_segmenter(name, classes=3, options={"gradiant": "bireal"})
    # a checkpoint records the options and load_segmenter rebuilds with them
    from repeatseg.files import save_weights

    save_weights(tmp_path / "run/checkpoints/best.safetensors", from_kwargs.state_dict(),
                 {"encoder": name, "classes": 3, "options": {"gradient": "bireal"}})
    loaded, metadata = repeatseg.load_segmenter(tmp_path / "run")
    assert loaded.encoder.layer1[0].conv1.transform.gradient == "bireal"
    assert json.loads(metadata["options"]) == {"gradient": "bireal"}
