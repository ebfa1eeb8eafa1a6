import pytest
import segmentation_models_pytorch as smp
import torch
from safetensors.torch import load_file, save_file
from tiny import tiny

import repeatseg


def test_build_segmenter_is_smp_unet_with_the_fixed_decoder():
    model = repeatseg.build_segmenter(tiny("resnet18", 2, "flip").name, classes=5)
    assert isinstance(model, smp.Unet)
    assert len(model.decoder.blocks) == 5
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 5, 64, 64)


@pytest.mark.parametrize("transform", [None, "linear", "swish", "flip"])
def test_every_segmenter_parameter_receives_a_gradient(transform):
    model = repeatseg.build_segmenter(tiny("resnet18", 2, transform).name, classes=3)
    target = torch.randint(0, 3, (2, 64, 64))
    torch.nn.functional.cross_entropy(model(torch.randn(2, 3, 64, 64)), target).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_segmenter_state_dict_round_trip(tmp_path):
    name = tiny("resnet34", 2, "flip").name
    model = repeatseg.build_segmenter(name, classes=4)
    for module in model.modules():
        if isinstance(module, repeatseg.layers.FlipRepeat):
            torch.nn.init.uniform_(module.scores, -1, 1)
    model.eval()
    save_file(model.state_dict(), tmp_path / "seg.safetensors")
    rebuilt = repeatseg.build_segmenter(name, classes=4)
    rebuilt.load_state_dict(load_file(tmp_path / "seg.safetensors"))
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(rebuilt.eval()(x), model(x))
