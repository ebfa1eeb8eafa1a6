"""Model options each layer owns: one a model does not read is refused wherever it comes from, naming
the options the model does read; a recipe shared by a study's encoders applies where it is read."""

import json

import pytest
import timm
from tiny import tiny, tiny_named

import repeatseg
from repeatseg.backbones.base import check_options
from repeatseg.backbones.basis import BasisResNet
from repeatseg.backbones.dacnn import DACNN
from repeatseg.backbones.resnet import RepeatResNet
from repeatseg.engine.cls import build_classifier
from repeatseg.variants import get_variant


@pytest.mark.parametrize("name, option, reads", [
    (tiny("resnet18", 4, None).name, "gradient=bireal", "it reads no model options"),
    (tiny("resnet18", 2, "linear").name, "gradient=bireal", "it reads parent_init$"),
    (tiny("resnet18", 2, "swish").name, "score_init=[0,1]", "it reads parent_init, swish_init$"),
    (tiny("resnet18", 2, "flip").name, "swish_init=xavier", "it reads parent_init, gradient, score_init$"),
    ("dacnn_r18_mix_b8", "parent_init=xavier", "it reads roll$"),
    ("basis_r18_s4u1_b8", "roll=false", "it reads no model options"),
])
def test_an_option_the_model_does_not_read_is_refused_from_a_name_keywords_and_timm(name, option, reads):
    key, value = option.split("=")
    message = f"does not read model option\\(s\\) {key}; {reads}"
    with pytest.raises(ValueError, match=message):
        get_variant(f"{name}[{option}]")
    with pytest.raises(ValueError, match=message):
        repeatseg.build_segmenter(name, classes=3, options={key: value})
    with pytest.raises(ValueError, match=message):
        repeatseg.register(name, **{key: value})
    with pytest.raises(ValueError, match=message):
        timm.create_model(tiny_named(name).timm_name, **{key: value})


def test_backbone_constructors_use_the_same_check():
    with pytest.raises(ValueError, match="does not read model option\\(s\\) gradient; it reads parent_init$"):
        RepeatResNet(transform="linear", base_width=8, options={"gradient": "bireal"})
    with pytest.raises(ValueError, match="does not read model option\\(s\\) parent_init; it reads no model options"):
        RepeatResNet(transform=None, base_width=8, options={"parent_init": "xavier"})
    with pytest.raises(ValueError, match="DACNN does not read model option\\(s\\) gradient; it reads roll"):
        DACNN(base_width=8, options={"gradient": "clamp"})
    with pytest.raises(ValueError, match="BasisResNet does not read"):
        BasisResNet(shared_rank=4, base_width=8, options={"roll": True})
    assert check_options({"roll": False}, DACNN.OPTIONS, "DACNN") == {"roll": False}


def test_an_option_given_twice_in_a_name_is_refused():
    with pytest.raises(ValueError, match="'gradient' is given more than once"):
        get_variant(f"{tiny('resnet18', 2, 'flip').name}[gradient=bireal,gradient=clamp]")


def test_a_shared_recipe_applies_its_options_where_they_are_read_and_refuses_unknown_names():
    recipe = {"gradient": "bireal", "score_init": [0.0, 0.001], "swish_init": "xavier", "parent_init": "xavier"}
    assert get_variant(tiny("resnet18", 2, None).name).recipe_options(recipe) == {}
    assert get_variant(tiny("resnet18", 2, "swish").name).recipe_options(recipe) == {
        "swish_init": "xavier", "parent_init": "xavier"}
    dense = build_classifier(tiny("resnet18", 1, None).timm_name, 10, options=recipe)
    assert dense.model_options == {}  # what its checkpoints record: nothing it does not read
    flip = build_classifier(tiny("resnet18", 2, "flip").timm_name, 10, options=recipe)
    assert flip.model_options == {"gradient": "bireal", "score_init": (0.0, 0.001), "parent_init": "xavier"}
    assert flip.layer1[0].conv1.transform.gradient == "bireal"
    with pytest.raises(ValueError, match="repeatseg \\(any encoder\\) does not read model option\\(s\\) gradiant"):
        get_variant(tiny("resnet18", 2, None).name).recipe_options({"gradiant": "bireal"})


def test_the_metadata_records_the_options_read():
    model = repeatseg.build_segmenter(f"{tiny('resnet18', 2, 'linear').name}[parent_init=xavier]", classes=3)
    assert json.loads(model.encoder_variant.metadata()["options"]) == {"parent_init": "xavier"}


def test_files_written_before_the_check_load_with_the_options_their_model_reads(tmp_path):
    from repeatseg.files import save_weights

    name, recipe = tiny("resnet18", 2, None).name, {"gradient": "bireal", "parent_init": "xavier"}
    model = repeatseg.build_segmenter(name, classes=3)
    save_weights(tmp_path / "run/checkpoints/best.safetensors", model.state_dict(),
                 {"encoder": name, "classes": 3, "options": recipe})  # as files recorded a whole recipe
    loaded, _ = repeatseg.load_segmenter(tmp_path / "run")
    assert loaded.encoder_variant.option_dict == {}
    save_weights(tmp_path / "encoder.safetensors", model.encoder.state_dict(), {"encoder": name, "options": recipe})
    built = repeatseg.build_segmenter(name, classes=3, encoder_weights=tmp_path / "encoder.safetensors")
    assert built.encoder_variant.option_dict == {}
