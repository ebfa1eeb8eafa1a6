"""A pretraining recipe's hash ignores what legitimately differs between a study's encoders and
nothing else."""

import json

import pytest

from repeatseg.config import ClsConfig, load_config
from repeatseg.recipe import recipe_of

BASE = ["model.name=repeat_resnet18_f4", "train.seed=0", "output=runs/a", "data.root=/data/imagenet"]


def recipe(*sets: str) -> str:
    return recipe_of(load_config(ClsConfig, ["configs/cls/imagenet_r18.yaml"], sets=[*BASE, *sets])).hash


@pytest.mark.parametrize("change", ["model.name=dense_resnet18_w4", "train.seed=3", "output=runs/b",
                                    "data.root=/mnt/other", "data.workers=2", "train.device=cuda:1",
                                    "model.num_classes=null", "train.log_mode=quiet", "train.log_every=7",
                                    "provenance.note=x"])
def test_fields_that_differ_between_encoders_of_one_study_do_not_change_it(change):
    assert recipe(change) == recipe()


@pytest.mark.parametrize("change", ["optim.lr=0.2", "optim.weight_decay=1e-3", "optim.no_decay=[]",
                                    "optim.clip_grad_norm=1.0", "train.amp=fp16", "train.batch_size=128",
                                    "model.options.gradient=bireal", "data.affine.degrees=20", "schedule.epochs=30"])
def test_every_training_choice_changes_it(change):
    assert recipe(change) != recipe()


def test_the_hashed_mapping_is_the_config_without_the_ignored_fields():
    cfg = load_config(ClsConfig, ["configs/cls/imagenet_r18_authors.yaml"])
    result = recipe_of(cfg)
    assert len(result.hash) == 12 and int(result.hash, 16) >= 0
    assert result.config["optim"]["lr_base_batch"] == 128 and "seed" not in result.config["train"]
    assert "output" not in result.config and "provenance" not in result.config and "name" not in result.config["model"]
    assert json.loads(result.metadata()["recipe_config"]) == result.config
