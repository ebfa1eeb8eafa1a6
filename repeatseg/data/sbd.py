"""SBD (Hariharan et al.) -> the VOC "train_aug" convention used by every VOC segmentation recipe.

SBD's ``benchmark_RELEASE/dataset/cls/<id>.mat`` holds ``GTcls.Segmentation`` (class indices,
no void band). The conversion writes ``VOC2012/SegmentationClassAug/<id>.png`` for every SBD
image and copies VOC's own train masks there too, then writes
``ImageSets/Segmentation/train_aug.txt`` = (VOC train | SBD train | SBD val) - VOC val:
10,582 ids for the real data. No VOC val id can enter the list; the function checks it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from ..extras import require
from .voc import DataError, find_voc_root, read_split, save_mask

loadmat = require("scipy.io", extra="train").loadmat


def read_sbd_mask(path: Path) -> np.ndarray:
    try:
        mat = loadmat(str(path), squeeze_me=True, struct_as_record=False)
        return np.asarray(mat["GTcls"].Segmentation, dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"missing SBD mask: {path}") from None
    except Exception as error:  # noqa: BLE001 - scipy raises many kinds
        raise DataError(f"unreadable SBD mask: {path} ({error})") from error


def convert_sbd(sbd_root: str | Path, voc_root: str | Path, progress: bool = False) -> list[str]:
    """Write SegmentationClassAug and train_aug.txt under ``voc_root``; returns the train_aug ids."""
    sbd = Path(sbd_root).expanduser()
    dataset = sbd / "dataset" if (sbd / "dataset").is_dir() else sbd
    if not (dataset / "cls").is_dir():
        raise DataError(f"no SBD cls/ folder under {sbd} (expected benchmark_RELEASE/dataset/cls/<id>.mat)")
    voc = find_voc_root(voc_root)
    voc_train, voc_val = read_split(voc, "train"), set(read_split(voc, "val"))
    sbd_ids = []
    for name in ("train", "val"):
        list_file = dataset / f"{name}.txt"
        if not list_file.is_file():
            raise DataError(f"missing SBD split file: {list_file}")
        sbd_ids += list_file.read_text().split()

    out = voc / "SegmentationClassAug"
    out.mkdir(exist_ok=True)
    train_aug = sorted(set(voc_train) | (set(sbd_ids) - voc_val))
    leaked = voc_val.intersection(train_aug)
    if leaked:  # only possible if VOC's own train and val lists overlap
        raise DataError(f"refusing to write train_aug: VOC val ids would be included: {sorted(leaked)[:5]}")
    ids = train_aug
    if progress:
        from tqdm import tqdm

        ids = tqdm(ids, desc="SBD -> SegmentationClassAug", unit="img")
    voc_train_set = set(voc_train)
    for sample_id in ids:
        if not (voc / "JPEGImages" / f"{sample_id}.jpg").is_file():
            raise DataError(f"SBD id {sample_id} has no image {voc / 'JPEGImages' / f'{sample_id}.jpg'}")
        target = out / f"{sample_id}.png"
        if sample_id in voc_train_set:  # VOC's own annotation wins over SBD's
            shutil.copyfile(voc / "SegmentationClass" / f"{sample_id}.png", target)
        else:
            save_mask(read_sbd_mask(dataset / "cls" / f"{sample_id}.mat"), target)
    (voc / "ImageSets" / "Segmentation" / "train_aug.txt").write_text("".join(f"{i}\n" for i in train_aug))
    return train_aug
