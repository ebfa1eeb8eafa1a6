"""ImageNet-style classification data: the ImageFolder layout, timm's transforms, uint8 to the device.

Layout: ``ROOT/train/<wnid>/*.JPEG`` and ``ROOT/val/<wnid>/*.JPEG``. ImageNet's original
validation folder is flat (50,000 images, labels in the devkit); give its labels with a text file
(``val_labels``: one ``<file name> <wnid>`` per line; Kaggle's ``LOC_val_solution.csv`` also
works) or move each image into its ``val/<wnid>/`` folder.
"""

from __future__ import annotations

import random
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from timm.data import create_transform
from torch.utils.data import Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes

from ..errors import ConfigError
from .voc import DataError, rgb_array

FLAT_VAL_HELP = (
    "its images are not in class folders (the original ImageNet val layout). Either pass "
    "--val-labels FILE with one '<file name> <wnid>' per line (Kaggle's LOC_val_solution.csv works too), "
    "or restructure it as val/<wnid>/<image>.JPEG"
)


@contextmanager
def seeded(seed: int):
    """Run with python's and torch's global CPU RNGs seeded, restoring them afterwards (timm's
    transforms draw from both, on the CPU), so a sample's augmentation depends on its seed alone.
    Only the CPU generator is seeded, as ``torch.manual_seed`` seeds it: that function also seeds
    every accelerator's generator, which before CUDA starts means formatting the call stack to
    queue the call (0.3 ms a sample, more than the digits' whole transform)."""
    python_state, torch_state = random.getstate(), torch.get_rng_state()
    random.seed(seed)
    torch.default_generator.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(python_state)
        torch.set_rng_state(torch_state)


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS)


def _read_labels(path: Path) -> dict[str, str]:
    """file stem -> wnid from '<file> <wnid>' lines or a LOC_val_solution.csv."""
    labels = {}
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("ImageId"):
            continue
        name, _, rest = line.replace(",", " ", 1).partition(" ")
        if not rest.strip():
            raise DataError(f"{path}: cannot read a label from line {line!r}")
        labels[Path(name).stem] = rest.split()[0]
    return labels


class ImageFolderClassification(Dataset):
    """(uint8 image (3, H, W), class index) samples of one split, augmented reproducibly per (seed, epoch, index)."""

    def __init__(self, root: str | Path, split: str, transform=None, val_labels: str | Path | None = None,
                 classes: list[str] | None = None, seed: int = 0):
        folder = Path(root).expanduser() / split
        if not folder.is_dir():
            raise DataError(f"no {split}/ folder in {root}: expected ROOT/train/<wnid>/*.JPEG and ROOT/val/<wnid>/*.JPEG")
        subfolders = [p for p in folder.iterdir() if p.is_dir()]
        if classes is None:
            classes = find_classes(str(folder))[0] if subfolders else []
        self.classes = classes
        index = {name: i for i, name in enumerate(classes)}
        if subfolders:
            unknown = sorted({p.name for p in subfolders} - set(classes))
            if unknown:
                raise DataError(f"{folder} has class folders not in train/: {unknown[:5]}")
            self.samples = [(path, index[p.name]) for p in sorted(subfolders) for path in _images_in(p)]
        elif _images_in(folder):
            if val_labels is None:
                raise DataError(f"{folder}: {FLAT_VAL_HELP}")
            labels = _read_labels(Path(val_labels))
            missing = [p.name for p in _images_in(folder) if p.stem not in labels]
            if missing:
                raise DataError(f"{val_labels} has no label for {len(missing)} images of {folder}, e.g. {missing[:3]}")
            unknown = sorted({labels[p.stem] for p in _images_in(folder)} - set(classes))
            if unknown:
                raise DataError(f"{val_labels} names classes that train/ lacks: {unknown[:5]}")
            self.samples = [(p, index[labels[p.stem]]) for p in _images_in(folder)]
        else:
            raise DataError(f"{folder} holds no images")
        if not self.samples:
            raise DataError(f"{folder} holds no images")
        self.transform, self.seed, self.epoch = transform, seed, 0
        self.decoded: list[np.ndarray] | None = None  # see preload

    def __len__(self) -> int:
        return len(self.samples)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def preload(self) -> None:
        """Decode every image once and keep the pixels in memory (for small sets such as the digits:
        5,000 28x28 images are 12 MB). Samples are unchanged: the transform sees the same pixels."""
        self.decoded = [np.asarray(self._decode(path)) for path, _ in self.samples]

    def load(self, index: int) -> Image.Image:
        """The sample's RGB image, untransformed (a fresh copy when preloaded)."""
        if self.decoded is not None:
            return Image.fromarray(self.decoded[index])
        return self._decode(self.samples[index][0])

    @staticmethod
    def _decode(path: Path) -> Image.Image:
        try:
            with Image.open(path) as image:
                return Image.fromarray(rgb_array(image, path))
        except DataError:
            raise
        except Exception as error:  # noqa: BLE001
            raise DataError(f"unreadable image: {path} ({error})") from error

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.load(index)
        with seeded(hash((self.seed, self.epoch, index)) % 2**32):
            return self.transform(image), self.samples[index][1]


def classification_transforms(image_size: int = 224, crop_pct: float = 0.875, scale=(0.08, 1.0),
                              hflip: float = 0.5, color_jitter: float = 0.0, affine: dict | None = None):
    """timm's standard ImageNet presets, ending in uint8 tensors (normalised later, on the device):
    train = random resized crop + flip; eval = resize to size / crop_pct (256 for 224) + centre crop.
    ``affine`` (torchvision ``RandomAffine`` arguments: degrees, scale, shear) goes first, before the
    crop, as in the RepeatNet authors' ImageNet code. A ``color_jitter`` of 0 leaves timm's jitter out:
    it would change no pixel, only draw a permutation from torch's RNG after every other draw (the
    sample's RNG is restored after it), in a third of the digits' transform time."""
    train = create_transform(image_size, is_training=True, scale=tuple(scale), hflip=hflip,
                             color_jitter=color_jitter or None, use_prefetcher=True)
    if affine:
        from torchvision.transforms import RandomAffine

        try:
            train.transforms.insert(0, RandomAffine(**affine))
        except (TypeError, ValueError) as error:
            raise ConfigError(f"data.affine {affine}: not RandomAffine arguments (degrees, translate, scale, shear): "
                              f"{error}") from error
    evaluation = create_transform(image_size, is_training=False, crop_pct=crop_pct, use_prefetcher=True)
    return train, evaluation
