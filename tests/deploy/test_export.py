"""Folding, packed storage, ONNX, and the A/B benchmark script."""

import json
from pathlib import Path

import pytest
import torch
from tiny import tiny

import repeatseg
from repeatseg.export import fold, load_packed, pack
from repeatseg.layers import FlipRepeat, RepeatConv2d, SwishRepeat
from tests.tool_loader import load_tool

ROOT = Path(__file__).resolve().parents[2]


def trained_like(name, classes=3):
    """A segmenter whose transforms are away from their initial values, in eval mode."""
    model = repeatseg.build_segmenter(name, classes=classes)
    for module in model.modules():
        if isinstance(module, FlipRepeat):
            torch.nn.init.uniform_(module.scores, -1, 1)
        elif isinstance(module, SwishRepeat):
            torch.nn.init.normal_(module.b1, 1.0, 0.5)
            torch.nn.init.normal_(module.b2, 0.0, 2.0)
        elif isinstance(module, torch.nn.BatchNorm2d):
            torch.nn.init.uniform_(module.running_var, 0.5, 2.0)
            torch.nn.init.normal_(module.running_mean, 0, 0.1)
    return model.eval()


@pytest.mark.parametrize("transform", ["linear", "swish", "flip"])
def test_fold_is_equivalent_and_loads_into_the_dense_twin(transform):
    variant = tiny("resnet18", 4, transform)
    model = trained_like(variant.name)
    x = torch.randn(2, 3, 64, 64)
    expected = model(x)
    folded = fold(model)
    assert not any(isinstance(m, RepeatConv2d) for m in folded.modules())
    torch.testing.assert_close(folded(x), expected, rtol=1e-5, atol=1e-6)
    dense = repeatseg.build_segmenter(variant.dense_twin.name, classes=3).eval()
    dense.load_state_dict(folded.state_dict())  # strict: identical names and shapes
    torch.testing.assert_close(dense(x), expected, rtol=1e-5, atol=1e-6)
    fused = fold(model, fuse_bn=True)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    # Fusion reassociates the arithmetic: compare relative to the output's scale.
    assert (fused(x) - expected).abs().max() <= 1e-4 * expected.abs().max()


@pytest.mark.parametrize("transform", [None, "swish", "flip"])
def test_pack_round_trip_gives_identical_outputs(tmp_path, transform):
    name = tiny("resnet34", 2, transform).name
    model = trained_like(name)
    pack(model, tmp_path / "m.safetensors", {"encoder": name, "classes": 3, "in_channels": 3})
    loaded = load_packed(tmp_path / "m.safetensors")
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(loaded(x), model(x))


def test_packed_file_holds_one_bit_per_child_weight_and_meets_the_closed_form(tmp_path):
    model = trained_like("repeat_r18_f2")  # full width: the safetensors header is negligible here
    path = tmp_path / "f2.safetensors"
    pack(model, path, {"encoder": "repeat_r18_f2", "classes": 3})
    stats = repeatseg.describe("repeat_r18_f2", segmenter=True, classes=3)
    from safetensors.torch import load_file

    stored = load_file(path)
    bits = {k: v for k, v in stored.items() if k.endswith(".signbits")}
    children = {m: mod.scores.numel() for m, mod in model.named_modules() if isinstance(mod, FlipRepeat)}
    assert len(bits) == len(children) == 20
    for name, count in children.items():
        assert bits[f"{name}.signbits"].numel() == (count + 7) // 8
    assert sum(children.values()) == stats.mask_bits
    size = path.stat().st_size
    assert stats.packed_bytes <= size <= 1.02 * stats.packed_bytes


def test_truncated_and_tampered_files_are_refused(tmp_path):
    name = tiny("resnet18", 2, "flip").name
    path = tmp_path / "m.safetensors"
    pack(trained_like(name), path, {"encoder": name, "classes": 3})
    data = path.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated"):
        load_packed(tmp_path / "cut.safetensors")
    flipped = bytearray(data)
    flipped[-10] ^= 0x01
    (tmp_path / "bad.safetensors").write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match="checksum"):
        load_packed(tmp_path / "bad.safetensors")


def test_onnx_round_trip(tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="the [onnx] extra is not installed")
    pytest.importorskip("onnxscript", reason="the [onnx] extra is not installed")
    from repeatseg.export import export_onnx

    model = trained_like(tiny("resnet18", 2, "flip").name)
    export_onnx(model, tmp_path / "m.onnx", input_size=64)
    x = torch.randn(1, 3, 64, 64)
    session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    out = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    torch.testing.assert_close(torch.from_numpy(out), model(x).detach(), rtol=1e-4, atol=1e-4)


_tool = load_tool


def test_bench_writes_every_field(tmp_path, capsys):
    bench = _tool("bench")
    args = bench.get_args_parser().parse_args([
        "--encoder", tiny("resnet18", 2, "flip").name, "--input-size", "64", "--batch", "2", "--device", "cpu",
        "--repeats", "2", "--steps", "1", "--warmup", "1", "--json", str(tmp_path / "bench.json")])
    assert bench.main(args) == 0
    result = json.loads((tmp_path / "bench.json").read_text())
    for key in ("train_step_ratio", "peak_memory_ratio", "infer_ratio", "folded_infer_ratio"):
        assert result[key] > 0
    assert result["dense"] == "dense_r18_w2_b8" and len(result["raw"]["train_step_s"]["candidate"]) == 2
    assert "train step" in capsys.readouterr().out


def test_export_tool_folds_and_packs_a_run(tmp_path, capsys):
    from repeatseg.engine.checkpoint import save_weights

    name = tiny("resnet18", 2, "flip").name
    model = trained_like(name)
    save_weights(tmp_path / "run/checkpoints/best.safetensors", model.state_dict(),
                 {"encoder": name, "classes": 3, "in_channels": 3, "options": {"gradient": "bireal"}})
    export = _tool("export")
    assert export.main(export.get_args_parser().parse_args(
        [str(tmp_path / "run"), "--fold", "--output", str(tmp_path / "folded.safetensors")])) == 0
    from safetensors.torch import load_file

    dense = repeatseg.build_segmenter("dense_r18_w2_b8", classes=3).eval()
    dense.load_state_dict(load_file(tmp_path / "folded.safetensors"))
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(dense(x), model(x))
    assert export.main(export.get_args_parser().parse_args(
        [str(tmp_path / "run"), "--pack", "--output", str(tmp_path / "packed.safetensors")])) == 0
    packed = load_packed(tmp_path / "packed.safetensors")
    assert torch.equal(packed(x), model(x))
    assert packed.encoder.layer1[0].conv1.transform.gradient == "bireal"  # the run's options go with the file
    assert "closed-form minimum" in capsys.readouterr().out


def test_a_smaller_decoder_is_recorded_and_rebuilt_by_every_loader(tmp_path):
    from repeatseg.engine.checkpoint import save_weights
    from repeatseg.segmenter import decoder_metadata

    name, decoder = tiny("resnet18", 2, "flip").name, (16, 16, 8, 8, 8)
    model = repeatseg.build_segmenter(name, classes=3, decoder_channels=decoder).eval()
    assert model.decoder.blocks[0].conv1[0].out_channels == 16
    save_weights(tmp_path / "run/checkpoints/best.safetensors", model.state_dict(),
                 {"encoder": name, "classes": 3, "decoder_channels": decoder_metadata(decoder)})
    loaded, _ = repeatseg.load_segmenter(tmp_path / "run")
    export = _tool("export")
    assert export.main(export.get_args_parser().parse_args(
        [str(tmp_path / "run"), "--pack", "--output", str(tmp_path / "packed.safetensors")])) == 0
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x), model(x))
        assert torch.equal(load_packed(tmp_path / "packed.safetensors")(x), model(x))
    small = repeatseg.describe(name, 32, segmenter=True, classes=3, decoder_channels=decoder)
    floats = sum(p.numel() for n, p in model.named_parameters() if not n.endswith("scores"))
    assert small.stored_floats == floats + sum(b.numel() for b in model.buffers() if b.is_floating_point())
    assert small.packed_bytes < repeatseg.describe(name, 32, segmenter=True, classes=3).packed_bytes
def flips(model):
    return [m for m in model.modules() if isinstance(m, FlipRepeat)]


def test_packed_bits_are_1_for_plus_one_and_say_so(tmp_path):
    from repeatseg.export import read_packed

    name = tiny("resnet18", 2, "flip").name
    model = trained_like(name)
    first = model.encoder.layer1[0].conv1
    with torch.no_grad():
        first.transform.scores.fill_(-0.5)  # every tile flips the parent's sign: the paper's M = 1 everywhere
        first.transform.scores[0, 0, 0, 0] = 0.0  # a zero score is sign +1
    meta = pack(model, tmp_path / "m.safetensors", {"encoder": name, "classes": 3})
    tensors, stored = read_packed(tmp_path / "m.safetensors")
    assert stored["signbits"] == meta["signbits"] and "flip mask M is the complement" in meta["signbits"]
    bits = tensors["encoder.layer1.0.conv1.transform.signbits"]
    assert bits[0].item() == 0b1000_0000 and bits[1:].eq(0).all()


@pytest.mark.parametrize("rule", ["clamp", "bireal"])
def test_a_loaded_packed_model_is_identical_and_can_be_fine_tuned(tmp_path, rule):
    name = tiny("resnet18", 2, "flip").name
    model = repeatseg.build_segmenter(name, classes=3, options={"gradient": rule})
    for flip in flips(model):
        torch.nn.init.uniform_(flip.scores, -2, 2)  # many scores outside the gradient window
    model.eval()
    pack(model, tmp_path / "m.safetensors", {"encoder": name, "classes": 3, "options": {"gradient": rule}})
    loaded = load_packed(tmp_path / "m.safetensors")
    x = torch.randn(2, 3, 64, 64)
    assert torch.equal(loaded(x), model(x))
    for original, restored in zip(flips(model), flips(loaded)):
        assert restored.gradient == rule
        assert torch.equal(restored.scores.abs(), torch.full_like(restored.scores, FlipRepeat.RESTORED_SCORE))
        assert torch.equal(restored.scores >= 0, original.scores >= 0)
    loaded.train()
    before = [flip.scores.detach().clone() for flip in flips(loaded)]
    optimizer = torch.optim.SGD([flip.scores for flip in flips(loaded)], lr=1.0)
    loaded(x).square().mean().backward()
    for flip in flips(loaded):
        assert flip.scores.grad.count_nonzero() > 0.5 * flip.scores.numel()  # inside the window: a gradient
    optimizer.step()
    changed = sum(int((flip.scores != b).sum()) for flip, b in zip(flips(loaded), before))
    assert changed > 0.5 * sum(b.numel() for b in before)
