"""Optimiser parameter groups (what no library knows: which parameters of a family's layers skip
weight decay, as the layers declare it) and timm's factories."""

from __future__ import annotations

import torch
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from torch import nn

from ..config import ConfigError
from ..layers import parameter_kinds

# Kinds ``optim.no_decay`` may name: norms and biases, and what layers declare (f-scores, the
# s-transform's scalars). "weight" is everything else and is always decayed.
NO_DECAY_KINDS = ("norm", "bias", "scores", "transform")


def param_groups(model: nn.Module, lr: float, weight_decay: float, no_decay: list[str],
                 encoder_lr_mult: float = 1.0, encoder_prefix: str = "encoder.") -> list[dict]:
    """Up to four groups: (encoder or not) x (decayed or not). Unknown kinds in ``no_decay`` are an error."""
    unknown = set(no_decay) - set(NO_DECAY_KINDS)
    if unknown:
        raise ConfigError(f"optim.no_decay: unknown kinds {sorted(unknown)}; expected some of {list(NO_DECAY_KINDS)}")
    kinds = parameter_kinds(model)
    groups: dict[tuple[bool, bool], list] = {}
    seen = set()
    for name, param in model.named_parameters():
        if not param.requires_grad or id(param) in seen:
            continue
        seen.add(id(param))
        key = (name.startswith(encoder_prefix), kinds[id(param)] not in no_decay)
        groups.setdefault(key, []).append(param)
    return [
        {"params": params, "lr": lr * (encoder_lr_mult if in_encoder else 1.0),
         "weight_decay": weight_decay if decayed else 0.0,
         "name": f"{'encoder' if in_encoder else 'head'}_{'decay' if decayed else 'no_decay'}"}
        for (in_encoder, decayed), params in sorted(groups.items())
    ]


# Optimisers whose multi-tensor (foreach) update gives the single-tensor update's numbers bit for
# bit (tests/engine/test_optim.py checks it): torch picks foreach by itself on CUDA only, and on the
# CPU the single-tensor loop's per-parameter Python ops were a tenth of a digits cell's time.
FOREACH_SAME_NUMBERS = ("sgd", "nesterov", "momentum", "adam", "adamw")
def check_optimizer_name(name: str) -> None:
    """Refuse an ``optim.name`` timm's factory does not know, naming the key and the closest names."""
    import difflib

    from timm.optim import list_optimizers

    known = list_optimizers()
    if name.lower().removeprefix("lookahead_") not in known:
        close = difflib.get_close_matches(name.lower(), known, n=3)
        raise ConfigError(f"optim.name: {name!r} is not an optimizer timm knows"
                          + (f"; did you mean {', '.join(close)}?" if close else f" (known: {', '.join(known[:20])}, ...)"))


def build_optimizer(model: nn.Module, optim_cfg, batch_size: int) -> torch.optim.Optimizer:
    """timm's optimizer factory over repeatseg's parameter groups; lr scaled linearly if
    ``optim.lr_base_batch`` is set (the paper's 0.1 per 256 images). The optimisers of
    ``FOREACH_SAME_NUMBERS`` take their multi-tensor update on every device."""
    check_optimizer_name(optim_cfg.name)
    lr = optim_cfg.lr * (batch_size / optim_cfg.lr_base_batch if optim_cfg.lr_base_batch else 1.0)
    groups = param_groups(model, lr, optim_cfg.weight_decay, optim_cfg.no_decay, optim_cfg.encoder_lr_mult)
    extra = {"momentum": optim_cfg.momentum} if "sgd" in optim_cfg.name or "momentum" in optim_cfg.name else {}
    if optim_cfg.name.lower() in FOREACH_SAME_NUMBERS:
        extra["foreach"] = True
    return create_optimizer_v2(groups, opt=optim_cfg.name, lr=lr, weight_decay=optim_cfg.weight_decay, **extra)


def build_scheduler(optimizer: torch.optim.Optimizer, schedule_cfg, total_steps: int, steps_per_epoch: int):
    """timm's scheduler factory, in iterations: poly (lr * (1 - t/T)^power), cosine, or multistep
    (x ``decay_rate`` at each epoch in ``milestones``), each after an optional linear warmup.
    ``Trainer`` calls ``step_update(step)`` after every optimiser step."""
    scheduler, _ = create_scheduler_v2(
        optimizer, sched=schedule_cfg.name, num_epochs=total_steps, updates_per_epoch=1, step_on_epochs=False,
        decay_rate=schedule_cfg.power if schedule_cfg.name == "poly" else schedule_cfg.decay_rate,
        # timm decays when t + 1 reaches a milestone; +1 makes the first update of epoch m the first decayed one.
        decay_milestones=[m * steps_per_epoch + 1 for m in schedule_cfg.milestones], min_lr=schedule_cfg.min_lr,
        warmup_epochs=schedule_cfg.warmup_iters, warmup_lr=schedule_cfg.warmup_lr_init, warmup_prefix=False,
    )
    return scheduler
