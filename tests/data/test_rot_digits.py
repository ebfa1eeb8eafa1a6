"""Rotated real digits: traceable to their CSV row and angle, stratified, written atomically and never
rewritten; the MNIST-rot .amat reader; the authors' augmentation."""

import csv
import json
import multiprocessing
import os

import numpy as np
import pytest
import torch
from PIL import Image

from repeatseg.data import DataError
from repeatseg.data.digits import load_mnist_5k
from repeatseg.data.rot_digits import (
    INDEX_FILE,
    RECIPE_FILE,
    RotationDigits,
    make_rot_digits,
    read_amat,
    read_mnist_rot,
    read_rot_digits,
    rotate,
    rotation_angles,
    rotation_datasets,
    rotation_transforms,
)


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    """3 training and 2 test digits of every class."""
    return make_rot_digits(tmp_path_factory.mktemp("rot") / "set", seed=5, train_per_class=3, test_per_class=2)


def _index(root):
    with open(root / INDEX_FILE, newline="") as handle:
        return list(csv.DictReader(handle))


def _snapshot(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_every_image_is_its_csv_row_rotated_by_its_recorded_angle(small_set):
    images, labels = load_mnist_5k()
    records = _index(small_set)
    assert len(records) == 50
    angles = rotation_angles(5, len(labels))
    for record in records:
        row, angle = int(record["row"]), float(record["angle_deg"])
        assert 0.0 <= angle < 360.0 and angle == pytest.approx(angles[row], abs=1e-6)
        assert int(record["label"]) == labels[row] and record["file"] == f"{record['split']}/{labels[row]}/{row}.png"
        stored = np.asarray(Image.open(small_set / record["file"]))
        np.testing.assert_array_equal(stored, rotate(images[row], angles[row]))


def test_split_is_stratified_and_disjoint(small_set):
    records = _index(small_set)
    for split, per_class in (("train", 3), ("test", 2)):
        counts = np.bincount([int(r["label"]) for r in records if r["split"] == split], minlength=10)
        assert counts.tolist() == [per_class] * 10
    train = {r["row"] for r in records if r["split"] == "train"}
    assert not train & {r["row"] for r in records if r["split"] == "test"}


def test_rotation_is_a_real_rotation_of_the_digit():
    images, _ = load_mnist_5k()
    np.testing.assert_array_equal(rotate(images[0], 90.0), np.rot90(images[0]))  # counter-clockwise
    assert abs(int(rotate(images[0], 33.0).sum()) - int(images[0].sum())) < 0.1 * images[0].sum()  # little clipped


def test_the_same_arguments_find_the_set_and_others_are_refused_without_a_change(small_set):
    before = _snapshot(small_set)
    assert make_rot_digits(small_set, seed=5, train_per_class=3, test_per_class=2) == small_set
    with pytest.raises(DataError, match="train_per_class 3 .asked 4."):
        make_rot_digits(small_set, seed=5, train_per_class=4, test_per_class=2)
    with pytest.raises(DataError, match="seed 5 .asked 6."):
        make_rot_digits(small_set, seed=6, train_per_class=3, test_per_class=2)
    assert _snapshot(small_set) == before


def test_a_folder_that_is_not_a_set_is_refused(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(DataError, match="not a rotated-digits set"):
        make_rot_digits(tmp_path / "mine", train_per_class=1, test_per_class=1)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"
    with pytest.raises(DataError, match="add up to at most 500"):
        make_rot_digits(tmp_path / "other", train_per_class=450, test_per_class=100)
    assert not (tmp_path / "other").exists()


def test_a_killed_writer_leaves_no_set_and_its_leftovers_are_cleaned(tmp_path, monkeypatch):
    from repeatseg.data import rot_digits

    def dies(output, recipe, progress=False):
        (output / "train").mkdir()
        raise KeyboardInterrupt

    monkeypatch.setattr(rot_digits, "write_rot_digits", dies)
    with pytest.raises(KeyboardInterrupt):
        make_rot_digits(tmp_path / "set", train_per_class=1, test_per_class=1)
    assert not (tmp_path / "set").exists() and not list(tmp_path.glob(".set.*.tmp"))
    (tmp_path / ".set.abc.tmp").mkdir()  # as a SIGKILL would leave it
    monkeypatch.undo()
    make_rot_digits(tmp_path / "set", train_per_class=1, test_per_class=1)
    assert (tmp_path / "set" / RECIPE_FILE).is_file() and not list(tmp_path.glob(".set.*.tmp"))


def _write(root, queue):
    make_rot_digits(root, seed=1, train_per_class=2, test_per_class=1)
    queue.put(json.loads((root / RECIPE_FILE).read_text())["seed"])


def test_two_processes_writing_one_set_at_once_agree(tmp_path):
    context = multiprocessing.get_context("fork")  # both start at once; spawn would spend its time importing torch
    queue = context.Queue()
    workers = [context.Process(target=_write, args=(tmp_path / "set", queue)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert [w.exitcode for w in workers] == [0, 0]
    assert [queue.get(timeout=5), queue.get(timeout=5)] == [1, 1]
    assert len(_index(tmp_path / "set")) == 30 and not list(tmp_path.glob(".set.*.tmp"))


def test_reader_gives_float_digits_with_labels(small_set):
    images, labels, records = read_rot_digits(small_set, "test")
    assert images.shape == (20, 28, 28) and images.dtype == np.float32
    assert 0.0 <= images.min() and images.max() <= 1.0 and images.max() > 0.5
    assert labels.tolist() == [int(r["label"]) for r in records]
    with pytest.raises(DataError, match="no image of split 'val'"):
        read_rot_digits(small_set, "val")


def test_amat_reader_reads_the_mnist_rot_format(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.uniform(0, 1, size=(3, 784))
    labels = np.array([7, 0, 9])
    lines = [" ".join(f"{v:.8e}" for v in [*p, float(label)]) for p, label in zip(pixels, labels)]
    (tmp_path / "mnist_all_rotation_normalized_float_test.amat").write_text("\n".join(lines) + "\n")
    images, read_labels = read_mnist_rot(tmp_path, "test")
    assert images.shape == (3, 28, 28) and read_labels.tolist() == [7, 0, 9]
    np.testing.assert_allclose(images[1], pixels[1].reshape(28, 28), rtol=1e-6)
    (tmp_path / "short.amat").write_text("0.5 0.5 1\n")
    with pytest.raises(DataError, match="785 numbers"):
        read_amat(tmp_path / "short.amat")
    (tmp_path / "label.amat").write_text(" ".join(["0.1"] * 784 + ["12"]) + "\n")
    with pytest.raises(DataError, match="digit 0-9"):
        read_amat(tmp_path / "label.amat")
    with pytest.raises(DataError, match="no MNIST-rot file"):
        read_mnist_rot(tmp_path, "train")


def test_authors_eval_transform_only_pads_and_train_transform_keeps_size_and_range():
    train, evaluation = rotation_transforms(29, hflip=0.5, vflip=0.5, eval_resample=False)
    image = np.random.default_rng(0).uniform(0, 1, size=(28, 28)).astype(np.float32)
    padded = evaluation(Image.fromarray(image, mode="F"))
    assert padded.shape == (1, 29, 29)
    torch.testing.assert_close(padded[0, :28, :28], torch.from_numpy(image))
    assert padded[0, 28].abs().sum() == 0 and padded[0, :, 28].abs().sum() == 0
    augmented = train(Image.fromarray(image, mode="F"))
    assert augmented.shape == (1, 29, 29) and augmented.min() >= -1e-6 and augmented.max() <= 1 + 1e-6
    names = [type(t).__name__ for t in rotation_transforms(29, hflip=0.0, vflip=0.0)[0].transforms]
    assert "RandomHorizontalFlip" not in names and "RandomVerticalFlip" not in names and "RandomRotation" in names


def test_default_eval_transform_resamples_like_training_without_rotation_or_flips():
    train, evaluation = rotation_transforms(29, hflip=0.0, vflip=0.0)
    image = np.zeros((28, 28), np.float32)
    image[8:20, 13:15] = 1.0  # a sharp vertical stroke
    resampled = evaluation(Image.fromarray(image, mode="F"))
    padded = rotation_transforms(29, eval_resample=False)[1](Image.fromarray(image, mode="F"))
    assert resampled.shape == padded.shape == (1, 29, 29)
    # blurred like the training path (two bilinear resamplings) but not moved: same centre of mass
    assert resampled.max() < 1 and (resampled > 0).sum() > (padded > 0).sum()
    grid = torch.arange(29.0)
    for image_tensor in (resampled, padded):
        mass = image_tensor[0].sum()
        centre = ((image_tensor[0].sum(1) * grid).sum() / mass, (image_tensor[0].sum(0) * grid).sum() / mass)
        assert abs(centre[1] - 13.5) < 0.6 and abs(centre[0] - 13.5) < 0.6
    names = [type(t).__name__ for t in evaluation.transforms]
    assert names == ["Pad", "Resize", "Resize", "ToTensor"]
    assert [type(t).__name__ for t in train.transforms] == ["Pad", "Resize", "RandomRotation", "Resize", "ToTensor"]


def test_augmentation_depends_on_seed_epoch_and_index_only(small_set):
    train, _ = rotation_datasets("rot_digits", small_set, "train", "test", seed=3)
    first = train[4][0]
    torch.manual_seed(123)
    torch.testing.assert_close(train[4][0], first)
    train.set_epoch(1)
    assert not torch.equal(train[4][0], first)
    assert len(train) == 30 and train.classes == [str(d) for d in range(10)]


def test_dataset_refuses_images_of_another_shape():
    with pytest.raises(DataError, match="28, 28"):
        RotationDigits(np.zeros((2, 32, 32), np.float32), np.zeros(2, np.int64), transform=None)


def test_make_rot_digits_tool_writes_then_finds_then_refuses(cli, tmp_path):
    output = tmp_path / "tool"
    code, out, _ = cli("--output", output, "--train-per-class", 1, "--test-per-class", 1, tool="make_rot_digits")
    assert code == 0 and out.startswith("wrote") and "10 train + 10 test" in out
    code, out, _ = cli("--output", output, "--train-per-class", 1, "--test-per-class", 1, tool="make_rot_digits")
    assert code == 0 and out.startswith("found")
    code, _, err = cli("--output", output, "--train-per-class", 2, tool="make_rot_digits")
    assert code == 2 and str(output) in err and "other arguments" in err
    assert os.path.isfile(output / RECIPE_FILE)
