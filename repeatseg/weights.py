"""Local pretrained weights: read a checkpoint safely, map its keys, load it into an encoder.

Nothing here downloads. A weights argument is either a path to a file, or a tag (``imagenet``)
resolved inside a weights directory (``weights_dir`` argument, else ``$REPEATSEG_WEIGHTS``) as
``<dir>/<encoder>-<tag>.safetensors`` (or ``.pth``/``.pt``).

Key mapping. repeatseg's backbones use torchvision's and timm's parameter names, so an ImageNet
ResNet-18/34 checkpoint from either loads into the 1x dense encoder unchanged. What the mapping
handles is the packaging: a ``{"state_dict": ...}`` / ``{"model": ...}`` wrapper, a ``module.``
(DDP) or ``model.``/``backbone.`` prefix on every key, a whole-segmenter checkpoint (its
``encoder.*`` keys are taken), and the classifier (``fc.*``), which an encoder drops.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from .errors import CheckpointError, MissingFileError
from .files import WRITTEN_BY, load_torch, load_weights, non_finite_keys, sha256_of

WEIGHTS_ENV = "REPEATSEG_WEIGHTS"
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt")
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "module")
_WHOLE_PREFIXES = ("module.", "model.", "backbone.")
# Keys an encoder may lack in a classification checkpoint, and keys it ignores.
_NEW_IN_ENCODER = ("adapters.",)
_DROPPED_BY_ENCODER = ("fc.",)


@dataclass
class LoadReport:
    """What a load did: the file, its sha256, and the keys that did not match."""

    path: str
    sha256: str
    metadata: dict = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    newly_initialised: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line: the file and what did not match (for a training's start banner)."""
        notes = [f"{label} {len(keys)} key(s)" for label, keys in (
            ("newly initialised", self.newly_initialised), ("dropped", self.dropped), ("MISSING", self.missing),
            ("UNEXPECTED", self.unexpected)) if keys]
        return f"{self.path} (sha256 {self.sha256[:12]}{'; ' if notes else ''}{', '.join(notes)})"

    def __str__(self) -> str:
        lines = [f"loaded {self.path} (sha256 {self.sha256[:12]})"]
        if self.newly_initialised:
            lines.append(f"  newly initialised (not in checkpoint): {_summarise(self.newly_initialised)}")
        if self.dropped:
            lines.append(f"  dropped from checkpoint: {_summarise(self.dropped)}")
        if self.missing:
            lines.append(f"  MISSING: {_summarise(self.missing)}")
        if self.unexpected:
            lines.append(f"  UNEXPECTED: {_summarise(self.unexpected)}")
        return "\n".join(lines)


def _summarise(keys: list[str], limit: int = 6) -> str:
    shown = ", ".join(keys[:limit])
    return f"{shown}, ... ({len(keys)} keys)" if len(keys) > limit else shown


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file or a ``torch.save`` file (weights_only, never
    unpickled). A damaged file, one holding other objects, or NaN/inf weights is a ValueError
    naming the file (torch's own message for a refused pickle, which suggests weights_only=False,
    is not passed on)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        metadata = read_metadata(path)
        tensors = load_weights(path)
    else:
        tensors, metadata = _read_torch_checkpoint(path), {}
    bad = non_finite_keys(tensors)
    if bad:
        raise CheckpointError(f"{path} holds NaN or inf values in {len(bad)} tensor(s), e.g. {', '.join(bad[:3])}: "
                              "not usable as weights")
    return tensors, metadata


def read_metadata(path: str | Path) -> dict[str, str]:
    """A weights file's metadata without reading its tensors ({} for a torch file, which has none)."""
    if Path(path).suffix != ".safetensors":
        return {}
    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except SafetensorError as error:
        raise CheckpointError(f"{path} is empty, truncated or not a safetensors file ({error})") from error


def _read_torch_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    obj = load_torch(path)
    for key in _WRAPPER_KEYS:
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} does not hold a state_dict of tensors")
    return obj


def to_encoder_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip packaging prefixes so keys read ``conv1.weight``, ``layer1.0.conv1.parent``, ..."""
    if any(key.startswith("encoder.") for key in state_dict):
        state_dict = {k[len("encoder."):]: v for k, v in state_dict.items() if k.startswith("encoder.")}
    for prefix in _WHOLE_PREFIXES:
        if state_dict and all(key.startswith(prefix) for key in state_dict):
            state_dict = {k[len(prefix):]: v for k, v in state_dict.items()}
    return state_dict


MODEL_FOLDER_WEIGHTS = "model.safetensors"  # a model folder's (repeatseg.pretrained, timm, smp, the HF hub)


def resolve_weights(weights: str | Path, encoder_name: str, weights_dir: str | Path | None = None) -> Path:
    """A path as given (a model folder: its ``model.safetensors``), or a tag looked up in the
    weights directory; a clear error otherwise."""
    candidate = Path(weights).expanduser()
    if candidate.is_file():
        return candidate
    if candidate.is_dir():
        if (candidate / MODEL_FOLDER_WEIGHTS).is_file():
            return candidate / MODEL_FOLDER_WEIGHTS
        raise FileNotFoundError(f"encoder weights folder {candidate} holds no {MODEL_FOLDER_WEIGHTS} (a model folder "
                                "written by repeatseg.save_pretrained or tools/export_encoder.py)")
    looks_like_path = candidate.suffix in WEIGHT_SUFFIXES or os.sep in str(weights)
    if looks_like_path:
        raise MissingFileError(f"encoder weights file not found: {candidate}")
    directory = weights_dir or os.environ.get(WEIGHTS_ENV)
    if not directory:
        raise MissingFileError(
            f"encoder_weights={weights!r} is a tag, but no weights directory is set: pass "
            f"weights_dir (--weights-dir) or set ${WEIGHTS_ENV}, or give a file path"
        )
    tried = [Path(directory).expanduser() / f"{encoder_name}-{weights}{suffix}" for suffix in WEIGHT_SUFFIXES]
    for path in tried:
        if path.is_file():
            return path
    raise MissingFileError(
        f"no {weights!r} weights for {encoder_name}: looked for\n  " + "\n  ".join(map(str, tried))
    )


def load_encoder_weights(
    encoder: nn.Module,
    weights: str | Path,
    *,
    encoder_name: str | None = None,
    weights_dir: str | Path | None = None,
    strict: bool = True,
) -> LoadReport:
    """Load a classification (or segmenter) checkpoint into a repeatseg encoder.

    ``adapters.*`` absent from the checkpoint are left as initialised and ``fc.*`` is dropped;
    both are listed in the report. Any other missing or unexpected key, or a shape mismatch,
    raises when ``strict`` (else it is only reported). A checkpoint whose metadata names another
    encoder is refused.
    """
    encoder_name = encoder_name or getattr(encoder, "name", None) or "encoder"
    path = resolve_weights(weights, encoder_name, weights_dir)
    tensors, metadata = read_checkpoint(path)
    stored_name = metadata.get("encoder")
    if stored_name and encoder_name != "encoder" and stored_name != encoder_name:
        raise CheckpointError(f"{path} holds weights of {stored_name!r}, not of the requested encoder {encoder_name!r}")
    tensors = to_encoder_keys(tensors)
    report = LoadReport(path=str(path), sha256=sha256_of(path), metadata=metadata)

    own = encoder.state_dict()
    report.dropped = sorted(k for k in tensors if k not in own and k.startswith(_DROPPED_BY_ENCODER))
    report.unexpected = sorted(k for k in tensors if k not in own and k not in report.dropped)
    absent = [k for k in own if k not in tensors]
    report.newly_initialised = sorted(k for k in absent if k.startswith(_NEW_IN_ENCODER))
    # Older checkpoints lack BN's step counter; it does not affect eval.
    report.missing = sorted(k for k in absent if k not in report.newly_initialised
                            and not k.endswith("num_batches_tracked"))
    mismatched = [f"{k}: checkpoint {tuple(v.shape)} vs encoder {tuple(own[k].shape)}"
                  for k, v in tensors.items() if k in own and v.shape != own[k].shape]
    if mismatched:
        hint = ""
        if any(m.startswith("conv1.weight") for m in mismatched):
            hint = ("\n(a stem with other in_channels: build with repeatseg.build_segmenter(..., in_channels=C), "
                    "which loads the 3-channel stem first and adapts it)")
        raise CheckpointError(f"{path} does not fit {encoder_name}:\n  " + "\n  ".join(mismatched) + hint)
    if strict and (report.missing or report.unexpected):
        raise CheckpointError(f"{path} does not match {encoder_name} (pass strict=False to load anyway)\n{report}")
    encoder.load_state_dict({k: v for k, v in tensors.items() if k in own}, strict=False)
    return report


def export_encoder(source: str | Path, output: str | Path, which: str = "best") -> dict:
    """Write a classification run's encoder (head dropped) as safetensors with metadata naming the
    smp encoder it fits, the variant (family, width, model options, ...), epochs, top-1 and the
    pretraining recipe; returns the metadata.

    ``source`` is a ``train_cls.py`` run folder (its ``which`` checkpoint: best or last) or a
    checkpoint file inside one. ``build_segmenter`` refuses the file for any other encoder.
    ``repeatseg.pretrained.export_model_folder`` writes the same as a timm/Hugging Face model folder.
    """
    from .files import save_weights

    path = run_checkpoint(source, which)
    tensors, metadata = read_checkpoint(path)
    exported = encoder_export_metadata(path, metadata)
    save_weights(output, {k: v for k, v in tensors.items() if not k.startswith(_DROPPED_BY_ENCODER)}, exported)
    return exported


def run_checkpoint(source: str | Path, which: str) -> Path:
    """A run folder's ``which`` checkpoint (best or last), or the file given (any task's)."""
    from .checkpoint_files import BEST, CHECKPOINT_DIR, WEIGHTS

    source = Path(source)
    path = source / CHECKPOINT_DIR / {"best": BEST, "last": WEIGHTS}[which] if source.is_dir() else source
    if not path.is_file():
        raise MissingFileError(f"no checkpoint at {path}")
    return path


def encoder_export_metadata(path: Path, metadata: dict) -> dict:
    """What an exported encoder records about the ``train_cls.py`` checkpoint at ``path``.

    ``recipe`` is a short sha256 of the run folder's ``config.yaml`` (as train_cls wrote it) without
    the fields ``repeatseg.recipe.IGNORED`` lists (and says why); ``recipe_config`` is that mapping
    as JSON. Without a config.yaml the recipe is "unrecorded"."""
    import json

    from .config import ClsConfig, load_config
    from .recipe import UNRECORDED, recipe_of
    from .variants import get_variant

    if metadata.get("task") != "classification" or "model" not in metadata:
        raise CheckpointError(f"{path} is not a train_cls.py checkpoint (its metadata has no classification model)")
    variant = get_variant(metadata["model"])
    run_dir = path.parent.parent
    summary = json.loads((run_dir / "metrics.json").read_text()) if (run_dir / "metrics.json").is_file() else {}
    top1 = summary.get("best_top1" if path.stem == "best" else "top1")
    options = variant.recipe_options(json.loads(metadata.get("options") or "{}"))  # older files: a whole recipe's
    config = run_dir / "config.yaml"
    recipe = recipe_of(load_config(ClsConfig, [config])).metadata() if config.is_file() else {"recipe": UNRECORDED}
    return {
        **variant.with_options(**options).metadata(),
        "epochs": metadata.get("epoch", ""), "top1": "" if top1 is None else f"{top1:.6f}",
        "source": str(path), "source_sha256": sha256_of(path), **recipe, WRITTEN_BY: "repeatseg export_encoder",
    }
