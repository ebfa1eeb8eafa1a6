"""The rotated-digits CNNs of Table 4: exact sizes and MACs (../shared/EQUIVARIANCE.md), rotation
invariance of the RE-CNNs, folding, checkpoints, training, and the optional e2cnn extra."""

import json
import subprocess
import sys

import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn

import repeatseg
from repeatseg.accounting import count_macs, count_storage
from repeatseg.backbones.rotcnn import FLOP_MATCHED_WIDTHS, ROT_VARIANTS, VANILLA_WIDTHS
from repeatseg.classifiers import CLASSIFIERS, describe_classifier, folded_conv_weights
from repeatseg.layers import RepeatConv2d

# Measured with e2cnn 0.2.3 (EQUIVARIANCE.md section 2): parameters, MACs at 29x29 of the exported
# model, plain conv weights after export, basis coefficients per block.
RECNN = {
    "rotcnn_c4": (304_154, 228_217_536, 2_716_736, [288, 16896, 33792, 45056, 67584, 135168]),
    "rotcnn_c8": (305_098, 456_501_720, 5_474_712, [198, 16456, 34408, 46552, 68816, 134640]),
    "rotcnn_c16": (301_746, 908_933_888, 10_860_672, [144, 16896, 33792, 45056, 67584, 135168]),
}
AUTHORS_S_PARAMS = {"rotcnn_s_c4": 352_987, "rotcnn_s_c8": 360_963, "rotcnn_s_c16": 372_179}


@pytest.fixture(scope="module")
def recnn():
    """The three RE-CNNs, built once (e2cnn samples their bases: seconds each)."""
    pytest.importorskip("e2cnn")
    torch.manual_seed(0)
    return {name: timm.create_model(name) for name in RECNN}


def randomise_batch_norms(model: nn.Module) -> nn.Module:
    """Random affine parameters and running statistics (per field in e2cnn's batch norms), eval mode."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._NormBase):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.05, 0.5)
                module.weight.uniform_(-2.0, 2.0)
                module.bias.uniform_(-0.3, 0.3)
    return model.eval()


def digits(count: int = 4, size: int = 28) -> torch.Tensor:
    from repeatseg.data.digits import load_mnist_5k

    images, _ = load_mnist_5k()
    x = torch.from_numpy(images[:count]).float().div(255).unsqueeze(1)
    return F.pad(x, (0, size - 28, 0, size - 28))


def rotation_error(model: nn.Module, x: torch.Tensor, quarter_turns: int) -> float:
    """max |f(rot x) - f(x)| / max |f(x)|."""
    with torch.no_grad():
        logits = model(x)
        rotated = model(torch.rot90(x, quarter_turns, (2, 3)))
    return float((rotated - logits).abs().max() / logits.abs().max())


# ------------------------------------------------------------------------------ sizes and MACs

def test_vanilla_cnn_has_the_authors_widths_parameters_and_macs():
    stats = describe_classifier("rotcnn_vanilla")
    assert (stats.trainable_params, stats.macs, stats.input_size) == (340_309, 27_976_400, 29)
    model = timm.create_model("rotcnn_vanilla")
    assert [block[0].out_channels for block in model.blocks] == list(VANILLA_WIDTHS)
    assert repeatseg.describe("rotcnn_vanilla", 29).as_dict() == stats.as_dict()


@pytest.mark.parametrize("name", list(RECNN))
def test_recnn_parameters_macs_and_bases_are_the_measured_ones(recnn, name):
    params, macs, conv_weights, bases = RECNN[name]
    model = recnn[name]
    assert count_storage(model)["trainable_params"] == params
    assert [block.conv.weights.numel() for block in model.blocks] == bases
    assert count_macs(repeatseg.fold(model), 29, in_channels=1) == macs
    assert folded_conv_weights(model) == conv_weights


@pytest.mark.parametrize("group", [4, 8, 16])
def test_s_repeatnet_has_its_recnns_macs_and_the_vanilla_cnns_parents(group):
    name = f"rotcnn_s_c{group}"
    stats = describe_classifier(name)
    assert stats.macs == pytest.approx(RECNN[f"rotcnn_c{group}"][1], rel=0.01)
    model = timm.create_model(name)
    vanilla = timm.create_model("rotcnn_vanilla")
    convs = [block[0] for block in model.blocks]
    assert all(isinstance(conv, RepeatConv2d) for conv in convs)
    assert [tuple(c.parent.shape) for c in convs] == [tuple(b[0].weight.shape) for b in vanilla.blocks]
    assert [c.out_channels for c in convs] == list(FLOP_MATCHED_WIDTHS[group])
    authors = timm.create_model(name, partial_tiles="authors")
    assert count_storage(authors)["trainable_params"] == AUTHORS_S_PARAMS[name]
    assert count_storage(model)["trainable_params"] > AUTHORS_S_PARAMS[name]  # ceil tiles: more s scalars


def test_dense_flop_matched_control_has_the_s_repeatnets_macs():
    dense, repeat = describe_classifier("rotcnn_dense_c4"), describe_classifier("rotcnn_s_c4")
    assert dense.macs == repeat.macs
    assert dense.trainable_params > 7 * repeat.trainable_params


# ------------------------------------------------------------------------------ equivariance

@pytest.mark.parametrize("name", list(RECNN))
def test_recnn_logits_are_invariant_to_quarter_turns_at_28_pixels(recnn, name):
    torch.manual_seed(1)
    model = randomise_batch_norms(recnn[name])
    x = digits()
    for quarter_turns in (1, 2, 3):
        assert rotation_error(model, x, quarter_turns) < 1e-4


def test_vanilla_cnn_is_clearly_not_invariant():
    model = randomise_batch_norms(timm.create_model("rotcnn_vanilla"))
    x = digits()
    assert min(rotation_error(model, x, k) for k in (1, 2, 3)) > 1e-2


# ------------------------------------------------------------------------------ fold, state, features

def test_folded_recnn_is_plain_convs_with_the_e2cnn_models_outputs(recnn):
    model = randomise_batch_norms(recnn["rotcnn_c8"])
    folded = repeatseg.fold(model)
    kinds = {type(m) for m in folded.modules()}
    assert not any(t.__module__.startswith("e2cnn") for t in kinds)
    assert nn.Conv2d in kinds and nn.BatchNorm2d in kinds
    x = torch.rand(3, 1, 29, 29)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-5)


def test_recnn_checkpoint_from_either_mode_loads_into_a_fresh_model(recnn):
    model = randomise_batch_norms(recnn["rotcnn_c4"])
    x = torch.rand(2, 1, 29, 29)
    with torch.no_grad():
        expected = model(x)
    eval_state = {k: v.clone() for k, v in model.state_dict().items()}
    train_state = model.train().state_dict()
    model.eval()
    assert set(eval_state) == set(train_state)
    blocks = [k for k in eval_state if k.startswith("block")]
    assert blocks and all(".conv.weights" in k or ".batch_norm_" in k for k in blocks)  # no bases, no cached filters
    fresh = timm.create_model("rotcnn_c4")
    fresh.load_state_dict(eval_state)
    with torch.no_grad():
        torch.testing.assert_close(fresh.eval()(x), expected)


@pytest.mark.parametrize("name", ["rotcnn_vanilla", "rotcnn_s_c4"])
def test_features_only_gives_the_four_feature_maps(name):
    features = timm.create_model(name, features_only=True)
    maps = features(torch.rand(2, 1, 29, 29))
    assert [m.shape[-1] for m in maps] == [25, 12, 6, 2]
    assert [m.shape[1] for m in maps] == features.feature_info.channels()


def test_model_options_are_checked_per_model():
    with pytest.raises(ValueError, match="partial_tiles"):
        timm.create_model("rotcnn_vanilla", partial_tiles="authors")
    with pytest.raises(ValueError, match="round"):
        timm.create_model("rotcnn_s_c4", partial_tiles="round")


def test_every_family_model_is_a_timm_model_and_described():
    assert set(CLASSIFIERS) == set(ROT_VARIANTS)
    assert all(timm.is_model(name) for name in CLASSIFIERS)
    assert ROT_VARIANTS["rotcnn_s_c8"].contrast == (ROT_VARIANTS["rotcnn_c8"], ROT_VARIANTS["rotcnn_vanilla"])
    assert ROT_VARIANTS["rotcnn_s_c8"].paper_rel_contribution == pytest.approx(0.4286, abs=1e-4)


# ------------------------------------------------------------------------------ training

def _loss_falls(model: nn.Module, steps: int = 6) -> tuple[float, float]:
    torch.manual_seed(0)
    x, y = digits(8, 29), torch.arange(8) % 10
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    losses = []
    for _ in range(steps):
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses[0], losses[-1]


@pytest.mark.parametrize("name", ["rotcnn_vanilla", "rotcnn_s_c4", "rotcnn_dense_c4"])
def test_training_lowers_the_loss_of_every_plain_kind(name):
    first, last = _loss_falls(timm.create_model(name))
    assert last < first


def test_training_lowers_the_loss_of_a_recnn(recnn):
    model = recnn["rotcnn_c4"]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    first, last = _loss_falls(model)
    model.load_state_dict(state)  # the module-scoped model is shared
    assert last < first


# ------------------------------------------------------------------------------ the optional extra

def test_repeatseg_imports_without_e2cnn_and_names_the_extra_when_building():
    code = (
        "import sys; sys.modules['e2cnn'] = None\n"
        "import repeatseg, timm\n"
        "try:\n    timm.create_model('rotcnn_c4')\n"
        "except ImportError as error:\n    print(error)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "pip install 'repeatseg[equivariant]'" in result.stdout


# ------------------------------------------------------------------------------ tools

def test_model_info_describes_a_classifier_at_its_own_input_size(cli):
    code, out, _ = cli("--encoder", "rotcnn_s_c4", "--json", tool="model_info")
    stats = json.loads(out)[0]
    assert code == 0 and (stats["scope"], stats["input_size"], stats["dense_twin"]) == ("classifier", 29, "rotcnn_vanilla")
    code, _, err = cli("--encoder", "rotcnn_s_c4", "--segmenter", tool="model_info")
    assert code == 2 and "not smp encoders" in err


def test_bench_times_a_classifier_against_its_reference(tmp_path, monkeypatch, capsys):
    from tests.tool_loader import load_tool

    bench = load_tool("bench")
    # The CPU memory probe in its own fresh process, as bench runs it (in this worker's process freed heap
    # is reused and the growth can read 0); the bench below skips the probes.
    probe = bench.get_args_parser().parse_args(["--encoder", "rotcnn_vanilla", "--batch", "2", "--warmup", "1",
                                                "--input-size", "29", "--device", "cpu"])
    assert bench.make_bench(probe, torch.device("cpu"), "rotcnn_vanilla").peak_memory(["rotcnn_vanilla"])["rotcnn_vanilla"] > 0
    monkeypatch.setattr(bench.Bench, "peak_memory", lambda self, names: {name: 1 for name in names})
    result = tmp_path / "bench.json"
    args = ["--encoder", "rotcnn_s_c4", "--batch", "2", "--device", "cpu", "--repeats", "1", "--steps", "1",
            "--warmup", "1", "--json", str(result)]
    assert bench.main(bench.get_args_parser().parse_args(args)) == 0
    measured = json.loads(result.read_text())
    assert (measured["dense"], measured["input_size"]) == ("rotcnn_vanilla", 29)
    assert measured["generation_share"] > 0 and measured["folded_infer_s"]["candidate"] > 0
    mixed = ["--encoder", "rotcnn_s_c4", "--against", "dense_r18_w4", "--device", "cpu"]
    assert bench.main(bench.get_args_parser().parse_args(mixed)) == 2
    assert "classification-only" in capsys.readouterr().err
