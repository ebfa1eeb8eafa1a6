import copy

import pytest
import torch

import repeatseg
from repeatseg.config import ScheduleConfig
from repeatseg.engine.optim import FOREACH_SAME_NUMBERS, build_optimizer, build_scheduler, param_groups


def _groups(model, no_decay, mult=1.0):
    groups = param_groups(model, lr=0.1, weight_decay=1e-4, no_decay=no_decay, encoder_lr_mult=mult)
    return {g["name"]: g for g in groups}


def test_no_decay_for_norm_bias_scores_and_transform_scalars_by_default():
    model = repeatseg.build_segmenter("repeat_r18_s2_b8", classes=3)
    groups = _groups(model, ["norm", "bias", "scores", "transform"], mult=0.5)
    no_decay = {id(p) for g in groups.values() if g["weight_decay"] == 0 for p in g["params"]}
    swish = model.encoder.layer1[0].conv1.transform
    assert id(swish.b1) in no_decay and id(swish.b2) in no_decay
    assert id(model.encoder.bn1.weight) in no_decay and id(model.segmentation_head[0].bias) in no_decay
    assert id(model.encoder.layer1[0].conv1.parent) not in no_decay
    assert groups["encoder_decay"]["lr"] == pytest.approx(0.05) and groups["head_decay"]["lr"] == pytest.approx(0.1)
    assert sum(len(g["params"]) for g in groups.values()) == len(list(model.parameters()))


def test_authors_setting_decays_everything():
    model = repeatseg.build_segmenter("repeat_r18_f2_b8", classes=3)
    groups = _groups(model, [])
    assert all(g["weight_decay"] == 1e-4 for g in groups.values())
    with pytest.raises(ValueError, match="unknown kinds"):
        _groups(model, ["norms"])


def _lrs(schedule_cfg, total=100, steps_per_epoch=10):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.01)
    scheduler = build_scheduler(optimizer, schedule_cfg, total, steps_per_epoch)
    lrs = []
    for step in range(total + 1):
        scheduler.step_update(step)
        lrs.append(optimizer.param_groups[0]["lr"])
    return lrs


def test_poly_schedule_with_warmup_per_iteration():
    lrs = _lrs(ScheduleConfig(iters=100, power=0.9, warmup_iters=10, warmup_lr_init=0.0))
    assert lrs[0] == 0.0 and lrs[5] == pytest.approx(0.005)
    assert lrs[50] == pytest.approx(0.01 * (1 - 50 / 100) ** 0.9) and lrs[100] == pytest.approx(0.0, abs=1e-12)


def test_multistep_decays_at_epoch_milestones():
    lrs = _lrs(ScheduleConfig(iters=100, name="multistep", milestones=[3, 6], decay_rate=0.1))
    assert lrs[29] == pytest.approx(0.01) and lrs[30] == pytest.approx(0.001) and lrs[60] == pytest.approx(1e-4)


def test_linear_lr_scaling_and_timm_optimizers():
    model = torch.nn.Linear(2, 2)
    from repeatseg.config import OptimConfig

    sgd = build_optimizer(model, OptimConfig(lr=0.1, lr_base_batch=256), batch_size=64)
    assert sgd.param_groups[0]["lr"] == pytest.approx(0.025) and isinstance(sgd, torch.optim.SGD)
    adamw = build_optimizer(model, OptimConfig(name="adamw", lr=1e-3), batch_size=64)
    assert isinstance(adamw, torch.optim.AdamW)


def test_names_outside_the_grid_parse_and_register():
    variant = repeatseg.get_variant("repeat_r34_s4_b16")
    assert (variant.arch, variant.width, variant.transform, variant.base_width) == ("resnet34", 4, "swish", 16)
    model = repeatseg.build_segmenter("repeat_r34_s4_b16", classes=2)
    assert model.encoder.out_channels == [3, 16, 16, 32, 64, 128]


@pytest.mark.parametrize("name", FOREACH_SAME_NUMBERS)
def test_foreach_update_gives_the_single_tensor_numbers_bit_for_bit(name):
    """build_optimizer asks for the multi-tensor update (fast on the CPU); it must not change one bit
    of the weights, on an f-RepeatNet whose scores, norms and convs sit in different groups."""
    from repeatseg.config import OptimConfig

    torch.manual_seed(0)
    base = repeatseg.build_segmenter("repeat_r18_f2_b16", classes=3, decoder_channels=[16, 16, 8, 8, 8])
    inputs, targets = torch.randn(2, 3, 32, 32), torch.randint(0, 3, (2, 32, 32))
    weights = []
    for foreach in (True, False):
        model = copy.deepcopy(base)
        optimizer = build_optimizer(model, OptimConfig(name=name, lr=0.05, weight_decay=1e-2), batch_size=2)
        assert all(group["foreach"] is True for group in optimizer.param_groups)
        if not foreach:
            for group in optimizer.param_groups:
                group["foreach"] = False
        for _ in range(3):
            loss = torch.nn.functional.cross_entropy(model(inputs), targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            for group in optimizer.param_groups:
                group["lr"] *= 0.9
        weights.append(model.state_dict())
    assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0])
