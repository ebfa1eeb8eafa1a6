"""Tiny registered variants (base width 8) so that model tests run in milliseconds on CPU."""

from __future__ import annotations

import repeatseg
from repeatseg.variants import EncoderVariant, Variant

TINY_BASE = 8
TRANSFORMS = (None, "linear", "swish", "flip")


def tiny(arch: str = "resnet18", width: int = 2, transform: str | None = "flip") -> EncoderVariant:
    """Register (idempotently) and return a base-width-8 variant, e.g. ``repeat_r18_f2_b8``."""
    return repeatseg.register(EncoderVariant(arch, width, transform, base_width=TINY_BASE))


def tiny_named(name: str) -> Variant:
    """Register (idempotently) and return a variant by name, e.g. ``basis_r18_s4u1_b8``."""
    return repeatseg.register(name)


TINY_NAMES = [
    tiny(arch, width, t).name
    for arch in ("resnet18", "resnet34")
    for t in TRANSFORMS
    for width in ((1, 2, 4) if t is None else (2, 4))
]

# One or two tiny members of every other family (the family table's other rows).
FAMILY_TINY_NAMES = [tiny_named(name).name for name in (
    "basis_r18_s4u1_b8", "basis_r34_s4u1d_b8",
    "dacnn_r18_mix_reg_b8", "dacnn_r18_plain_b8",
)]


def run_killed_at_epoch(train, epoch: int):
    """Run ``train()`` as if the job were killed when epoch ``epoch`` (0-based) starts.

    Earlier epochs finish and are checkpointed; the KeyboardInterrupt is swallowed here.
    """
    from repeatseg.engine.trainer import Trainer

    original = Trainer.train_one_epoch

    def killed(self, current):
        if current == epoch:
            raise KeyboardInterrupt
        return original(self, current)

    Trainer.train_one_epoch = killed
    try:
        train()
    except KeyboardInterrupt:
        pass
    else:
        raise AssertionError(f"the run ended before epoch {epoch}")
    finally:
        Trainer.train_one_epoch = original


def write_tiny_digits(root, train_per_class: int, val_per_class: int, train_scenes: int, val_scenes: int):
    """A digits folder in make_digits' layout (``ensure_digits`` accepts it) with a few real digits
    per class and a few scenes, drawn from the seed-0 split; returns ``root``."""
    from repeatseg.data.digits import SceneStyle, load_mnist_5k, stratified_split, write_classification, write_scenes

    images, labels = load_mnist_5k()
    train, held_out = stratified_split(labels, seed=0)
    write_classification(root / "cls", images, labels, {
        "train": [r for d in range(10) for r in train[labels[train] == d][:train_per_class]],
        "val": [r for d in range(10) for r in held_out[labels[held_out] == d][:val_per_class]]})
    write_scenes(root / "seg", images, labels, {"train": (train, train_scenes), "val": (held_out, val_scenes)},
                 seed=0, style=SceneStyle())
    return root
