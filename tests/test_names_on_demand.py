"""Any name of a family's grammar works in plain smp and timm after ``import repeatseg``, without
``repeatseg.register``: the name tables register it the first time they are asked for it."""

import segmentation_models_pytorch as smp
import timm
import torch

import repeatseg  # noqa: F401  (makes the tables resolve grammar names)
from repeatseg.registry import NamesOnDemand


def test_smp_builds_a_grammar_name_nobody_registered():
    assert "repeat_r18_f4_b12" not in dict.keys(smp.encoders.encoders)
    model = smp.FPN("repeat_r18_f4_b12", encoder_weights=None, classes=2).eval()
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 2, 64, 64)
    wider = smp.FPN("repeat_r18_f4", encoder_weights=None, classes=2)
    assert [c * 64 // 12 for c in model.encoder.out_channels[1:]] == wider.encoder.out_channels[1:]  # base 12, not 64


def test_timm_creates_a_grammar_name_nobody_registered():
    assert not dict.__contains__(timm.models._registry._model_entrypoints, "repeat_resnet18_c2_b12")
    model = timm.create_model("repeat_resnet18_c2_b12", num_classes=5).eval()
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 5)
    assert timm.is_model("repeat_resnet18_c2_b12")


def test_other_names_behave_as_in_a_plain_table():
    table = NamesOnDemand({"resnet18": 1}, "smp")
    assert "resnet18" in table and "efficientnet-b0" not in table and "repeat_resnet18_f4" not in table  # a timm name
    assert not timm.is_model("repeat_r18_f4")  # an smp name is not a timm name
    assert "nonsense" not in smp.encoders.encoders
