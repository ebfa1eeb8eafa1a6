"""The VOC reader against the on-disk layout, root variants, SBD layout, and every bad-data case."""

import numpy as np
import pytest
import torch
from PIL import Image

from repeatseg.data import DataError, VOCSegmentation, check_split, find_voc_root, save_mask
from repeatseg.data.synthetic import make_synthetic_voc


@pytest.fixture()
def voc(tmp_path):
    return make_synthetic_voc(tmp_path / "data", num_train=6, num_val=3, seed=1, min_size=48, max_size=64)


def test_reader_returns_uint8_image_and_mask_as_stored(voc):
    dataset = VOCSegmentation(voc.parent.parent, "train")
    image, mask, index = dataset[2]
    assert image.dtype == torch.uint8 and image.shape[0] == 3 and mask.dtype == torch.uint8
    stored = np.array(Image.open(voc / "SegmentationClass" / f"{dataset.ids[2]}.png"))
    assert torch.equal(mask, torch.from_numpy(stored)) and index == 2
    assert set(np.unique(stored)) <= set(range(21)) | {255} and 255 in stored


@pytest.mark.parametrize("level", ["root", "VOCdevkit", "VOC2012"])
def test_data_root_may_be_any_of_three_levels(voc, level):
    path = {"root": voc.parent.parent, "VOCdevkit": voc.parent, "VOC2012": voc}[level]
    assert find_voc_root(path) == voc
    assert len(VOCSegmentation(path, "val")) == 3


def test_wrong_root_shows_the_expected_tree(tmp_path):
    with pytest.raises(DataError, match="JPEGImages/<id>.jpg"):
        VOCSegmentation(tmp_path, "train")


def test_unknown_split_lists_available_ones(voc):
    with pytest.raises(DataError, match="available splits: train, trainval, val"):
        VOCSegmentation(voc, "train_aug")


def test_train_aug_reads_segmentation_class_aug(voc):
    (voc / "SegmentationClassAug").mkdir()
    ids = (voc / "ImageSets/Segmentation/train.txt").read_text().split()[:2]
    for sample_id in ids:
        mask = np.array(Image.open(voc / "SegmentationClass" / f"{sample_id}.png"))
        save_mask(np.where(mask == 255, 0, mask), voc / "SegmentationClassAug" / f"{sample_id}.png")
    (voc / "ImageSets/Segmentation/train_aug.txt").write_text("\n".join(ids) + "\n")
    dataset = VOCSegmentation(voc, "train_aug")
    assert dataset.mask_dir.name == "SegmentationClassAug" and 255 not in dataset[0][1]


def _corrupt(voc, sample_id, kind):
    image_path, mask_path = voc / "JPEGImages" / f"{sample_id}.jpg", voc / "SegmentationClass" / f"{sample_id}.png"
    if kind == "missing image":
        image_path.unlink()
    elif kind == "missing mask":
        mask_path.unlink()
    elif kind == "unreadable":
        image_path.write_bytes(b"not a jpeg")
    elif kind == "size":
        save_mask(np.zeros((5, 7), np.uint8), mask_path)
    elif kind == "values":
        mask = np.array(Image.open(mask_path))
        mask[0, 0] = 37
        save_mask(mask, mask_path)
    elif kind == "rgb mask":
        Image.open(mask_path).convert("RGB").save(mask_path)
    return image_path if kind in ("missing image", "unreadable") else mask_path


@pytest.mark.parametrize("kind, message", [
    ("missing image", "missing image"), ("missing mask", "missing mask"), ("unreadable", "unreadable image"),
    ("size", "is 7x5 but its image is"), ("values", r"values \[37\] outside 0..20 and 255"),
    ("rgb mask", "is a RGB image"),
])
def test_bad_data_is_reported_with_the_file(voc, kind, message):
    dataset = VOCSegmentation(voc, "train")
    path = _corrupt(voc, dataset.ids[1], kind)
    with pytest.raises(DataError, match=message) as error:
        dataset[1]
    assert str(path) in str(error.value)


def test_check_split_lists_every_problem(voc):
    ids = VOCSegmentation(voc, "train").ids
    paths = [_corrupt(voc, ids[0], "missing mask"), _corrupt(voc, ids[3], "values")]
    problems = check_split(voc, "train")
    assert len(problems) == 2 and all(str(p) in " ".join(problems) for p in paths)
    assert check_split(voc, "val") == []


def test_synthetic_set_is_deterministic_and_extends(tmp_path):
    small = make_synthetic_voc(tmp_path / "a", num_train=2, num_val=1, seed=3, min_size=48, max_size=64)
    large = make_synthetic_voc(tmp_path / "b", num_train=4, num_val=1, seed=3, min_size=48, max_size=64)
    for name in ("JPEGImages/synth_000000.jpg", "SegmentationClass/synth_000001.png"):
        assert (small / name).read_bytes() == (large / name).read_bytes()
    assert Image.open(small / "SegmentationClass" / "synth_000000.png").mode == "P"
