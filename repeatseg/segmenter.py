"""The study's segmenter: smp's U-Net with one fixed decoder for every encoder."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path

import segmentation_models_pytorch as smp

from .checkpoint_files import BEST, CHECKPOINT_DIR, WEIGHTS
from .errors import CheckpointError, ConfigError, MissingFileError
from .registry import register
from .variants import get_variant
from .weights import MODEL_FOLDER_WEIGHTS, load_encoder_weights, read_metadata, resolve_weights

log = logging.getLogger(__name__)

# smp's default U-Net decoder. Blocks 1-4 each merge one skip (layer3, layer2, layer1, stem);
# block 5 upsamples to full resolution without a skip. Encoders report base channels, so these
# shapes never depend on the encoder's width.
DECODER_CHANNELS = (256, 128, 64, 32, 16)


def build_segmenter(
    encoder: str,
    classes: int = 21,
    in_channels: int = 3,
    encoder_weights: str | Path | None = None,
    weights_dir: str | Path | None = None,
    strict: bool = True,
    options: dict | None = None,
    decoder_channels: tuple[int, ...] | list[int] | None = None,
) -> smp.Unet:
    """U-Net (encoder depth 5, decoder ``decoder_channels``, default ``DECODER_CHANNELS``, smp's own:
    the digits study uses a smaller one for its base-width-4 encoders) on a repeatseg encoder (any name
    of a family's grammar; ``options`` are model options, e.g. ``{"gradient": "bireal"}``, added
    to any the name carries in brackets). A pretrained encoder brings the options it was trained
    with (its file's metadata); ``options`` override them.

    ``encoder_weights`` is None, a checkpoint path, or a tag resolved in ``weights_dir`` /
    ``$REPEATSEG_WEIGHTS`` (see ``repeatseg.weights``). Weights are loaded into a 3-channel stem,
    then smp adapts that stem to ``in_channels``, as it does for its own pretrained encoders.
    The load report is kept as ``model.encoder_weights_report`` (None without weights).
    """
    if encoder_weights is not None:
        encoder_weights = resolve_weights(encoder_weights, get_variant(encoder).name, weights_dir)
        options = {**stored_options(read_metadata(encoder_weights), encoder), **(options or {})}
    variant = register(encoder, **(options or {}))
    with options_named(variant):
        model = smp.Unet(
            encoder_name=variant.smp_key,
            encoder_depth=5,
            encoder_weights=None,
            decoder_channels=tuple(decoder_channels or DECODER_CHANNELS),
            in_channels=3 if encoder_weights is not None else in_channels,
            classes=classes,
        )
    model.encoder_variant = variant
    model.encoder_weights_report = None
    if encoder_weights is not None:
        report = load_encoder_weights(
            model.encoder, encoder_weights, encoder_name=variant.name, weights_dir=weights_dir, strict=strict
        )
        log.info("%s", report)
        model.encoder.set_in_channels(in_channels, pretrained=True)
        model.encoder_weights_report = report
    return model


@contextmanager
def options_named(variant):
    """Building a model whose option values are unusable (``score_init=[1,0]``) fails deep in a
    layer; say which model and options, with the layer's own reason."""
    try:
        yield
    except (RuntimeError, TypeError, ValueError, AssertionError) as error:
        if not variant.options:
            raise
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ConfigError(f"cannot build {variant.name} with model options {variant.option_dict}: {reason}") from error


def find_checkpoint(source: str | Path) -> Path:
    """A weights file as given, a model folder's ``model.safetensors`` (``repeatseg.save_pretrained``),
    or a run folder's ``checkpoints/best`` (else ``last``) file."""
    source = Path(source)
    if source.is_dir() and (source / MODEL_FOLDER_WEIGHTS).is_file():
        return source / MODEL_FOLDER_WEIGHTS
    if source.is_dir():
        for name in (BEST, WEIGHTS):
            if (source / CHECKPOINT_DIR / name).is_file():
                return source / CHECKPOINT_DIR / name
        raise MissingFileError(f"no {CHECKPOINT_DIR}/{BEST} or {WEIGHTS} in {source}")
    if not source.is_file():
        raise MissingFileError(f"checkpoint not found: {source}")
    return source


def stored_options(metadata: dict, encoder: str | None = None) -> dict:
    """The model options a checkpoint's metadata records (JSON under ``options``; none in older
    files); with ``encoder``, those its model reads: files written before models refused options
    they do not read may record a whole recipe's (a dense encoder pretrained with the authors')."""
    import json

    options = json.loads(metadata.get("options") or "{}")
    return get_variant(encoder).recipe_options(options) if encoder else options


def segmenter_arguments(metadata: dict, encoder: str | None = None) -> dict:
    """``build_segmenter``'s keyword arguments from a checkpoint's or packed file's metadata
    (classes, in_channels, model options, decoder channels; older files lack some: defaults)."""
    import json

    return dict(classes=int(metadata.get("classes", 21)), in_channels=int(metadata.get("in_channels", 3)),
                options=stored_options(metadata, encoder or metadata.get("encoder")),
                decoder_channels=json.loads(metadata.get("decoder_channels") or "null"))


def decoder_metadata(decoder_channels) -> str:
    """The ``decoder_channels`` metadata value (JSON) of a segmenter built with them."""
    import json

    return json.dumps(list(decoder_channels or DECODER_CHANNELS))


def load_segmenter(source: str | Path, encoder: str | None = None) -> tuple[smp.Unet, dict]:
    """A trained segmenter from a ``train_seg.py`` run folder or checkpoint file, and its metadata
    (which names encoder, classes, in_channels and model options; ``encoder`` overrides or fills
    in the encoder)."""
    from .weights import read_checkpoint

    path = find_checkpoint(source)
    tensors, metadata = read_checkpoint(path)
    what = export_kind(metadata)
    if what is not None and "folded" not in what:  # a folded RepeatNet is its dense twin's checkpoint: it may load
        raise CheckpointError(f"{path} is not a segmenter's training checkpoint: it is {what}")
    encoder = encoder or metadata.get("encoder")
    if not encoder:
        raise CheckpointError(f"{path} does not name its encoder: pass one explicitly (--encoder)")
    model = build_segmenter(encoder, **segmenter_arguments(metadata, encoder))
    try:
        model.load_state_dict(tensors)
    except RuntimeError as error:
        if what is not None:
            raise CheckpointError(f"{path} is {what}: give the run folder or checkpoint it was folded from") from error
        raise CheckpointError(f"{path} does not fit the segmenter {encoder} (classes, options and decoder from its "
                              f"metadata): {str(error).splitlines()[0]} ...") from error
    return model, dict(metadata, encoder=encoder, checkpoint=str(path))


def export_kind(metadata: dict) -> str | None:
    """What an exported weights file is, by its metadata (None for a training checkpoint): a packed
    file loads with ``repeatseg.load_packed``; a folded one (plain convs) is for deployment; an
    exported encoder goes into ``--encoder-weights``."""
    if str(metadata.get("format", "")).startswith("repeatseg-packed"):
        return ("a packed export (tools/export.py --pack): load it with repeatseg.load_packed, or give the run "
                "folder it was exported from")
    if metadata.get("task") == "classification":
        return ("a classification checkpoint (train_cls.py): export its encoder with tools/export_encoder.py and "
                "fine-tune it with train_seg.py --encoder-weights")
    if "folded_from" in metadata:
        fused = ", BN fused" if metadata.get("fused_bn") == "True" else ""
        return (f"a folded export of {metadata['folded_from']} (tools/export.py --fold{fused}: plain convs for "
                "deployment, which its own training segmenter does not load)")
    if "source_sha256" in metadata and metadata.get("task") != "segmentation" and "recipe" in metadata:
        return "an exported encoder (tools/export_encoder.py; give it to train_seg.py --encoder-weights)"
    return None
