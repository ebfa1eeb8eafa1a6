"""The three ImageNet recipes load and resolve to what their comments and docs/imagenet.md claim: the
paper's text, the authors' code and repeatseg's default (docs/imagenet.md, "Three ImageNet recipes")."""

from pathlib import Path

import pytest
from tiny import tiny
from torchvision.transforms import RandomAffine

from repeatseg.config import ClsConfig, load_config
from repeatseg.data.imagenet import classification_transforms
from repeatseg.engine.cls import build_classifier
from repeatseg.engine.optim import build_optimizer
from repeatseg.layers import RepeatConv2d

CONFIGS = Path(__file__).parents[1] / "configs" / "cls"
AUTHORS_AFFINE = {"degrees": 20, "scale": [0.8, 1.2], "shear": 20}
ALL_DECAYED: list = []
EXEMPT = ["norm", "bias", "scores", "transform"]

# file: (lr, lr_base_batch, batch, weight decay, no_decay, affine, clip, amp, model options)
RECIPES = {
    "imagenet_r18_paper.yaml": (0.1, 256, 256, 1e-3, ALL_DECAYED, {}, None, "auto", {"gradient": "bireal"}),
    "imagenet_r18_authors.yaml": (0.1, 128, 128, 1e-4, ALL_DECAYED, AUTHORS_AFFINE, 1.0, "fp16",
                                  {"gradient": "clamp", "score_init": [0.0, 0.001], "swish_init": "xavier",
                                   "parent_init": "xavier"}),
    "imagenet_r18.yaml": (0.1, 256, 256, 1e-4, EXEMPT, {}, None, "auto", {}),
}


@pytest.mark.parametrize("name", RECIPES)
def test_the_config_holds_the_recipe_it_claims(name):
    lr, base, batch, decay, no_decay, affine, clip, amp, options = RECIPES[name]
    cfg = load_config(ClsConfig, [CONFIGS / name])
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.lr_base_batch, cfg.train.batch_size) == ("sgd", lr, base, batch)
    assert (cfg.optim.momentum, cfg.optim.weight_decay, cfg.optim.no_decay) == (0.9, decay, no_decay)
    assert (cfg.data.affine, cfg.optim.clip_grad_norm, cfg.train.amp) == (affine, clip, amp)
    assert (cfg.schedule.name, cfg.schedule.epochs, cfg.schedule.milestones, cfg.schedule.decay_rate) == \
        ("multistep", 90, [30, 60], 0.1)
    assert (cfg.model.name, cfg.model.num_classes, cfg.model.options) == ("repeat_resnet18_f4", 1000, options)
    assert (cfg.data.image_size, cfg.data.crop_pct, cfg.data.scale) == (224, 0.875, (0.08, 1.0))


@pytest.mark.parametrize("name", RECIPES)
def test_the_config_resolves_to_its_optimiser_augmentation_and_layers(name):
    lr, base, batch, decay, no_decay, affine, *_ = RECIPES[name]
    cfg = load_config(ClsConfig, [CONFIGS / name])
    for transform in ("flip", "swish"):  # a tiny model of each transform with the recipe's options
        model = build_classifier(tiny("resnet18", 2, transform).timm_name, 10, options=cfg.model.options)
        optimizer = build_optimizer(model, cfg.optim, cfg.train.batch_size)
        assert {group["lr"] for group in optimizer.param_groups} == {lr * batch / base}  # 0.1 at its batch
        decays = {id(p): group["weight_decay"] for group in optimizer.param_groups for p in group["params"]}
        assert len(decays) == sum(1 for _ in model.parameters())
        if no_decay:  # BN, biases and transform parameters are exempt; the parents are not
            assert set(decays.values()) == {decay, 0.0}
        else:
            assert set(decays.values()) == {decay}  # every parameter, f-scores and s-scalars included
        inits = {(m.parent_init, getattr(m.transform, "init", None) == "xavier") for m in model.modules()
                 if isinstance(m, RepeatConv2d)}
        expected_parent = cfg.model.options.get("parent_init", "he_child")
        expected_swish = transform == "swish" and cfg.model.options.get("swish_init") == "xavier"
        assert inits == {(expected_parent, expected_swish)}
    train, _ = classification_transforms(cfg.data.image_size, cfg.data.crop_pct, cfg.data.scale, cfg.data.hflip,
                                         cfg.data.color_jitter, cfg.data.affine)
    first = train.transforms[0]
    if affine:  # before the random resized crop
        assert isinstance(first, RandomAffine) and first.degrees == [-20.0, 20.0] and first.shear == [-20.0, 20.0]
        assert list(first.scale) == [0.8, 1.2] and "RandomResizedCrop" in type(train.transforms[1]).__name__
    else:
        assert not any(isinstance(t, RandomAffine) for t in train.transforms)
