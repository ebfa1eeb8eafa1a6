"""Model folders (repeatseg.save_pretrained, tools/export_encoder.py) load in timm, smp and build_segmenter
with the same outputs as the model that was saved."""

import json

import pytest
import segmentation_models_pytorch as smp
import timm
import torch
from safetensors import safe_open
from tiny import tiny

import repeatseg
from repeatseg.outputs import OutputError

ENCODER = tiny("resnet18", 2, "flip")  # repeat_r18_f2_b8


def randomised_statistics(model):
    """BN running statistics away from (0, 1), so a lost buffer changes the eval output."""
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.fixture(scope="module")
def classifier():
    return randomised_statistics(timm.create_model(ENCODER.timm_name, num_classes=5))


def test_a_timm_model_folder_loads_with_timm_local_dir(classifier, tmp_path):
    folder = repeatseg.save_pretrained(classifier, tmp_path / "model")
    assert {p.name for p in folder.iterdir()} >= {"config.json", "model.safetensors", "README.md"}
    config = json.loads((folder / "config.json").read_text())
    assert (config["architecture"], config["num_classes"]) == (ENCODER.timm_name, 5)
    loaded = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(images), classifier(images))


def test_build_segmenter_starts_from_a_model_folder_without_the_head(classifier, tmp_path):
    folder = repeatseg.save_pretrained(classifier, tmp_path / "model")
    segmenter = repeatseg.build_segmenter(ENCODER.name, classes=3, encoder_weights=folder)
    report = segmenter.encoder_weights_report
    assert report.path == str(folder / "model.safetensors") and report.dropped == ["fc.bias", "fc.weight"]
    own = classifier.state_dict()
    for key, value in segmenter.encoder.state_dict().items():
        if key in own:
            assert torch.equal(value, own[key]), key
    with pytest.raises(ValueError, match="not of the requested encoder"):
        repeatseg.build_segmenter(tiny("resnet18", 2, "linear").name, encoder_weights=folder)


def test_a_segmenter_folder_loads_with_smp_from_pretrained_and_load_segmenter(tmp_path):
    segmenter = randomised_statistics(repeatseg.build_segmenter(ENCODER.name, classes=3, in_channels=1,
                                                                decoder_channels=[32, 16, 16, 8, 8]))
    folder = repeatseg.save_pretrained(segmenter, tmp_path / "seg", metadata={"metric": "mIoU", "metric_value": "0.5",
                                                                              "metric_images": "8"})
    images = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        expected = segmenter(images)
        assert torch.equal(smp.from_pretrained(str(folder)).eval()(images), expected)
        assert torch.equal(repeatseg.load_segmenter(folder)[0].eval()(images), expected)
    card = (folder / "README.md").read_text()
    assert "library_name: segmentation-models-pytorch" in card and "50.00 % on 8 images" in card


def test_a_model_folder_is_written_only_over_its_own_files(classifier, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="not empty"):
        repeatseg.save_pretrained(classifier, other)
    folder = repeatseg.save_pretrained(classifier, tmp_path / "model")
    with pytest.raises(OutputError, match="--force"):
        repeatseg.save_pretrained(classifier, folder)
    repeatseg.save_pretrained(classifier, folder, force=True)
    (folder / "extra.bin").write_bytes(b"x")
    with pytest.raises(OutputError, match="does not list"):
        repeatseg.save_pretrained(classifier, folder, force=True)


def test_export_encoder_writes_a_model_folder_with_its_card(cls_run, tmp_path, cli):
    folder = tmp_path / "exported"
    code, out, err = cli(cls_run, "--output", folder, tool="export_encoder")
    assert code == 0, err
    summary = json.loads((cls_run / "metrics.json").read_text())
    with safe_open(str(folder / "model.safetensors"), framework="pt") as handle:
        metadata = handle.metadata()
    card = (folder / "README.md").read_text()
    assert metadata["recipe"] in card and metadata["encoder"] == "repeat_r18_f2_b4"
    assert f"{100 * summary['best_top1']:.2f} % on {summary['val_images']} images" in card
    assert "packed bytes" in card and "MACs at" in card
    checkpoint = repeatseg.weights.read_checkpoint(cls_run / "checkpoints" / "best.safetensors")[0]
    original = randomised_statistics(timm.create_model("repeat_resnet18_f2_b4", num_classes=2))
    original.load_state_dict(checkpoint)
    loaded = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(images), original(images))
    code, _, err = cli(cls_run, "--output", tmp_path / "encoder.safetensors", tool="export_encoder")
    assert code == 0, err  # the one-file export the study hands on still works


def test_a_trained_segmenter_exports_as_a_folder_smp_loads(tmp_path, cli):
    from repeatseg.config import SegConfig, load_config
    from repeatseg.data.synthetic import make_synthetic_voc
    from repeatseg.engine.distributed import setup
    from repeatseg.engine.seg import train_segmentation

    data = tmp_path / "voc"
    make_synthetic_voc(data, num_train=8, num_val=2, seed=0, min_size=64, max_size=64, classes=(1, 7))
    run = tmp_path / "run"
    cfg = load_config(SegConfig, sets=[f"data.root={data}", "data.dataset=voc", f"model.encoder={ENCODER.name}",
                                       "data.crop_size=64", "data.workers=0", "train.batch_size=4", "train.device=cpu",
                                       "train.log_mode=quiet", "schedule.iters=2", "schedule.warmup_iters=0",
                                       f"output={run}"])
    train_segmentation(cfg, run, setup("cpu"))
    code, _, err = cli(run, "--output", tmp_path / "seg", tool="export_encoder")
    assert code == 0, err
    trained, _ = repeatseg.load_segmenter(run)
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(smp.from_pretrained(str(tmp_path / "seg")).eval()(images), trained.eval()(images))
    summary = json.loads((run / "metrics.json").read_text())
    card = (tmp_path / "seg" / "README.md").read_text()
    assert f"mIoU | {100 * summary['best_miou']:.2f} % on 2 images (val)" in card
    assert "none (random init)" in card
