"""The transforms of our own (issue 12): random_sign ``r`` and coarse_flip ``c``."""

from __future__ import annotations

import pytest
import torch

import repeatseg
from repeatseg.export import fold, load_packed, pack
from repeatseg.layers import CoarseFlipRepeat, RandomSignRepeat, RepeatConv2d
from repeatseg.segmenter import build_segmenter
from tests.tiny import tiny

N, M, K = 4, 3, 3


def test_random_sign_tile_ij_is_its_scale_times_fixed_signs_times_the_parent():
    torch.manual_seed(0)
    transform = RandomSignRepeat(2, 3, (N, M, K, K))
    with torch.no_grad():
        transform.scale.copy_(torch.randn(2, 3))
    parent = torch.randn(N, M, K, K)
    child = transform(parent)
    assert set(transform.signs.unique().tolist()) == {-1.0, 1.0}
    for i in range(2):
        for j in range(3):
            tile = child[i * N:(i + 1) * N, j * M:(j + 1) * M]
            signs = transform.signs[i * N:(i + 1) * N, j * M:(j + 1) * M]
            assert torch.allclose(tile, transform.scale[i, j] * signs * parent)


def test_random_signs_follow_the_seed_through_a_state_dict_and_are_not_stored():
    torch.manual_seed(0)
    first = RandomSignRepeat(2, 2, (N, M, K, K))
    torch.manual_seed(1)
    second = RandomSignRepeat(2, 2, (N, M, K, K))
    assert not torch.equal(first.signs, second.signs)
    assert set(first.state_dict()) == {"seed", "scale"}
    second.load_state_dict(first.state_dict())
    assert torch.equal(first.signs, second.signs)
    torch.manual_seed(0)
    assert torch.equal(RandomSignRepeat(2, 2, (N, M, K, K)).signs, first.signs)  # reproducible from torch's seed


def test_coarse_flip_flips_whole_filters_per_tile():
    transform = CoarseFlipRepeat(2, 3, (N, M, K, K), score_init=(-1.0, 1.0))
    parent = torch.randn(N, M, K, K)
    child = transform(parent)
    signs = torch.where(transform.scores >= 0, 1.0, -1.0)  # (tile_out, n, tile_in)
    for i in range(2):
        for j in range(3):
            tile = child[i * N:(i + 1) * N, j * M:(j + 1) * M]
            assert torch.equal(tile, signs[i, :, j].view(N, 1, 1, 1) * parent)
    assert CoarseFlipRepeat(2, 2, (N, M, K, K)).scores.min() >= 0  # default init: pure tiling


@pytest.mark.parametrize("transform", ["random_sign", "coarse_flip"])
def test_a_new_transform_works_as_an_smp_and_timm_model_and_folds_and_packs(transform, tmp_path):
    variant = tiny("resnet18", 2, transform)
    assert variant.name == f"repeat_r18_{'r' if transform == 'random_sign' else 'c'}2_b8"
    torch.manual_seed(0)
    model = build_segmenter(variant.name, classes=3).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        if transform == "coarse_flip":  # some signs flipped, so the check is not of pure tiling
            for layer in model.modules():
                if isinstance(layer, RepeatConv2d):
                    layer.transform.scores.uniform_(-1, 1)
        expected = model(x)
        assert torch.allclose(fold(model)(x), expected, atol=1e-5)
    path = tmp_path / "model.packed.safetensors"
    pack(model, path, {"encoder": variant.name, "classes": 3})
    assert path.stat().st_size - repeatseg.describe(variant.name, 32, segmenter=True, classes=3).packed_bytes < 60_000
    with torch.no_grad():
        loaded = load_packed(path)
        assert torch.allclose(loaded(x), expected, atol=1e-6)
    scores = [m.transform.scores for m in loaded.modules() if isinstance(m, RepeatConv2d) and transform == "coarse_flip"]
    assert all(s.abs().max() <= 1e-3 for s in scores)  # restored inside the straight-through window
    import timm

    assert timm.create_model(variant.timm_name, num_classes=5)(x).shape == (2, 5)


def test_accounting_of_the_new_transforms_against_closed_forms():
    dense = repeatseg.describe(tiny("resnet18", 4, None).name)
    flip = repeatseg.describe(tiny("resnet18", 4, "flip").name)
    coarse = repeatseg.describe(tiny("resnet18", 4, "coarse_flip").name)
    random_sign = repeatseg.describe(tiny("resnet18", 4, "random_sign").name)
    linear = repeatseg.describe(tiny("resnet18", 4, "linear").name)
    convs = _generating_shapes(tiny("resnet18", 4, "flip").name)
    # coarse: one bit per (child filter, input tile); flip: one per child weight
    assert flip.mask_bits == sum(o * i * k * k for o, i, k, _, _ in convs)
    assert coarse.mask_bits == sum(o * t_in for o, i, k, t_out, t_in in convs)
    # random signs store no bits, a (tile_out, tile_in) scale and an int64 seed per layer
    assert random_sign.mask_bits == 0
    scales = sum(t_out * t_in for _, _, _, t_out, t_in in convs)
    assert random_sign.stored_floats == linear.stored_floats + scales
    assert random_sign.packed_bytes == linear.packed_bytes + 4 * scales + 8 * len(convs)
    assert coarse.macs == flip.macs == dense.macs


def _generating_shapes(name: str) -> list[tuple[int, int, int, int, int]]:
    from segmentation_models_pytorch.encoders import get_encoder

    with torch.device("meta"):
        encoder = get_encoder(repeatseg.register(name).smp_key)
    return [(m.out_channels, m.in_channels, m.kernel_size[0], m.tile_out, m.tile_in)
            for m in encoder.modules() if isinstance(m, RepeatConv2d)]
