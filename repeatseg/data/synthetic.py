"""A deterministic synthetic dataset in exactly the VOC layout, so tests and the demo run the real reader.

Each of the 20 object classes is a (shape, texture) pair: 5 shapes x 4 textures, drawn in
class-tinted colours with per-instance jitter, at random scale and rotation, several per image
and occluding each other, on a textured background. Telling classes apart needs texture and
shape features, not one flat colour. Object borders get a 255 void band as in VOC. Image ``i``
depends only on (seed, i), so a larger set extends a smaller one.
"""

from __future__ import annotations

import colorsys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import ConfigError
from ..extras import require
from .generate import generate_once
from .voc import IGNORE_INDEX, save_mask

ndimage = require("scipy.ndimage", extra="train")

SHAPES = ("ellipse", "rectangle", "triangle", "diamond", "ring")
TEXTURES = ("stripes", "checker", "dots", "waves")


def class_style(label: int) -> tuple[str, str, float]:
    """Shape, texture and base hue of object class ``label`` (1..20)."""
    return SHAPES[(label - 1) % 5], TEXTURES[(label - 1) // 5], (label * 0.618034) % 1.0


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray, size: float, aspect: float) -> np.ndarray:
    a, b = size, size * aspect
    if shape == "ellipse":
        return (u / a) ** 2 + (v / b) ** 2 <= 1
    if shape == "rectangle":
        return (np.abs(u) <= a) & (np.abs(v) <= b)
    if shape == "triangle":
        return (v <= b) & (v >= -b) & (np.abs(u) <= a * (b - v) / (2 * b))
    if shape == "diamond":
        return np.abs(u) / a + np.abs(v) / b <= 1
    radius = np.hypot(u, v / aspect)
    return (radius <= a) & (radius >= 0.55 * a)  # ring


def _texture(texture: str, u: np.ndarray, v: np.ndarray, period: float) -> np.ndarray:
    if texture == "stripes":
        return (u / period) % 1.0 < 0.5
    if texture == "checker":
        return (np.floor(u / period) + np.floor(v / period)) % 2 == 0
    if texture == "dots":
        return (u % period - period / 2) ** 2 + (v % period - period / 2) ** 2 < (period / 3) ** 2
    return np.sin(2 * np.pi * u / period + 2.0 * np.sin(2 * np.pi * v / (2 * period))) > 0  # waves


def _rgb(hue: float, saturation: float, value: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(hue % 1.0, saturation, value)) * 255


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Smooth colour blobs plus fine noise: busy, but without the objects' regular textures."""
    coarse = rng.uniform(0, 255, size=(3, max(2, height // 24), max(2, width // 24)))
    smooth = np.stack([ndimage.zoom(c, (height / c.shape[0], width / c.shape[1]), order=3)[:height, :width]
                       for c in coarse], axis=-1)
    return np.clip(0.6 * smooth + 40 + rng.normal(0, 12, size=(height, width, 3)), 0, 255)


def draw_object(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, label: int,
                size_range: tuple[float, float] = (0.12, 0.4), centred: bool = False) -> None:
    """Paint one object of class ``label`` (1..20) into ``image`` and ``mask`` in place."""
    height, width = mask.shape
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    shape, texture, hue = class_style(label)
    size = rng.uniform(*size_range) * min(height, width)
    if centred:
        cy, cx = rng.uniform(0.4, 0.6) * height, rng.uniform(0.4, 0.6) * width
    else:
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
    angle = rng.uniform(0, np.pi)
    u = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
    v = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)
    region = _shape_mask(shape, u, v, size, rng.uniform(0.6, 1.0))
    if region.sum() < 16:
        return
    pattern = _texture(texture, u, v, period=rng.uniform(4, 9))
    primary = _rgb(hue + rng.uniform(-0.06, 0.06), rng.uniform(0.5, 1.0), rng.uniform(0.6, 1.0))
    secondary = primary * rng.uniform(0.2, 0.5)
    fill = np.where(pattern[..., None], primary, secondary) + rng.normal(0, 8, size=(height, width, 3))
    image[region] = fill[region]
    mask[region] = label


def make_sample(seed: int, index: int, min_size: int = 160, max_size: int = 256, max_objects: int = 4,
                void_band: int = 3, classes: tuple[int, ...] = tuple(range(1, 21))) -> tuple[np.ndarray, np.ndarray]:
    """Image (H, W, 3) uint8 and mask (H, W) uint8 of sample ``index``; objects drawn from ``classes``."""
    rng = np.random.default_rng([seed, index])
    height, width = (int(s) for s in rng.integers(min_size, max_size + 1, size=2))
    image = _background(rng, height, width)
    mask = np.zeros((height, width), dtype=np.uint8)
    for _ in range(int(rng.integers(1, max_objects + 1))):
        draw_object(image, mask, rng, int(classes[rng.integers(len(classes))]))
    if void_band:
        size = 2 * void_band - 1
        border = ndimage.grey_dilation(mask, size=size) != ndimage.grey_erosion(mask, size=size)
        mask[border] = IGNORE_INDEX
    return np.clip(image, 0, 255).astype(np.uint8), mask


def make_class_image(seed: int, index: int, label: int, size: int = 96) -> np.ndarray:
    """One centred object of class ``label`` on a textured background (the classification set)."""
    rng = np.random.default_rng([seed, index, label])
    image = _background(rng, size, size)
    draw_object(image, np.zeros((size, size), np.uint8), rng, label, size_range=(0.25, 0.45), centred=True)
    return np.clip(image, 0, 255).astype(np.uint8)


def synthetic_voc_recipe(num_train: int = 200, num_val: int = 50, seed: int = 0, min_size: int = 160,
                         max_size: int = 256, classes: tuple[int, ...] = tuple(range(1, 21))) -> dict:
    """Every argument that decides a synthetic VOC set's content (its data marker records it)."""
    return {"generator": "synthetic_voc", "version": 1, "num_train": num_train, "num_val": num_val, "seed": seed,
            "min_size": min_size, "max_size": max_size, "classes": sorted(set(classes))}


def make_synthetic_voc(output: str | Path, num_train: int = 200, num_val: int = 50, seed: int = 0,
                       min_size: int = 160, max_size: int = 256, classes: tuple[int, ...] = tuple(range(1, 21)),
                       progress: bool = False, accept=None) -> Path:
    """Write ``output/VOCdevkit/VOC2012`` with train, val and trainval splits; returns the VOC2012 folder.

    ``classes`` restricts the object classes drawn (tests use a few for a quick, clear signal).
    ``VOCdevkit`` is written once, atomically and claimed (``repeatseg.data.generate``): the same call
    again finds it; other arguments over an existing set are refused (``accept`` as there).
    """
    if not classes or not set(classes) <= set(range(1, 21)):
        raise ConfigError(f"classes must be a non-empty subset of 1..20, got {classes}")
    if num_train < 1 or num_val < 1 or not 32 <= min_size <= max_size or seed < 0:
        raise ConfigError(f"need num_train, num_val >= 1, 32 <= min_size <= max_size and seed >= 0; got "
                          f"{num_train}, {num_val}, {min_size}, {max_size}, seed {seed}")

    def write(devkit: Path) -> None:
        voc = devkit / "VOC2012"
        for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
            (voc / sub).mkdir(parents=True, exist_ok=True)
        ids = [f"synth_{i:06d}" for i in range(num_train + num_val)]
        iterator = range(len(ids))
        if progress:
            from tqdm import tqdm

            iterator = tqdm(iterator, desc="synthetic VOC", unit="img")
        for index in iterator:
            image, mask = make_sample(seed, index, min_size, max_size, classes=tuple(classes))
            Image.fromarray(image).save(voc / "JPEGImages" / f"{ids[index]}.jpg", quality=92)
            save_mask(mask, voc / "SegmentationClass" / f"{ids[index]}.png")
        lists = {"train": ids[:num_train], "val": ids[num_train:], "trainval": ids}
        for split, names in lists.items():
            (voc / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("".join(f"{n}\n" for n in names))

    recipe = synthetic_voc_recipe(num_train, num_val, seed, min_size, max_size, classes)
    return generate_once(Path(output) / "VOCdevkit", recipe, write, accept=accept) / "VOC2012"


def synthetic_imagenet_recipe(num_classes: int = 10, per_class: int = 50, val_per_class: int = 10, seed: int = 0,
                              size: int = 96) -> dict:
    """Every argument that decides a synthetic ImageFolder set's content."""
    return {"generator": "synthetic_imagenet", "version": 1, "num_classes": num_classes, "per_class": per_class,
            "val_per_class": val_per_class, "seed": seed, "size": size}


def make_synthetic_imagenet(output: str | Path, num_classes: int = 10, per_class: int = 50, val_per_class: int = 10,
                            seed: int = 0, size: int = 96, progress: bool = False, accept=None) -> Path:
    """Write an ImageFolder set (``train/<wnid>/*.JPEG``, ``val/<wnid>/*.JPEG``) of ``num_classes``
    textured-shape classes (the segmentation classes 1..20) once, atomically and claimed, as
    ``make_synthetic_voc``; returns ``output``."""
    if not 1 <= num_classes <= 20:
        raise ConfigError(f"num_classes must be in 1..20, got {num_classes}")
    if per_class < 1 or val_per_class < 1 or size < 8 or seed < 0:
        raise ConfigError(f"need per_class, val_per_class >= 1, size >= 8 and seed >= 0; got {per_class}, "
                          f"{val_per_class}, {size}, seed {seed}")

    def write(folder: Path) -> None:
        jobs = [(split, label, i) for split, count in (("train", per_class), ("val", val_per_class))
                for label in range(1, num_classes + 1) for i in range(count)]
        if progress:
            from tqdm import tqdm

            jobs = tqdm(jobs, desc="synthetic ImageFolder", unit="img")
        for split, label, i in jobs:
            class_folder = folder / split / f"n{label:08d}"
            class_folder.mkdir(parents=True, exist_ok=True)
            index = i if split == "train" else per_class + i  # val images are never train images
            image = make_class_image(seed, index, label, size)
            Image.fromarray(image).save(class_folder / f"{split}_{label:02d}_{i:05d}.JPEG", quality=92)

    recipe = synthetic_imagenet_recipe(num_classes, per_class, val_per_class, seed, size)
    return generate_once(output, recipe, write, accept=accept)


def accept_for_config(key: str, wanted, layout: str) -> Callable[[Path, dict | None], bool]:
    """For a config that writes a set if absent and decides only ``key`` of it (``wanted`` None:
    any value): take an existing set whose recipe agrees on ``key``, or one without a marker that
    has ``layout`` (a set written before markers existed, or a real data set), as it always did."""
    def accept(folder: Path, recipe: dict | None) -> bool:
        if recipe is None:
            return (folder / layout).is_dir()
        return wanted is None or recipe.get(key) == wanted
    return accept
