import json
import math
from pathlib import Path

import pytest

import repeatseg
from repeatseg.accounting import STAT_KEYS

ROOT = Path(__file__).resolve().parents[1]

# ResNet-18 at base width 64, written out: stem + 4 stages, conv weights (BRIEF 2).
R18_STEM = 64 * 3 * 49
R18_CONV = {1: 11_166_912, 4: 178_103_488}
R18_BN_1X = 2 * (64 + 4 * 64 + 4 * 128 + 128 + 4 * 256 + 256 + 4 * 512 + 512)  # affine params


def test_dense_1x_encoder_is_torchvision_resnet18_without_fc():
    stats = repeatseg.describe("dense_r18_w1", input_size=224)
    assert stats.trainable_params == 11_689_512 - 512 * 1000 - 1000  # torchvision resnet18 minus fc
    assert stats.trainable_params == R18_CONV[1] + R18_BN_1X
    assert stats.stored_floats == stats.trainable_params + R18_BN_1X  # + running mean/var
    assert stats.mask_bits == 0 and stats.packed_bytes == stats.fp32_bytes == 4 * stats.stored_floats
    assert round(stats.macs / 1e9, 2) == 1.81  # the usual 1.8 GMACs of ResNet-18 at 224


def test_flip_4x_accounting_matches_closed_form():
    stats = repeatseg.describe("repeat_r18_f4")
    dense = repeatseg.describe("dense_r18_w4")
    children = R18_CONV[4] - R18_STEM
    parents = R18_CONV[1] + 64 * 64  # the widened layer1 downsample gets a 64x64 parent
    assert stats.mask_bits == children
    bn_and_adapters = dense.trainable_params - R18_CONV[4]
    assert stats.trainable_params == parents + children + bn_and_adapters
    assert stats.stored_floats == dense.stored_floats - R18_CONV[4] + parents
    # BRIEF 2: 42.6 MiB of parents + 21.2 MiB of bits, plus BN and adapters.
    assert round(4 * parents / 2**20, 1) == 42.6 and round(children / 8 / 2**20, 1) == 21.2
    assert stats.packed_bytes == 4 * stats.stored_floats + sum(
        math.ceil(bits / 8) for bits in _mask_bits_per_layer())
    assert stats.macs == dense.macs  # identical conv arithmetic
    assert stats.ratio_to_dense["packed_bytes"] == pytest.approx(stats.packed_bytes / dense.packed_bytes)
    assert stats.dense_twin == "dense_r18_w4"


def _mask_bits_per_layer():
    import timm
    import torch

    from repeatseg.layers import FlipRepeat

    with torch.device("meta"):
        model = timm.create_model("repeat_resnet18_f4")
    return [m.scores.numel() for m in model.modules() if isinstance(m, FlipRepeat)]


def test_swish_adds_two_scalars_per_tile():
    linear, swish = repeatseg.describe("repeat_r18_l2"), repeatseg.describe("repeat_r18_s2")
    # 20 repeated convs; layer1's first conv and its downsample tile 2x1, the other 18 tile 2x2.
    assert swish.trainable_params - linear.trainable_params == 2 * (2 * 2 + 18 * 4)


def test_segmenter_scope_adds_the_same_decoder_to_every_encoder():
    a = repeatseg.describe("repeat_r18_f4", segmenter=True)
    b = repeatseg.describe("dense_r18_w1", segmenter=True)
    decoder_a = a.trainable_params - repeatseg.describe("repeat_r18_f4").trainable_params
    decoder_b = b.trainable_params - repeatseg.describe("dense_r18_w1").trainable_params
    assert decoder_a == decoder_b > 0


# In this process (the cli fixture calls the tool's main); tests/test_tool_help.py runs every tool as a
# script. A fresh process costs an import of torch, timm and repeatseg: 8 s of the suite each here.
def test_model_info_json_for_all_encoders(cli):
    code, out, err = cli("--all", "--json", tool="model_info")
    assert code == 0, err
    rows = json.loads(out)
    assert {"repeat_r18_f4", "dense_r34_w8"} <= {r["name"] for r in rows}
    for row in rows:
        assert set(STAT_KEYS) | {"name"} <= set(row)
    f4 = next(r for r in rows if r["name"] == "repeat_r18_f4")
    assert f4 == repeatseg.describe("repeat_r18_f4").as_dict()


@pytest.mark.slow
def test_model_info_table_and_unknown_name(cli):
    code, out, _ = cli("--all", "--segmenter", "--input-size", "256", tool="model_info")
    assert code == 0 and "repeat_r34_f8" in out and "256x256" in out
    code, _, err = cli("--encoder", "repeat_r18_q4", tool="model_info")
    assert code == 2 and "Valid names" in err


def test_accounting_table_has_a_title_a_header_and_one_row_per_model():
    from repeatseg.accounting import accounting_table

    stats = [repeatseg.describe("dense_r18_w4"), repeatseg.describe("repeat_r18_f4")]
    lines = accounting_table(stats).splitlines()
    assert lines[0].startswith("encoder (backbone + skip adapters); MACs at 512x512")
    assert lines[1].split("|")[1].strip() == "name" and len(lines) == 3 + len(stats)
    f4 = lines[-1].split("|")
    assert f4[1].strip() == "repeat_r18_f4" and f4[-3].strip() == f"{stats[1].ratio_to_dense['packed_bytes']:.3f}x"
    with pytest.raises(ValueError, match="no models"):
        accounting_table([])
