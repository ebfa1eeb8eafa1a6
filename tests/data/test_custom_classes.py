"""VOC-layout datasets with their own class lists, end to end: reader, training, evaluation, metrics;
and classification taking its class count from the folders."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from repeatseg.config import ClsConfig, SegConfig, load_config
from repeatseg.data import DataError, VOCSegmentation, save_mask
from repeatseg.data.synthetic import make_synthetic_imagenet, make_synthetic_voc
from repeatseg.data.voc import write_class_names
from repeatseg.engine.cls import train_classification
from repeatseg.engine.distributed import setup
from repeatseg.engine.seg import train_segmentation
from tests.tool_loader import load_tool

ROOT = Path(__file__).resolve().parents[2]
NAMES = ("background", "ellipse", "rectangle", "triangle")


@pytest.fixture(scope="module")
def four_classes(tmp_path_factory):
    """A VOC-layout set whose masks hold 0..3 and 255, with its own classes.txt."""
    root = tmp_path_factory.mktemp("custom")
    voc = make_synthetic_voc(root, num_train=8, num_val=4, min_size=64, max_size=72, classes=(1, 2, 3))
    write_class_names(voc, NAMES)
    return root


def seg_config(root, output, *sets):
    base = [f"data.root={root}", "model.encoder=dense_r18_w1_b8", "data.crop_size=64", "data.workers=0",
            "train.batch_size=4", "train.device=cpu", "train.log_mode=quiet", "train.eval_batch_size=4",
            "schedule.iters=2", "schedule.warmup_iters=0", f"output={output}"]
    return load_config(SegConfig, sets=[*base, *sets])


_tool = load_tool


def test_training_and_evaluation_use_the_datasets_class_list(four_classes, tmp_path, capsys):
    run = tmp_path / "run"
    metrics = train_segmentation(seg_config(four_classes, run), run, setup("cpu"))
    assert list(metrics["per_class_iou"]) == list(NAMES)
    assert np.array(metrics["confusion_matrix"]).shape == (4, 4)
    saved = load_config(SegConfig, [run / "config.yaml"])
    assert saved.model.classes == 4 and saved.data.classes == list(NAMES)  # the run says what it trained on
    tool = _tool("eval_seg")
    predictions = tmp_path / "pred"
    args = tool.get_args_parser().parse_args(["--checkpoint", str(run), "--save-predictions", str(predictions),
                                              "--workers", "0", "--device", "cpu"])
    assert tool.main(args) == 0
    assert "rectangle" in capsys.readouterr().out
    with Image.open(next(predictions.glob("*.png"))) as image:
        assert image.mode == "P" and set(np.unique(np.array(image)).tolist()) <= {0, 1, 2, 3}


def test_a_config_class_list_overrides_the_file(four_classes, tmp_path):
    names = ["bg", "a", "b", "c", "unused"]
    run = tmp_path / "run"
    metrics = train_segmentation(seg_config(four_classes, run, f"data.classes={names}"), run, setup("cpu"))
    assert list(metrics["per_class_iou"]) == names


def test_a_model_class_count_that_disagrees_with_the_list_is_refused(four_classes, tmp_path):
    with pytest.raises(ValueError, match="model.classes is 21 but the dataset has 4 classes"):
        train_segmentation(seg_config(four_classes, tmp_path / "run", "model.classes=21"), tmp_path / "run",
                           setup("cpu"))


def test_mask_values_outside_the_list_are_refused_with_the_file_named(four_classes, tmp_path):
    dataset = VOCSegmentation(four_classes, "train")
    _, mask_path = dataset.paths(0)
    bad = tmp_path / "copy"
    voc = bad / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True)
    sample_id = dataset.ids[0]
    (voc / "JPEGImages" / f"{sample_id}.jpg").write_bytes((dataset.image_dir / f"{sample_id}.jpg").read_bytes())
    mask = np.array(Image.open(mask_path))
    mask[0, 0] = 4  # a fifth class the list does not name
    save_mask(mask, voc / "SegmentationClass" / f"{sample_id}.png")
    (voc / "ImageSets/Segmentation/train.txt").write_text(f"{sample_id}\n")
    write_class_names(voc, NAMES)
    with pytest.raises(DataError, match=rf"{sample_id}\.png holds values \[4\] outside 0..3 and 255"):
        VOCSegmentation(bad, "train").load(0)


def test_metrics_name_any_class_list_and_refuse_a_wrong_length():
    import torch

    from repeatseg.metrics import SegmentationMetrics

    metrics = SegmentationMetrics(4, class_names=NAMES)
    metrics.update(torch.tensor([[[0, 1], [2, 3]]]), torch.tensor([[[0, 1], [2, 255]]]))
    assert list(metrics.compute()["per_class_iou"]) == list(NAMES)
    with pytest.raises(ValueError, match="3 class names for 4 classes"):
        SegmentationMetrics(4, class_names=NAMES[:3])


def test_classification_takes_its_class_count_from_the_folders(tmp_path):
    make_synthetic_imagenet(tmp_path / "data", num_classes=4, per_class=4, val_per_class=2, size=32)
    sets = [f"data.root={tmp_path / 'data'}", "model.name=dense_resnet18_w1_b8", "data.image_size=32",
            "data.crop_pct=1.0", "data.workers=0", "train.batch_size=8", "train.device=cpu", "train.log_mode=quiet",
            "optim.lr_base_batch=null", "schedule.epochs=1", "schedule.name=cosine"]
    cfg = load_config(ClsConfig, sets=[*sets, f"output={tmp_path / 'run'}"])
    assert cfg.model.num_classes is None
    train_classification(cfg, tmp_path / "run", setup("cpu"))
    assert load_config(ClsConfig, [tmp_path / "run/config.yaml"]).model.num_classes == 4
    assert json.loads((tmp_path / "run/metrics.json").read_text())["top1"] >= 0
    wrong = load_config(ClsConfig, sets=[*sets, "model.num_classes=1000", f"output={tmp_path / 'other'}"])
    with pytest.raises(ValueError, match="has 4 class folders but model.num_classes is 1000: remove"):
        train_classification(wrong, tmp_path / "other", setup("cpu"))
