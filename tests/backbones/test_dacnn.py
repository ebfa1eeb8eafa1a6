import pytest
import timm
import torch
from segmentation_models_pytorch.encoders import get_encoder
from torch import nn

import repeatseg
from repeatseg.backbones.base import ARCH_LAYERS
from repeatseg.backbones.dacnn import DACNN, DacnnBlock


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # a shared tensor counts once


def cifar_count(model: nn.Module) -> int:
    """The count with the authors' CIFAR stem (3x3 conv instead of 7x7) for comparison with the paper."""
    width = model.conv1.out_channels
    return count(model) - width * 3 * (7 * 7 - 3 * 3)


# ../shared/FAMILIES.md section 2, read from the authors' figure (CIFAR-100, 100 classes, CIFAR stem).
@pytest.mark.parametrize("arch, mode, regulators, millions", [
    ("resnet34", "mix", False, 4.93), ("resnet34", "mix", True, 6.18), ("resnet18", "mix", False, 4.9),
    ("resnet18", "plain", False, 0.17),
])
def test_parameter_counts_match_the_paper(arch, mode, regulators, millions):
    with torch.device("meta"):
        model = DACNN(ARCH_LAYERS[arch], mode, regulators, num_classes=100)
    assert cifar_count(model) / 1e6 == pytest.approx(millions, rel=0.015)


def test_plain_shares_one_kernel_everywhere_with_a_module_per_stage():
    model = DACNN((2, 2, 2, 2), "plain", base_width=8, num_classes=0)
    convs = {id(block.conv1) for stage in (model.layer1, model.layer2, model.layer3, model.layer4)
             for block in stage if isinstance(block, DacnnBlock)}
    kernels = {id(getattr(model, f"layer{i}")[-1].conv2.weight) for i in range(1, 5)}
    assert len(convs) == 4 and len(kernels) == 1  # one Parameter, one module (geometry) per stage
    assert model.layer2[1].conv1 is model.layer2[2].conv2 and model.layer1[0].conv1.bias is None


def test_mix_has_a_kernel_per_stage_and_transitions_from_stage_two():
    model = DACNN((2, 2, 2, 2), "mix", base_width=8, num_classes=0)
    assert isinstance(model.layer2[0], nn.MaxPool2d)
    transition, block = model.layer2[1], model.layer2[2]
    assert transition.conv1 is not transition.conv2 and transition.shortcut is not None
    assert transition.conv2 is block.conv1 is block.conv2 and block.conv1.bias is not None
    assert model.layer1[0].conv1 is model.layer1[1].conv2 and model.layer1[0].shortcut is None
    assert model.layer3[1].conv2 is not model.layer2[1].conv2


def test_regulators_are_called():
    model = DACNN((2, 2, 2, 2), "mix", regulators=True, base_width=8, num_classes=3)
    model(torch.randn(2, 3, 64, 64)).sum().backward()
    regulators = [m.regulator for m in model.modules() if isinstance(m, DacnnBlock)]
    assert len(regulators) == 8 and all(r.weight.grad.abs().sum() > 0 for r in regulators)


def test_roll_option_is_the_authors_channel_swap():
    torch.manual_seed(0)
    rolled = DACNN((2, 2, 2, 2), "mix", base_width=8, num_classes=0)
    plain = DACNN((2, 2, 2, 2), "mix", base_width=8, num_classes=0, options={"roll": False})
    plain.load_state_dict(rolled.state_dict())
    x = torch.randn(1, 3, 64, 64)
    assert not torch.allclose(rolled.eval()(x), plain.eval()(x))
    block = rolled.layer1[0].eval()
    h = torch.randn(1, 8, 8, 8)
    inner = block.bn1(block.conv1(h)).relu()
    swap = lambda t: torch.cat([t[:, 1:], t[:, :1]], 1)  # the authors' swap(): channel 0 to the end
    expected = (swap(block.bn2(block.conv2(swap(inner)))) + swap(swap(h))).relu()
    torch.testing.assert_close(block(h), expected)


def test_plain_dilates_each_stage_on_its_own():
    encoder = get_encoder(repeatseg.register("dacnn_r18_plain_b8").smp_key, output_stride=8)
    assert encoder.layer1[0].conv1.dilation == (1, 1) and encoder.layer4[1].conv1.dilation == (4, 4)
    assert [f.shape[-1] for f in encoder(torch.randn(1, 3, 64, 64))[1:]] == [32, 16, 8, 8, 8]


def test_names():
    variant = repeatseg.get_variant("dacnn_r18_mix_reg_b16")
    assert (variant.mode, variant.regulators, variant.base_width) == ("mix", True, 16)
    assert variant.timm_name == "dacnn_resnet18_mix_reg_b16" and variant.reference.name == "dense_r18_w1_b16"
    assert timm.create_model("dacnn_resnet34_mix_reg", pretrained=False).num_classes == 1000
    with pytest.raises(ValueError, match="unknown repeatseg encoder"):
        repeatseg.get_variant("dacnn_r18_pain")
