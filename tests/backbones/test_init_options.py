"""The authors' inits as model options: ``parent_init`` and ``swish_init`` reach every RepeatConv2d
from a name, keyword arguments and a config, draw from the authors' distributions, and are recorded."""

import json
import math

import pytest
import timm
import torch
from tiny import tiny

import repeatseg
from repeatseg.config import ClsConfig, SegConfig, load_config
from repeatseg.engine.cls import build_classifier
from repeatseg.layers import RepeatConv2d, SwishRepeat

AUTHORS = {"parent_init": "xavier", "swish_init": "xavier"}


def repeat_convs(model):
    convs = [m for m in model.modules() if isinstance(m, RepeatConv2d)]
    assert convs
    return convs


def xavier_bound(shape) -> float:
    """torch's Xavier-uniform bound for a tensor of ``shape`` (fans: dims 1 and 0 times the kernel)."""
    receptive = math.prod(shape[2:])
    return math.sqrt(6.0 / ((shape[0] + shape[1]) * receptive))


def assert_authors_inits(model):
    for conv in repeat_convs(model):
        assert conv.parent_init == "xavier" and conv.transform.init == "xavier"
        assert conv.parent.abs().max() <= xavier_bound(conv.parent.shape)
        bound = math.sqrt(6.0 / (1 + conv.tile_out * conv.tile_in))
        for scalars in (conv.transform.b1, conv.transform.b2):
            assert scalars.abs().max() <= bound
            assert len(set(scalars.flatten().tolist())) == scalars.numel()  # drawn per tile, not pure tiling


def swish_name() -> str:
    return tiny("resnet18", 2, "swish").name


def test_from_a_name_keywords_and_timm():
    name = swish_name()
    assert_authors_inits(repeatseg.build_segmenter(f"{name}[parent_init=xavier,swish_init=xavier]", classes=3))
    assert_authors_inits(repeatseg.build_segmenter(name, classes=3, options=AUTHORS))
    assert_authors_inits(timm.create_model(tiny("resnet18", 2, "swish").timm_name, num_classes=0, **AUTHORS))
    default = repeatseg.build_segmenter(name, classes=3)
    for conv in repeat_convs(default):
        assert conv.parent_init == "he_child" and torch.equal(conv.transform.b1, torch.full_like(conv.transform.b1, 2.0))


def test_from_a_classification_and_a_segmentation_config():
    sets = ["model.options.parent_init=xavier", "model.options.swish_init=xavier"]
    cls = load_config(ClsConfig, sets=[f"model.name={tiny('resnet18', 2, 'swish').timm_name}", *sets])
    assert_authors_inits(build_classifier(cls.model.name, 10, options=cls.model.options))
    seg = load_config(SegConfig, sets=[f"model.encoder={swish_name()}", *sets])
    assert_authors_inits(repeatseg.build_segmenter(seg.model.encoder, classes=3, options=seg.model.options))


def test_parent_init_reaches_every_transform():
    for transform in ("linear", "flip", "swish"):
        model = repeatseg.build_segmenter(f"{tiny('resnet18', 4, transform).name}[parent_init=xavier]", classes=3)
        assert all(conv.parent_init == "xavier" for conv in repeat_convs(model))


def test_the_options_are_recorded_in_the_metadata():
    model = repeatseg.build_segmenter(swish_name(), classes=3, options=AUTHORS)
    assert json.loads(model.encoder_variant.metadata()["options"]) == AUTHORS


def test_xavier_parent_is_uniform_within_the_parents_own_bound_and_he_child_uses_the_child_fan_out():
    torch.manual_seed(0)
    xavier = RepeatConv2d(256, 256, 3, tile_in=2, tile_out=2, parent_init="xavier")
    bound = math.sqrt(6.0 / ((128 + 128) * 9))  # fans of the (128, 128, 3, 3) parent, not of the child
    values = xavier.parent.detach()
    assert values.abs().max() <= bound and values.abs().max() > 0.99 * bound
    assert values.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.02)  # uniform's std
    he = RepeatConv2d(256, 256, 3, tile_in=2, tile_out=2)
    assert he.parent.std().item() == pytest.approx(math.sqrt(2.0 / (256 * 9)), rel=0.02)
    with torch.no_grad():
        xavier.parent.zero_()
    xavier.reset_parameters()  # reset honours the option
    assert xavier.parent.abs().max() <= bound and xavier.parent.std().item() == pytest.approx(bound / math.sqrt(3),
                                                                                             rel=0.02)


def test_swish_xavier_draws_b1_and_b2_per_tile_within_sqrt_6_over_1_plus_tiles():
    torch.manual_seed(0)
    swish = SwishRepeat(32, 32, swish_init="xavier")
    bound = math.sqrt(6.0 / (1 + 32 * 32))
    for scalars in (swish.b1.detach(), swish.b2.detach()):
        assert scalars.abs().max() <= bound and scalars.abs().max() > 0.95 * bound
        assert scalars.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.1)
    assert not torch.equal(swish.b1, swish.b2)
    before = swish.b1.detach().clone()
    swish.reset_parameters()
    assert not torch.equal(swish.b1, before) and swish.b1.abs().max() <= bound
    assert torch.equal(SwishRepeat(2, 2, swish_init=[1, -0.5]).b2, torch.full((2, 2), -0.5))


@pytest.mark.parametrize("options, message", [
    ({"parent_init": "he"}, r"parent_init 'he'.*'he_child', 'xavier'"),
    ({"swish_init": "glorot"}, r"swish_init 'glorot'.*'xavier'.*pair"),
    ({"swish_init": [1, 2, 3]}, r"swish_init .*'xavier'.*pair"),
])
def test_bad_values_are_refused_naming_the_valid_ones(options, message):
    with pytest.raises(ValueError, match=message):
        repeatseg.build_segmenter(swish_name(), classes=3, options=options)
