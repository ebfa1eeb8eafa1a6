"""Pascal VOC 2012 segmentation (and SBD train_aug) read from disk, with bad data reported by file.

Layout (torchvision's ``VOCSegmentation`` reads the same)::

    VOCdevkit/VOC2012/
      JPEGImages/<id>.jpg
      SegmentationClass/<id>.png        palette PNGs: class indices 0..20, 255 = void
      SegmentationClassAug/<id>.png     SBD-augmented masks (train_aug split; no void band)
      ImageSets/Segmentation/{train,val,trainval,train_aug}.txt
      ImageSets/Segmentation/classes.txt   optional: a dataset's own class names, one per line

A dataset with its own classes (users' data, the digit scenes) lists them in ``classes.txt`` (line
``i`` names class ``i``) or in the config (``data.classes``); without either, VOC's 21 apply.
Masks are read with PIL as indices (``np.array(Image.open(p))``); converting a palette PNG to
"L" or reading it with OpenCV would give luminances, not classes.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..errors import DataError  # noqa: F401  (re-exported)

NUM_CLASSES = 21
IGNORE_INDEX = 255
CLASS_NAMES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
AUG_SPLITS = {"train_aug"}  # splits whose masks live in SegmentationClassAug
CLASS_LIST_FILE = "classes.txt"  # beside the split files

EXPECTED_TREE = """expected a Pascal VOC tree, given as any of ROOT, ROOT/VOCdevkit or ROOT/VOCdevkit/VOC2012:
  ROOT/VOCdevkit/VOC2012/
    JPEGImages/<id>.jpg
    SegmentationClass/<id>.png
    SegmentationClassAug/<id>.png          (only for split train_aug)
    ImageSets/Segmentation/<split>.txt     (train, val, trainval, train_aug)"""


def voc_palette() -> np.ndarray:
    """The standard VOC colour map, (256, 3) uint8: class c's colour from the bits of c."""
    palette = np.zeros((256, 3), dtype=np.uint8)
    for index in range(256):
        c, r, g, b = index, 0, 0, 0
        for shift in range(7, -1, -1):
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette[index] = (r, g, b)
    return palette


def _palette_image(mask: np.ndarray) -> Image.Image:
    mask = np.ascontiguousarray(mask, dtype=np.uint8)
    image = Image.frombytes("P", (mask.shape[1], mask.shape[0]), mask.tobytes())
    image.putpalette(voc_palette().flatten().tolist())
    return image


def save_mask(mask: np.ndarray, path: str | Path) -> None:
    """Write class indices as a VOC palette PNG."""
    _palette_image(mask).save(path)


def mask_png(mask: np.ndarray) -> bytes:
    """Class indices as the bytes of a VOC palette PNG (for an atomic write)."""
    buffer = io.BytesIO()
    _palette_image(mask).save(buffer, format="PNG")
    return buffer.getvalue()


def find_voc_root(path: str | Path) -> Path:
    """The ``VOC2012`` folder, given it, the ``VOCdevkit`` above it, or the folder holding ``VOCdevkit``."""
    path = Path(path).expanduser()
    for candidate in (path, path / "VOC2012", path / "VOCdevkit" / "VOC2012"):
        if (candidate / "JPEGImages").is_dir() and (candidate / "ImageSets" / "Segmentation").is_dir():
            return candidate
    raise DataError(f"no VOC2012 folder found at {path}\n{EXPECTED_TREE}")


def read_split(voc_root: Path, split: str) -> list[str]:
    list_file = voc_root / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not list_file.is_file():
        available = sorted(p.stem for p in list_file.parent.glob("*.txt"))
        raise DataError(f"split file not found: {list_file} (available splits: {', '.join(available) or 'none'})")
    ids = [line.split()[0] for line in list_file.read_text().splitlines() if line.strip()]
    if not ids:
        raise DataError(f"split file {list_file} lists no image ids")
    # An id is a file name stem: a path in it would read, or write predictions, outside the dataset.
    bad = [sample_id for sample_id in ids if Path(sample_id).name != sample_id or sample_id in (".", "..")]
    if bad:
        raise DataError(f"split file {list_file} holds ids that are paths, not file names: {bad[:5]}")
    return ids


def read_class_names(voc_root: Path) -> tuple[str, ...]:
    """The dataset's class names: its ``classes.txt`` beside the split files, else VOC's 21."""
    path = voc_root / "ImageSets" / "Segmentation" / CLASS_LIST_FILE
    if not path.is_file():
        return CLASS_NAMES
    names = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
    if not 2 <= len(names) <= IGNORE_INDEX:
        raise DataError(f"{path} lists {len(names)} classes; expected 2..{IGNORE_INDEX} names, one per line")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:  # two classes under one name would share one per-class IoU entry
        raise DataError(f"{path} names {', '.join(repeated)} more than once; every class needs its own name")
    return names


def write_class_names(voc_root: Path, names: tuple[str, ...] | list[str]) -> None:
    """Write ``classes.txt`` beside the split files (line i names class i)."""
    folder = Path(voc_root) / "ImageSets" / "Segmentation"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CLASS_LIST_FILE).write_text("".join(f"{name}\n" for name in names))


MIN_IMAGE_SIDE = 8  # pixels; smaller images are refused (random scaling would shrink them to nothing)
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def rgb_array(image: Image.Image, path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB of any image PIL opens. 16-bit grayscale (PIL modes ``I;16*``, ``I``) is
    scaled to 8 bits (PIL's own ``convert("RGB")`` clips it, reading a 16-bit image as nearly all
    white); floating-point or deeper images are refused, naming the file."""
    if image.mode in SIXTEEN_BIT_MODES:
        values = np.asarray(image)
        if values.min() < 0 or values.max() > 65535:
            raise DataError(f"image {path} holds {image.mode} values outside 0..65535; convert it to 8 or 16 bits")
        gray = np.round(values.astype(np.float64) / 257.0).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1)
    if image.mode == "F":
        raise DataError(f"image {path} is a floating-point image (PIL mode F); convert it to 8-bit RGB")
    return np.array(image.convert("RGB"))


def read_image(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"missing image: {path}")
    try:
        with Image.open(path) as image:
            array = rgb_array(image, path)
    except DataError:
        raise
    except Exception as error:  # noqa: BLE001 - PIL raises many kinds
        raise DataError(f"unreadable image: {path} ({error})") from error
    if min(array.shape[:2]) < MIN_IMAGE_SIDE:
        raise DataError(f"image {path} is {array.shape[1]}x{array.shape[0]}; images must be at least "
                        f"{MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} pixels")
    return array


def read_mask(path: Path, num_classes: int = NUM_CLASSES) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"missing mask: {path}")
    try:
        with Image.open(path) as image:
            if image.mode not in ("P", "L"):
                raise DataError(f"mask {path} is a {image.mode} image; expected class indices (palette or grayscale PNG)")
            mask = np.array(image)
    except DataError:
        raise
    except Exception as error:  # noqa: BLE001
        raise DataError(f"unreadable mask: {path} ({error})") from error
    bad = np.unique(mask[(mask >= num_classes) & (mask != IGNORE_INDEX)])
    if bad.size:
        raise DataError(f"mask {path} holds values {bad.tolist()[:10]} outside 0..{num_classes - 1} and {IGNORE_INDEX}")
    return mask


class VOCSegmentation(Dataset):
    """VOC segmentation samples as uint8 tensors: image (3, H, W), mask (H, W) with 255 = void.

    ``class_names`` (default: the dataset's ``classes.txt``, else VOC's 21) sets the valid mask
    values: 0..len - 1 and 255. ``transform`` is an albumentations transform (or None); it receives
    ``image``/``mask`` numpy arrays. For reproducible augmentation regardless of worker count or order, each sample's
    transform is seeded from (``seed``, epoch, index); call ``set_epoch`` every epoch.
    """

    def __init__(self, root: str | Path, split: str = "train", transform=None, seed: int = 0,
                 class_names: tuple[str, ...] | list[str] | None = None):
        self.voc_root = find_voc_root(root)
        self.class_names = tuple(class_names) if class_names else read_class_names(self.voc_root)
        self.split = split
        self.ids = read_split(self.voc_root, split)
        mask_dir = "SegmentationClassAug" if split in AUG_SPLITS else "SegmentationClass"
        self.image_dir = self.voc_root / "JPEGImages"
        self.mask_dir = self.voc_root / mask_dir
        self.transform = transform
        self.seed = seed
        self.epoch = 0
        self.decoded: list[tuple[np.ndarray, np.ndarray]] | None = None  # see preload

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def paths(self, index: int) -> tuple[Path, Path]:
        sample_id = self.ids[index]
        return self.image_dir / f"{sample_id}.jpg", self.mask_dir / f"{sample_id}.png"

    def preload(self) -> None:
        """Read and check every sample once and keep the arrays in memory (for small sets such as
        the digit scenes: 3,000 32x32 scenes are 12 MB). Samples are unchanged; bad data is
        reported here, before training, every bad file named."""
        decoded, problems = [], []
        for index in range(len(self)):
            try:
                decoded.append(self.load(index))
            except DataError as error:
                problems.append(str(error))
        if problems:
            raise DataError(f"split {self.split!r} has {len(problems)} bad sample(s):\n  " + "\n  ".join(problems[:20]))
        self.decoded = decoded
    def image_size(self, index: int) -> tuple[int, int]:
        """(height, width) of image ``index`` from its header, without decoding it."""
        path = self.paths(index)[0]
        if not path.is_file():
            raise DataError(f"missing image: {path}")
        try:
            with Image.open(path) as image:
                width, height = image.size
        except Exception as error:  # noqa: BLE001 - PIL raises many kinds
            raise DataError(f"unreadable image: {path} ({error})") from error
        return height, width

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Checked image and mask arrays, untransformed (fresh copies when preloaded)."""
        if self.decoded is not None:
            image, mask = self.decoded[index]
            return image.copy(), mask.copy()
        image_path, mask_path = self.paths(index)
        image, mask = read_image(image_path), read_mask(mask_path, self.num_classes)
        if image.shape[:2] != mask.shape:
            raise DataError(f"mask {mask_path} is {mask.shape[1]}x{mask.shape[0]} but its image is "
                            f"{image.shape[1]}x{image.shape[0]}")
        return image, mask

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        image, mask = self.load(index)
        if self.transform is not None:
            self.transform.set_random_seed(hash((self.seed, self.epoch, index)) % 2**32)
            out = self.transform(image=image, mask=mask)
            image, mask = out["image"], out["mask"]
        image = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
        return image, torch.from_numpy(np.ascontiguousarray(mask)), index


def check_split(root: str | Path, split: str, class_names: tuple[str, ...] | None = None) -> list[str]:
    """Every problem in a split, one message per file (an empty list means clean)."""
    try:
        dataset = VOCSegmentation(root, split, class_names=class_names)
    except DataError as error:
        return [str(error)]
    problems = []
    for index in range(len(dataset)):
        try:
            dataset.load(index)
        except DataError as error:
            problems.append(str(error))
    return problems
