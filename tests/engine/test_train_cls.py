"""Classification pretraining on the synthetic ImageFolder set, export, and hand-off to segmentation."""

import importlib.util
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny import run_killed_at_epoch

import repeatseg
from repeatseg.config import ClsConfig, load_config
from repeatseg.data import DataError
from repeatseg.data.imagenet import ImageFolderClassification
from repeatseg.data.synthetic import make_synthetic_imagenet
from repeatseg.engine import checkpoint as ckpt
from repeatseg.engine.cls import train_classification
from repeatseg.engine.distributed import setup
from repeatseg.weights import export_encoder

ROOT = Path(__file__).resolve().parents[2]
MODEL = "repeat_resnet18_f2_b8"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cls")
    make_synthetic_imagenet(root, num_classes=4, per_class=24, val_per_class=6, size=48)
    return root


def config(data_root, output, *sets):
    base = [f"data.root={data_root}", f"model.name={MODEL}", "model.num_classes=4", "data.image_size=48",
            "data.crop_pct=1.0", "data.scale=[0.5, 1.0]", "data.workers=0", "train.batch_size=16",
            "train.device=cpu", "train.log_mode=quiet", "train.eval_batch_size=24", "optim.lr=0.1",
            "optim.lr_base_batch=null", "schedule.epochs=3", "schedule.name=cosine", f"output={output}"]
    return load_config(ClsConfig, sets=[*base, *sets])


@pytest.fixture(scope="module")
def trained(data_root, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "cls"
    metrics = train_classification(config(data_root, run, "schedule.epochs=8"), run, setup("cpu"))
    return run, metrics


def test_tiny_pretraining_learns_above_chance(trained):
    run, metrics = trained
    assert metrics["top1"] > 0.6, metrics  # chance is 0.25
    assert metrics["top5"] == 1.0  # 4 classes
    files = {p.name for p in run.rglob("*") if p.is_file()}
    assert {"config.yaml", "metrics.jsonl", "metrics.json", "last.safetensors", "best.safetensors"} <= files


def test_resume_matches_uninterrupted_run(data_root, tmp_path):
    train_classification(config(data_root, tmp_path / "full"), tmp_path / "full", setup("cpu"))
    run_killed_at_epoch(lambda: train_classification(config(data_root, tmp_path / "cut"), tmp_path / "cut",
                                                     setup("cpu")), epoch=1)
    train_classification(load_config(ClsConfig, [tmp_path / "cut/config.yaml"]), tmp_path / "cut", setup("cpu"),
                         resume=True)
    full, resumed = (ckpt.load_weights(tmp_path / run / "checkpoints/last.safetensors") for run in ("full", "cut"))
    for key in full:
        assert torch.equal(full[key], resumed[key]), key


def test_a_data_worker_does_not_change_what_is_trained(data_root, tmp_path):
    """Every sample is augmented from its own seed, so loading in a worker process (or not) trains
    the same weights: the digits recipes load in the training process."""
    for workers in (0, 1):
        run = tmp_path / f"workers{workers}"
        train_classification(config(data_root, run, "schedule.epochs=1", f"data.workers={workers}"), run, setup("cpu"))
    first, second = (ckpt.load_weights(tmp_path / f"workers{w}" / "checkpoints/last.safetensors") for w in (0, 1))
    assert all(torch.equal(first[key], second[key]) for key in first)


def test_export_then_build_segmenter_has_the_trained_encoder(trained, tmp_path):
    run, _ = trained
    out = tmp_path / "weights" / "repeat_r18_f2_b8-imagenet.safetensors"
    metadata = export_encoder(run, out)
    assert metadata["encoder"] == "repeat_r18_f2_b8" and metadata["transform"] == "flip" and float(metadata["top1"]) > 0.6
    exported = load_file(out)
    assert not any(k.startswith("fc.") for k in exported)
    model = repeatseg.build_segmenter("repeat_r18_f2_b8", encoder_weights="imagenet", weights_dir=tmp_path / "weights")
    trained_state = ckpt.load_weights(run / "checkpoints/best.safetensors")
    encoder_state = model.encoder.state_dict()
    for key, value in trained_state.items():
        if not key.startswith("fc."):
            assert torch.equal(encoder_state[key], value), key
    assert model.encoder_weights_report.metadata["encoder"] == "repeat_r18_f2_b8"


def test_export_records_the_runs_recipe(trained, data_root, tmp_path):
    import json

    from repeatseg.recipe import recipe_of
    from repeatseg.weights import read_metadata

    run, _ = trained
    out = tmp_path / "enc.safetensors"
    export_encoder(run, out, which="last")
    stored = read_metadata(out)
    # the recipe of the config the run was given: the study computes it so, before the run
    expected = recipe_of(config(data_root, run, "schedule.epochs=8"))
    assert stored["recipe"] == expected.hash and json.loads(stored["recipe_config"]) == expected.config
    other_seed = recipe_of(config(data_root, tmp_path / "elsewhere", "schedule.epochs=8", "train.seed=5"))
    assert other_seed.hash == expected.hash
    assert recipe_of(config(data_root, run, "schedule.epochs=8", "optim.lr=0.2")).hash != expected.hash
    (run / "config.yaml").rename(run / "config.moved")  # a checkpoint without its run's config
    try:
        assert export_encoder(run, tmp_path / "bare.safetensors")["recipe"] == "unrecorded"
    finally:
        (run / "config.moved").rename(run / "config.yaml")


def test_mismatched_export_is_refused(trained, tmp_path):
    run, _ = trained
    out = tmp_path / "f2.safetensors"
    export_encoder(run, out)
    with pytest.raises(ValueError, match="holds weights of 'repeat_r18_f2_b8', not of the requested encoder 'repeat_r18_s2_b8'"):
        repeatseg.build_segmenter("repeat_r18_s2_b8", encoder_weights=out)


def test_segmentation_run_records_its_encoder_weights(trained, tmp_path):
    from repeatseg.config import SegConfig
    from repeatseg.data.synthetic import make_synthetic_voc
    from repeatseg.engine.seg import train_segmentation

    run, _ = trained
    weights = tmp_path / "enc.safetensors"
    export_encoder(run, weights)
    make_synthetic_voc(tmp_path / "voc", num_train=8, num_val=2, min_size=64, max_size=64)
    cfg = load_config(SegConfig, sets=[f"data.root={tmp_path / 'voc'}", "model.encoder=repeat_r18_f2_b8",
                                       f"model.encoder_weights={weights}", "data.crop_size=64", "data.workers=0",
                                       "train.batch_size=4", "train.device=cpu", "train.log_mode=quiet",
                                       "schedule.iters=1", "schedule.warmup_iters=0", f"output={tmp_path / 'seg'}"])
    train_segmentation(cfg, tmp_path / "seg", setup("cpu"))
    saved = load_config(SegConfig, [tmp_path / "seg/config.yaml"])
    record = saved.provenance["encoder_weights"]
    assert record["path"] == str(weights) and len(record["sha256"]) == 64
    assert record["metadata"]["model"] == "repeat_resnet18_f2_b8"


def test_flat_val_folder_is_explained_or_read_with_labels(data_root, tmp_path):
    flat = tmp_path / "flat"
    (flat / "val").mkdir(parents=True)
    (flat / "train").symlink_to(data_root / "train")
    lines = []
    for image in sorted((data_root / "val").rglob("*.JPEG")):
        (flat / "val" / image.name).symlink_to(image)
        lines.append(f"{image.name} {image.parent.name}")
    with pytest.raises(DataError, match="--val-labels FILE .* or restructure it as val/<wnid>/<image>.JPEG"):
        ImageFolderClassification(flat, "val")
    (tmp_path / "labels.txt").write_text("\n".join(lines) + "\n")
    classes = ImageFolderClassification(flat, "train").classes
    dataset = ImageFolderClassification(flat, "val", val_labels=tmp_path / "labels.txt", classes=classes)
    by_folder = ImageFolderClassification(data_root, "val", classes=classes)
    assert sorted(label for _, label in dataset.samples) == sorted(label for _, label in by_folder.samples)


def test_train_cls_cli_runs_and_reports(data_root, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("train_cls", ROOT / "tools" / "train_cls.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    args = tool.get_args_parser().parse_args([
        "--model", MODEL, "--num-classes", "4", "--data-root", str(data_root), "--output", str(tmp_path / "run"),
        "--iters", "2", "--batch-size", "8", "--workers", "0", "--device", "cpu", "--image-size", "48",
        "--log-mode", "plain"])
    assert tool.main(args) == 0
    assert "top-1" in capsys.readouterr().out
