"""Optimiser parameter groups and the poly schedule (timm's scheduler, stepped per iteration)."""

from __future__ import annotations

import torch
from timm.scheduler import PolyLRScheduler
from torch import nn

from ..layers import FlipRepeat, SwishRepeat

NO_DECAY_KINDS = ("norm", "bias", "scores", "transform")
_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def parameter_kinds(model: nn.Module) -> dict[int, str]:
    """id(parameter) -> "norm", "bias", "scores", "transform" or "weight"."""
    kinds: dict[int, str] = {}
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if isinstance(module, _NORMS):
                kind = "norm"
            elif isinstance(module, FlipRepeat):
                kind = "scores"
            elif isinstance(module, SwishRepeat):
                kind = "transform"
            elif name == "bias":
                kind = "bias"
            else:
                kind = "weight"
            kinds.setdefault(id(param), kind)
    return kinds


def param_groups(model: nn.Module, lr: float, weight_decay: float, no_decay: list[str],
                 encoder_lr_mult: float = 1.0, encoder_prefix: str = "encoder.") -> list[dict]:
    """Up to four groups: (encoder or not) x (decayed or not). Unknown kinds in ``no_decay`` are an error."""
    unknown = set(no_decay) - set(NO_DECAY_KINDS)
    if unknown:
        raise ValueError(f"optim.no_decay: unknown kinds {sorted(unknown)}; expected some of {list(NO_DECAY_KINDS)}")
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


def sgd(model: nn.Module, optim_cfg) -> torch.optim.SGD:
    groups = param_groups(model, optim_cfg.lr, optim_cfg.weight_decay, optim_cfg.no_decay, optim_cfg.encoder_lr_mult)
    return torch.optim.SGD(groups, lr=optim_cfg.lr, momentum=optim_cfg.momentum)


def poly_schedule(optimizer: torch.optim.Optimizer, total_steps: int, schedule_cfg) -> PolyLRScheduler:
    """lr = base * (1 - step / total) ** power per iteration, after an optional linear warmup."""
    return PolyLRScheduler(
        optimizer, t_initial=total_steps, power=schedule_cfg.power, lr_min=0.0,
        warmup_t=schedule_cfg.warmup_iters, warmup_lr_init=schedule_cfg.warmup_lr_init,
        t_in_epochs=False,
    )
