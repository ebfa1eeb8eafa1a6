"""What a layer says about itself, and the walks over a model that ask it.

A parameter-sharing layer is more than its forward: accounting must know what it stores, the
optimiser which of its parameters skip weight decay, export how it folds into plain convs, and
the trainer whether it adds a regularisation term. Every such layer subclasses ``SharingLayer``
and overrides what applies; the rest of the toolkit calls the walks below and never switches on
layer classes. A new layer (a new transform, a new family's conv) is one class with these methods.

Parameter kinds (for ``optim.no_decay``): ``weight`` (default), ``bias``, ``norm`` (found by the
walk itself) and what layers declare (``scores``, ``transform``, ...).
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


class SharingLayer:
    """Mixin for ``nn.Module`` layers; every method has the answer of an ordinary layer."""

    #: Default weight of ``regularization_loss`` in the task loss (``optim.regularization_weight``).
    regularization_weight: float = 0.0

    def parameter_kinds(self) -> dict[str, str]:
        """{name of an own (non-recursive) parameter: kind}; unnamed parameters are ``weight``."""
        return {}

    def bit_parameters(self) -> dict[str, int]:
        """{own parameter name: bits stored per element}: parameters a deployed model keeps only as
        bits (f-RepeatNet scores: 1, their sign). Everything else is stored as a float."""
        return {}

    def from_bits(self, name: str, bits: torch.Tensor) -> torch.Tensor:
        """Values for bit parameter ``name`` from its stored bits (``bits``: bool, True where the
        value was >= 0), for loading a packed model. Any values with these signs compute the same
        function; a layer returns ones that training can continue from. Default: +1 / -1."""
        return torch.where(bits, 1.0, -1.0)

    def folded(self) -> nn.Module | None:
        """A plain module computing the same function for inference (eval mode), or None if this
        layer has nothing to fold. Called on a copy of the model; may share tensors with ``self``."""
        return None

    def regularization_terms(self) -> list[tuple[torch.Tensor, float]]:
        """(penalty, normaliser) pairs; the model's term is sum(penalties) / sum(normalisers)."""
        return []

    def generate(self, dtype: torch.dtype | None = None) -> torch.Tensor | None:
        """The weight this layer generates from what it stores, generated now as a forward does
        (in ``dtype``, default the compute dtype; differentiable), or None if it stores its
        weights. ``tools/bench.py`` times it to report the share of a step spent generating weights."""
        return None

    def generated(self, dtype: torch.dtype | None = None) -> torch.Tensor | None:
        """What a forward computes with: ``generate(dtype)``, or inside a ``cached(model)`` scope the
        weight this layer generated first in it (one per dtype, grad mode and inference mode)."""
        if torch.compiler.is_compiling():  # a graph generates from its parameters (and no graph break here)
            return self.generate(dtype)
        scope = _CACHED.get(id(self))
        if scope is None:
            return self.generate(dtype)
        key = (dtype, torch.is_grad_enabled(), torch.is_inference_mode_enabled())
        if key not in scope:
            scope[key] = self.generate(dtype)
        return scope[key]

    def diagnostics(self) -> dict[str, torch.Tensor]:
        """Flattened values that show whether this layer's learnable sharing part trained: named
        values (e.g. ``b1``, ``scale``) summarised over the model by ``sharing_diagnostics``, and
        ``moved``, a bool per learnable value: True where it left the initial transform (f: a sign
        that differs from pure tiling). Empty for a layer with nothing learnable of its own."""
        return {}

    def is_cached(self) -> bool:
        """Whether this layer is inside a ``cached`` scope."""
        return id(self) in _CACHED


# id(layer) -> {(dtype, grad mode, inference mode): weight} for the layers inside a ``cached`` scope.
# Held outside the modules, so copies, pickles and state_dicts never see a generated weight.
_CACHED: dict[int, dict] = {}


@contextlib.contextmanager
def cached(model: nn.Module):
    """Inside the scope, every generating layer of ``model`` generates its weight once and reuses
    it; leaving the scope drops every weight generated in it (in the manner of
    ``torch.nn.utils.parametrize.cached``). Outside a scope a layer generates on every forward, so
    no write to its parameters (``.data``, ``copy_``, ``load_state_dict``, ``.to()``) can leave a
    stale weight. Inside, the parameters are taken as fixed: use it where they are (evaluation,
    inference), not across an optimiser step. Nested scopes over the same layers are one scope."""
    layers = [layer for layer in generating_layers(model) if id(layer) not in _CACHED]
    _CACHED.update((id(layer), {}) for layer in layers)  # ``layers`` keeps the ids alive meanwhile
    try:
        yield model
    finally:
        for layer in layers:
            del _CACHED[id(layer)]


def _own_kind(module: nn.Module, name: str) -> str:
    if isinstance(module, NORMS):
        return "norm"
    if isinstance(module, SharingLayer):
        kind = module.parameter_kinds().get(name)
        if kind:
            return kind
    return "bias" if name == "bias" else "weight"


def parameter_kinds(model: nn.Module) -> dict[int, str]:
    """id(parameter) -> kind, for every parameter of ``model`` (a shared one under its first owner)."""
    kinds: dict[int, str] = {}
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            kinds.setdefault(id(param), _own_kind(module, name))
    return kinds


def bit_parameters(model: nn.Module) -> dict[int, int]:
    """id(parameter) -> bits per element, for the parameters stored as bits."""
    bits: dict[int, int] = {}
    for module in model.modules():
        if isinstance(module, SharingLayer):
            for name, count in module.bit_parameters().items():
                bits[id(getattr(module, name))] = count
    return bits


def bit_parameter_names(model: nn.Module) -> dict[str, int]:
    """state_dict key -> bits per element, for the parameters stored as bits (first name of each)."""
    names: dict[str, int] = {}
    for prefix, module in model.named_modules():
        if isinstance(module, SharingLayer):
            for name, count in module.bit_parameters().items():
                names[f"{prefix}.{name}" if prefix else name] = count
    return names


def fold_layers(model: nn.Module) -> nn.Module:
    """Replace, in place, every layer that folds by its plain module; an outer layer folds whole
    (its inner layers go with it), and a layer shared by several parents folds once."""
    folded_modules: dict[int, nn.Module | None] = {}
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, SharingLayer):
                if id(child) not in folded_modules:
                    folded_modules[id(child)] = child.folded()
                if folded_modules[id(child)] is not None:
                    setattr(parent, name, folded_modules[id(child)])
    return model


def generating_layers(model: nn.Module) -> list[SharingLayer]:
    """The layers that generate their weight on a training forward (each shared layer once)."""
    return [m for m in model.modules() if isinstance(m, SharingLayer) and type(m).generate is not SharingLayer.generate]


def regularized_layers(model: nn.Module) -> list[SharingLayer]:
    """The layers that define a regularisation term (each shared layer once)."""
    return [m for m in model.modules()
            if isinstance(m, SharingLayer) and type(m).regularization_terms is not SharingLayer.regularization_terms]


def regularization_loss(model: nn.Module, layers: list[SharingLayer] | None = None) -> torch.Tensor | None:
    """The model's regularisation term, sum(penalties) / sum(normalisers) over its layers' terms
    (None if it has none). ``layers`` (from ``regularized_layers``) saves the walk on a hot path."""
    penalties, normalisers = [], 0.0
    for layer in regularized_layers(model) if layers is None else layers:
        for penalty, normaliser in layer.regularization_terms():
            penalties.append(penalty)
            normalisers += normaliser
    if not penalties:
        return None
    return torch.stack(penalties).sum() / normalisers


def default_regularization_weight(model: nn.Module) -> float:
    """The weight the model's layers ask for (0 when none has a regularisation term)."""
    return max((m.regularization_weight for m in regularized_layers(model)), default=0.0)


def sharing_diagnostics(model: nn.Module) -> dict[str, dict[str, float]]:
    """{value name: {mean, std, min, max, n}} over every sharing layer of ``model`` (each shared
    layer once); ``moved.mean`` is the share of learnable sharing values that left their initial
    transform, 0.0 when training did not move them. Empty for a model without such layers."""
    pooled: dict[str, list[torch.Tensor]] = {}
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, SharingLayer):
                for name, values in module.diagnostics().items():
                    pooled.setdefault(name, []).append(values.detach().reshape(-1).float().cpu())
    summary = {}
    for name, parts in pooled.items():
        values = torch.cat(parts)
        if values.numel() == 0:
            continue
        summary[name] = {"mean": values.mean().item(), "std": values.std().item() if values.numel() > 1 else 0.0,
                         "min": values.min().item(), "max": values.max().item(), "n": values.numel()}
    return summary
