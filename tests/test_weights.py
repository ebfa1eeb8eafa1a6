"""Local weight loading: torchvision/timm key names, repeatseg checkpoints, tags, errors."""

import pytest
import timm
import torch
import torchvision
from safetensors.torch import save_file
from tiny import tiny

import repeatseg
from repeatseg.weights import WEIGHTS_ENV, resolve_weights


def _features(model, x):
    """Stem and layer1..4 outputs of a torchvision/timm-style ResNet."""
    act = getattr(model, "relu", None) or model.act1
    x = act(model.bn1(model.conv1(x)))
    out = [x]
    x = model.maxpool(x)
    for name in ("layer1", "layer2", "layer3", "layer4"):
        x = getattr(model, name)(x)
        out.append(x)
    return out


def _check_same_features(reference, segmenter):
    x = torch.randn(2, 3, 64, 64)
    reference.eval()
    segmenter.eval()
    with torch.no_grad():
        expected = _features(reference, x)
        got = segmenter.encoder(x)[1:]
    for e, g in zip(expected, got):
        torch.testing.assert_close(g, e)


def test_torchvision_resnet18_checkpoint_loads_into_dense_1x(tmp_path):
    reference = torchvision.models.resnet18(weights=None)
    torch.save(reference.state_dict(), tmp_path / "resnet18.pth")
    model = repeatseg.build_segmenter("dense_r18_w1", encoder_weights=tmp_path / "resnet18.pth")
    _check_same_features(reference, model)
    report = model.encoder_weights_report
    assert report.dropped == ["fc.bias", "fc.weight"] and not report.missing and not report.unexpected


def test_timm_resnet34_checkpoint_in_a_ddp_wrapper_loads(tmp_path):
    reference = timm.create_model("resnet34")
    wrapped = {"state_dict": {f"module.{k}": v for k, v in reference.state_dict().items()}, "epoch": 3}
    torch.save(wrapped, tmp_path / "timm34.pth")
    model = repeatseg.build_segmenter("dense_r34_w1", encoder_weights=str(tmp_path / "timm34.pth"))
    _check_same_features(reference, model)


def _save_classifier(tmp_path, variant, metadata=None):
    source = timm.create_model(variant.timm_name, num_classes=10)
    path = tmp_path / f"{variant.name}-imagenet.safetensors"
    save_file(source.state_dict(), path, metadata=metadata)
    return source, path


@pytest.mark.parametrize("transform", ["linear", "swish", "flip"])
def test_repeat_classifier_loads_into_the_segmenter_encoder(tmp_path, transform):
    variant = tiny("resnet18", 4, transform)
    source, path = _save_classifier(tmp_path, variant)
    model = repeatseg.build_segmenter(variant.name, encoder_weights=path)
    encoder_state = model.encoder.state_dict()
    for key, value in source.state_dict().items():
        if not key.startswith("fc."):
            assert torch.equal(encoder_state[key], value), key
    report = model.encoder_weights_report
    assert report.newly_initialised and all(k.startswith("adapters.") for k in report.newly_initialised)
    assert len(report.sha256) == 64


@pytest.mark.parametrize("in_channels", [1, 4])
def test_in_channels_adaptation_uses_the_loaded_stem(tmp_path, in_channels):
    variant = tiny("resnet18", 2, "flip")
    source, path = _save_classifier(tmp_path, variant)
    model = repeatseg.build_segmenter(variant.name, in_channels=in_channels, encoder_weights=path)
    stem, loaded = model.encoder.conv1.weight, source.conv1.weight
    assert stem.shape == (8, in_channels, 7, 7)
    if in_channels == 1:
        torch.testing.assert_close(stem[:, 0], loaded.sum(1))
    else:  # smp's rule: channel i copies channel i % 3, scaled by 3 / in_channels
        torch.testing.assert_close(stem, loaded[:, [0, 1, 2, 0]] * 3 / 4)
    assert model(torch.randn(2, in_channels, 64, 64)).shape == (2, 21, 64, 64)


def test_tag_resolves_in_weights_dir_and_environment(tmp_path, monkeypatch):
    variant = tiny("resnet18", 2, "swish")
    _, path = _save_classifier(tmp_path, variant)
    assert resolve_weights("imagenet", variant.name, tmp_path) == path
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path))
    model = repeatseg.build_segmenter(variant.name, encoder_weights="imagenet")
    assert model.encoder_weights_report.path == str(path)


def test_missing_tag_names_every_place_it_looked(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        repeatseg.build_segmenter(tiny().name, encoder_weights="imagenet", weights_dir=tmp_path)
    assert str(tmp_path / f"{tiny().name}-imagenet.safetensors") in str(error.value)
    assert ".pth" in str(error.value)


def test_tag_without_weights_dir_says_how_to_set_one(monkeypatch):
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    with pytest.raises(FileNotFoundError, match="REPEATSEG_WEIGHTS"):
        repeatseg.build_segmenter(tiny().name, encoder_weights="imagenet")


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.safetensors"):
        repeatseg.build_segmenter(tiny().name, encoder_weights=tmp_path / "nothere.safetensors")


def test_weights_of_another_encoder_are_refused(tmp_path):
    variant = tiny("resnet18", 2, "flip")
    _, path = _save_classifier(tmp_path, variant, metadata={"encoder": "dense_r18_w2"})
    with pytest.raises(ValueError, match="dense_r18_w2"):
        repeatseg.build_segmenter(variant.name, encoder_weights=path)


def test_shape_mismatch_lists_the_tensors(tmp_path):
    _, path = _save_classifier(tmp_path, tiny("resnet18", 2, "flip"))
    with pytest.raises(ValueError, match="layer1.0.conv1.transform.scores"):
        repeatseg.build_segmenter(tiny("resnet18", 4, "flip").name, encoder_weights=path)


def test_foreign_keys_fail_strict_and_load_when_not(tmp_path):
    variant = tiny("resnet18", 2, "linear")
    source = timm.create_model(variant.timm_name).state_dict()
    del source["layer4.1.bn2.weight"]
    source["extra.head"] = torch.zeros(3)
    save_file(source, tmp_path / "partial.safetensors")
    with pytest.raises(ValueError, match="MISSING: layer4.1.bn2.weight"):
        repeatseg.build_segmenter(variant.name, encoder_weights=tmp_path / "partial.safetensors")
    model = repeatseg.build_segmenter(variant.name, encoder_weights=tmp_path / "partial.safetensors", strict=False)
    assert model.encoder_weights_report.unexpected == ["extra.head"]


def test_pickled_objects_are_never_unpickled(tmp_path):
    torch.save({"weights": torch.zeros(1), "callback": _features}, tmp_path / "evil.pth")
    with pytest.raises(ValueError, match="weights-only"):
        repeatseg.build_segmenter(tiny().name, encoder_weights=tmp_path / "evil.pth")


def test_unknown_encoder_lists_valid_names():
    with pytest.raises(ValueError, match="Did you mean .*repeat_r18_f4.*Valid names: dense_r18_w1"):
        repeatseg.build_segmenter("repaet_r18_f4")
