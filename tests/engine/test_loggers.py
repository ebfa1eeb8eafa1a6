"""TensorBoard beside metrics.jsonl: the same numbers, prediction images, and one curve across a resume."""

import argparse
import json

import numpy as np
import pytest
from _common import add_common_arguments
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from repeatseg.cli import flag_overrides
from repeatseg.config import ClsConfig, ConfigError, SegConfig, fixed_values, load_config
from repeatseg.data.synthetic import make_synthetic_voc
from repeatseg.engine.distributed import setup
from repeatseg.engine.loggers import scalars
from repeatseg.engine.seg import train_segmentation
from repeatseg.engine.trainer import Trainer
from repeatseg.recipe import recipe_of

CLASSES = (1, 7, 13)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    make_synthetic_voc(root, num_train=16, num_val=4, seed=0, min_size=64, max_size=80, classes=CLASSES)
    return root


def config(data_root, output, *sets):
    base = [f"data.root={data_root}", "data.dataset=voc", "model.encoder=repeat_r18_f2_b8", "data.crop_size=64",
            "data.workers=0", "train.batch_size=8", "train.device=cpu", "train.log_mode=quiet", "train.log_every=1",
            "train.eval_batch_size=4", "optim.lr=0.05", "schedule.epochs=3", "schedule.warmup_iters=0",
            "train.eval_every=1", "train.loggers=[jsonl, tensorboard]", f"output={output}"]
    return load_config(SegConfig, sets=[*base, *sets])


def events(run):
    accumulator = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    accumulator.Reload()
    return accumulator


def jsonl(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def killed_while_saving_epoch(monkeypatch, epoch):
    """Trainer.save raises KeyboardInterrupt after epoch ``epoch`` was trained, evaluated and logged."""
    original = Trainer.save

    def save(self, best):
        if self.progress.epoch == epoch:
            raise KeyboardInterrupt
        return original(self, best)

    monkeypatch.setattr(Trainer, "save", save)


def test_scalars_hold_every_number_of_a_record():
    train = {"epoch": 1, "step": 40, "loss": 0.5, "lr": 1e-3, "images_per_s": 12.0, "regularization": 0.1,
             "flag": True, "note": "x"}
    assert scalars(train) == {"train/loss": 0.5, "train/lr": 1e-3, "train/images_per_s": 12.0,
                              "train/regularization": 0.1}
    val = {"epoch": 1, "step": 40, "val": {"miou": 0.4, "per_class_iou": {"background": 0.9, "cat": None}}}
    assert scalars(val) == {"val/miou": 0.4, "val/per_class_iou/background": 0.9}


def test_logger_flag_adds_tensorboard_to_jsonl_and_is_free_on_resume():
    parser = argparse.ArgumentParser()
    add_common_arguments(parser)
    args = parser.parse_args(["--logger", "tensorboard", "--logger", "tensorboard"])
    cfg = load_config(SegConfig, overrides=flag_overrides(args, {}))
    assert cfg.train.loggers == ["jsonl", "tensorboard"]
    assert "train.loggers" not in fixed_values(cfg)  # a resume may switch TensorBoard on or off
    with pytest.raises(ConfigError, match="train.loggers"):
        load_config(SegConfig, sets=["train.loggers=[wandb]"])


def test_loggers_do_not_change_the_pretraining_recipe():
    plain = load_config(ClsConfig)
    logged = load_config(ClsConfig, sets=["train.loggers=[jsonl, tensorboard]"])
    assert recipe_of(plain).hash == recipe_of(logged).hash


def test_tensorboard_holds_what_metrics_jsonl_holds_and_resume_purges_the_killed_steps(data_root, tmp_path,
                                                                                       monkeypatch):
    run = tmp_path / "run"
    killed_while_saving_epoch(monkeypatch, epoch=2)
    with pytest.raises(KeyboardInterrupt):
        train_segmentation(config(data_root, run), run, setup("cpu"))
    killed = events(run)
    assert max(event.step for event in killed.Scalars("train/loss")) == 4  # epoch 2 was logged, not checkpointed
    monkeypatch.undo()
    train_segmentation(load_config(SegConfig, [run / "config.yaml"]), run, setup("cpu"), resume=True)

    records = jsonl(run)
    train_records = [r for r in records if "loss" in r]
    val_records = [r for r in records if "val" in r]
    assert [r["step"] for r in train_records] == [1, 2, 3, 4, 5, 6]
    logged = events(run)
    tags = logged.Tags()
    for tag in tags["scalars"]:
        steps = [event.step for event in logged.Scalars(tag)]
        assert steps == sorted(set(steps)), f"{tag} has duplicated or unordered steps: {steps}"
    for key in ("loss", "lr", "images_per_s", "data_wait_share"):
        curve = logged.Scalars(f"train/{key}")
        assert [e.step for e in curve] == [r["step"] for r in train_records]
        assert np.allclose([e.value for e in curve], [r[key] for r in train_records], rtol=1e-6)
    per_class = {name: value for name, value in val_records[-1]["val"]["per_class_iou"].items() if value is not None}
    assert per_class  # classes absent from the split have no IoU (null), and no curve
    for name, value in per_class.items():
        assert logged.Scalars(f"val/per_class_iou/{name}")[-1].value == pytest.approx(value, rel=1e-6)
    assert [e.step for e in logged.Scalars("val/miou")] == [r["step"] for r in val_records] == [2, 4, 6]
    images = logged.Images("val/predictions")
    assert [image.step for image in images] == [2, 4, 6]
    assert images[-1].width > images[-1].height / 4 * 2  # a row per image: image | truth | prediction
