"""Model folders that timm, smp and the Hugging Face hub read as they are.

``save_pretrained(model, folder)`` writes three files:

- ``model.safetensors``: the model's state_dict, with repeatseg metadata (the variant, its model
  options, the task, the pretraining recipe and the measured metric when known);
- ``config.json``: for a timm model (a repeatseg encoder as a classifier), timm's own
  (``architecture``, ``num_classes``, ``model_args``, ``pretrained_cfg``, written by timm's
  ``save_config_for_hf``), so ``timm.create_model("local-dir:FOLDER", pretrained=True)`` rebuilds it;
  for a segmenter, smp's (the model's init arguments and ``_model_class``), so
  ``smp.from_pretrained(FOLDER)`` rebuilds it;
- ``README.md``: a model card (family, width, transform, options, parameters stored vs generated,
  packed bytes, MACs, recipe, measured top-1 or mIoU with its image count).

Both libraries look the architecture up by name in their registries: ``import repeatseg`` first
(names outside the registered table, e.g. ``_b8`` or bracketed options, need
``repeatseg.register(name)`` too). ``build_segmenter(..., encoder_weights=FOLDER)`` starts a
segmenter from either kind of folder (the encoder's keys are taken; a classifier's head is dropped).

The folder is a repeatseg ``model`` folder (its marker, ``.repeatseg.json``): a new or empty one, or
with ``force`` one written before, whose listed files are replaced; never any other folder.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch
from torch import nn

from .files import WRITTEN_BY, atomic_write_bytes, atomic_write_text, weights_bytes
from .outputs import check_owned_folder, fill_owned_folder
from .variants import get_variant

MODEL_FILE, CONFIG_FILE, CARD_FILE = "model.safetensors", "config.json", "README.md"
FOLDER_FILES = [MODEL_FILE, CONFIG_FILE, CARD_FILE]


def is_model_folder(path: str | Path) -> bool:
    """A folder holding ``model.safetensors`` and ``config.json`` (ours, timm's or smp's)."""
    path = Path(path)
    return path.is_dir() and (path / MODEL_FILE).is_file() and (path / CONFIG_FILE).is_file()


def _is_segmenter(model: nn.Module) -> bool:
    return hasattr(model, "encoder") and hasattr(model, "decoder") and hasattr(model, "_hub_mixin_config")


def _variant_of(model: nn.Module):
    """The repeatseg variant a model is built from (its options included)."""
    if _is_segmenter(model):
        return getattr(model, "encoder_variant", None) or get_variant(model.config["encoder_name"])
    architecture = getattr(model, "pretrained_cfg", {}).get("architecture")
    if architecture is None:
        raise ValueError("save_pretrained takes a repeatseg timm model (timm.create_model) or a segmenter "
                         f"(repeatseg.build_segmenter); got a {type(model).__name__} without a timm pretrained_cfg")
    options = getattr(model, "_model_args", {}).get("options") or getattr(model, "model_options", None) or {}
    return get_variant(architecture).with_options(**options)


def _smp_config(model: nn.Module) -> dict:
    """smp's config.json: the init arguments, with the stem's real input channels (a pretrained
    encoder is built for 3 and adapted afterwards) and the class smp.from_pretrained builds."""
    config = dict(model.config)
    config["in_channels"] = int(getattr(model.encoder, "_in_channels", config.get("in_channels", 3)))
    config["_model_class"] = type(model).__name__
    return config


def _timm_config(model: nn.Module) -> dict:
    from timm.models._hub import save_config_for_hf  # timm's own writer: the keys its local-dir loader reads

    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / CONFIG_FILE
        save_config_for_hf(model, str(path))
        return json.loads(path.read_text())


def _stats(variant, segmenter: bool, config: dict) -> dict:
    """Accounting for the card (None where a model cannot be described, e.g. a classifier-only one)."""
    from .accounting import describe

    try:
        if segmenter:
            return describe(variant.name, segmenter=True, classes=config["classes"],
                            decoder_channels=config.get("decoder_channels")).as_dict()
        return describe(variant.name).as_dict()
    except (ValueError, KeyError, RuntimeError):
        return {}


def model_card(variant, segmenter: bool, config: dict, metadata: dict, stats: dict) -> str:
    """The README.md of a model folder (Hugging Face model-card front matter, then the facts)."""
    library = "segmentation-models-pytorch" if segmenter else "timm"
    loading = ('import repeatseg, segmentation_models_pytorch as smp\nmodel = smp.from_pretrained("FOLDER")'
               if segmenter else
               f'import repeatseg, timm\nmodel = timm.create_model("local-dir:FOLDER", pretrained=True)\n'
               f'# as a segmentation encoder:\n'
               f'segmenter = repeatseg.build_segmenter("{variant.name}", classes=21, encoder_weights="FOLDER")')
    if variant.base_width != 64 or variant.options:
        loading = loading.replace("\nmodel", f'\nrepeatseg.register("{variant.smp_key}")  # outside the table\nmodel', 1)
    rows = [("model", variant.name if segmenter else variant.timm_name), ("family", variant.family),
            ("width", metadata.get("width", "")), ("transform", metadata.get("transform", "none")),
            ("base width", variant.base_width), ("options", json.dumps(variant.option_dict, sort_keys=True)),
            ("task", "segmentation (U-Net)" if segmenter else "classification"),
            ("classes", config.get("classes", config.get("num_classes")))]
    if stats:
        generated = stats["trainable_params"] - stats["stored_floats"]
        rows += [(f"{stats['scope']} parameters trained", f"{stats['trainable_params']:,}"),
                 ("floats stored", f"{stats['stored_floats']:,}"),
                 ("trained, not stored as floats (generated at each forward)", f"{max(generated, 0):,}"),
                 ("mask bits stored", f"{stats['mask_bits']:,}"),
                 ("packed bytes", f"{stats['packed_bytes']:,}"),
                 (f"MACs at {stats['input_size']}x{stats['input_size']}", f"{stats['macs']:,}"),
                 ("compared with", stats["dense_twin"])]
    rows.append(("pretraining recipe", metadata.get("recipe", "unrecorded")))
    metric = metadata.get("metric")
    if metric:
        rows.append((metric, f"{100 * float(metadata['metric_value']):.2f} % on {metadata.get('metric_images', '?')} "
                             f"images ({metadata.get('metric_split', 'val')})"))
    else:
        rows.append(("measured", "not recorded"))
    table = "\n".join(f"| {key} | {value} |" for key, value in rows)
    return (f"---\nlibrary_name: {library}\ntags:\n- repeatseg\n- {variant.family}\n"
            f"- {'image-segmentation' if segmenter else 'image-classification'}\n---\n\n"
            f"# {variant.name}\n\nA repeatseg {variant.family} model "
            f"({'segmenter' if segmenter else 'encoder as a timm classifier'}).\n\n"
            f"| | |\n|---|---|\n{table}\n\n## Loading\n\n```python\n{loading}\n```\n\n"
            "Stored vs generated: a sharing layer stores its parents (and bits) and generates its children at "
            "every forward; `packed bytes` is what a packed export (`repeatseg.pack`) keeps.\n")


def save_pretrained(model: nn.Module, folder: str | Path, *, metadata: dict | None = None,
                    force: bool = False) -> Path:
    """Write ``model`` (a repeatseg timm model or a segmenter) as a model folder (module docstring).
    ``metadata``: more to record (``recipe``, ``metric``, ``metric_value``, ``metric_images``,
    ``metric_split``, ``source``). Returns the folder."""
    segmenter = _is_segmenter(model)
    variant = _variant_of(model)
    config = _smp_config(model) if segmenter else _timm_config(model)
    recorded = {**variant.metadata(), "task": "segmentation" if segmenter else "classification", **(metadata or {}),
                WRITTEN_BY: "repeatseg save_pretrained"}
    if segmenter:  # what load_segmenter reads back from a training checkpoint
        recorded.update(classes=str(config["classes"]), in_channels=str(config["in_channels"]),
                        decoder_channels=json.dumps(list(config["decoder_channels"])))
    else:
        recorded["num_classes"] = str(config["num_classes"])
    card = model_card(variant, segmenter, config, recorded, _stats(variant, segmenter, config))
    folder = check_owned_folder(folder, "model", force)
    fill_owned_folder(folder, "model", FOLDER_FILES, model=variant.smp_key if segmenter else variant.timm_name)
    atomic_write_bytes(folder / MODEL_FILE, weights_bytes(model.state_dict(), recorded))
    atomic_write_text(folder / CONFIG_FILE, json.dumps(config, indent=2, sort_keys=True) + "\n")
    atomic_write_text(folder / CARD_FILE, card)
    return folder


def classifier_from_checkpoint(tensors: dict[str, torch.Tensor], metadata: dict) -> nn.Module:
    """The timm model a ``train_cls.py`` checkpoint holds, rebuilt and loaded (repeatseg encoders only)."""
    import timm

    from .registry import register
    from .segmenter import options_named, stored_options

    variant = register(get_variant(metadata["model"]), **stored_options(metadata, metadata["model"]))
    num_classes = int(metadata.get("num_classes") or tensors["fc.weight"].shape[0])
    with options_named(variant):
        model = timm.create_model(variant.timm_name, num_classes=num_classes, options=variant.option_dict)
    model.load_state_dict(tensors)
    return model


def export_model_folder(source: str | Path, folder: str | Path, which: str = "best", force: bool = False) -> dict:
    """A run's model as a model folder (``which`` checkpoint of a run folder, or the file given):
    a ``train_cls.py`` run's encoder as its timm classifier (head included), with the metadata
    ``repeatseg.weights.export_encoder`` records; a ``train_seg.py`` run's segmenter, with the
    recipe of the encoder weights it started from. Both add the measured top-1 or mIoU with its
    image count where the run's ``metrics.json`` has them. Returns the metadata."""
    from .weights import read_checkpoint, run_checkpoint

    path = run_checkpoint(source, which)
    tensors, metadata = read_checkpoint(path)
    check_owned_folder(folder, "model", force)  # before anything is built
    summary_path = path.parent.parent / "metrics.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    if metadata.get("task") == "segmentation":
        model, exported = _segmenter_export(path, summary)
    else:
        model, exported = _classifier_export(path, tensors, metadata)
    primary = "miou" if metadata.get("task") == "segmentation" else "top1"
    value = summary.get(f"best_{primary}" if path.stem == "best" else primary)
    if value is not None:
        exported.update(metric={"miou": "mIoU", "top1": "top-1"}[primary], metric_value=f"{value:.6f}",
                        metric_split=summary.get("split", "val"), metric_images=str(summary.get("val_images", "?")))
    save_pretrained(model, folder, metadata=exported, force=force)
    return exported


def _classifier_export(path: Path, tensors: dict, metadata: dict) -> tuple[nn.Module, dict]:
    from .weights import encoder_export_metadata

    exported = encoder_export_metadata(path, metadata)
    exported.pop(WRITTEN_BY, None)
    return classifier_from_checkpoint(tensors, metadata), exported


def _segmenter_export(path: Path, summary: dict) -> tuple[nn.Module, dict]:
    """A segmentation checkpoint's segmenter and what its folder records: the encoder weights it
    started from (their recipe and sha256, from the run's config.yaml provenance)."""
    import yaml

    from .files import sha256_of
    from .recipe import RANDOM_INIT, UNRECORDED
    from .segmenter import load_segmenter

    model, _ = load_segmenter(path)
    config_path = path.parent.parent / "config.yaml"
    saved = yaml.safe_load(config_path.read_text()) if config_path.is_file() else {}
    started = (saved or {}).get("provenance", {}).get("encoder_weights")
    exported = {"epochs": str(summary.get("epochs", "")), "source": str(path), "source_sha256": sha256_of(path),
                "recipe": (started or {}).get("metadata", {}).get("recipe", UNRECORDED) if started else RANDOM_INIT}
    if started:
        exported["encoder_weights_sha256"] = started.get("sha256", "")
    return model, exported
