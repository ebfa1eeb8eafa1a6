"""Sharing diagnostics: whether a transform's learnable part left its initial state."""

import torch

from repeatseg.layers import RepeatConv2d, sharing_diagnostics


def conv(transform, **options):
    torch.manual_seed(0)
    return RepeatConv2d(8, 8, 3, tile_in=2, tile_out=2, transform=transform, **options)


def test_a_fresh_flip_layer_is_pure_tiling_and_moves_when_scores_turn_negative():
    layer = conv("flip")
    assert sharing_diagnostics(layer)["moved"]["mean"] == 0.0
    with torch.no_grad():
        layer.transform.scores.view(-1)[:9].fill_(-1.0)
    moved = sharing_diagnostics(layer)["moved"]
    assert moved["n"] == layer.transform.scores.numel()
    assert moved["mean"] == 9 / moved["n"]


def test_swish_reports_the_spread_of_its_pairs_and_which_moved():
    layer = conv("swish")
    first = sharing_diagnostics(layer)
    assert first["b1"]["std"] == 0.0 and first["b1"]["mean"] == 2.0 and first["moved"]["mean"] == 0.0
    with torch.no_grad():
        layer.transform.b2[0, 0] = 0.5
    after = sharing_diagnostics(layer)
    assert after["b2"]["std"] > 0 and after["moved"]["mean"] == 1 / layer.transform.b1.numel()


def test_random_signs_report_their_scales_and_linear_has_nothing_to_move():
    layer = conv("random_sign")
    assert sharing_diagnostics(layer)["moved"]["mean"] == 0.0
    with torch.no_grad():
        layer.transform.scale.mul_(1.5)
    assert sharing_diagnostics(layer)["moved"]["mean"] == 1.0
    assert sharing_diagnostics(conv("linear")) == {}


def test_a_plain_model_has_no_diagnostics():
    assert sharing_diagnostics(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3))) == {}
