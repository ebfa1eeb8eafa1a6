"""The faster digits data path gives the samples of the old one: images decoded once into memory, the
per-sample seed set on the CPU generator only, and timm's no-op colour jitter left out."""

import random

import pytest
import torch
from PIL import Image
from timm.data import create_transform
from tiny import write_tiny_digits
from torchvision.transforms import RandomAffine

from repeatseg.data import DataError, VOCSegmentation, train_transform
from repeatseg.data.imagenet import ImageFolderClassification, classification_transforms


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """3 digits per class and 6 + 3 scenes, in make_digits' layout."""
    return write_tiny_digits(tmp_path_factory.mktemp("digits"), 3, 1, 6, 3)


def reference_sample(dataset, index, epoch, affine):
    """What the data path computed before: decode from disk, seed with torch.manual_seed, timm's
    transform with its colour jitter of 0 (restoring the global RNGs afterwards)."""
    transform = create_transform(32, is_training=True, scale=(0.7, 1.0), hflip=0.0, color_jitter=0.0,
                                 use_prefetcher=True)
    if affine:
        transform.transforms.insert(0, RandomAffine(**affine))
    with Image.open(dataset.samples[index][0]) as image:
        image = image.convert("RGB")
    python_state, torch_state = random.getstate(), torch.get_rng_state()
    seed = hash((dataset.seed, epoch, index)) % 2**32
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        return transform(image)
    finally:
        random.setstate(python_state)
        torch.set_rng_state(torch_state)


@pytest.mark.parametrize("affine", [{}, {"degrees": 20, "scale": (0.8, 1.2), "shear": 20}])
def test_preloaded_digits_are_the_samples_the_old_path_read_from_disk(digits, affine):
    train, _ = classification_transforms(32, 1.0, (0.7, 1.0), 0.0, 0.0, affine)
    dataset = ImageFolderClassification(digits / "cls", "train", train, seed=3)
    dataset.preload()
    for epoch in (0, 2):
        dataset.set_epoch(epoch)
        for index in range(0, len(dataset), 7):
            image, label = dataset[index]
            assert label == dataset.samples[index][1]
            assert torch.equal(image, reference_sample(dataset, index, epoch, affine)), (epoch, index)


def test_drawing_a_sample_leaves_the_global_rngs_as_they_were(digits):
    train, _ = classification_transforms(32, 1.0, (0.7, 1.0), 0.0)
    dataset = ImageFolderClassification(digits / "cls", "train", train)
    torch.manual_seed(5)
    random.seed(5)
    expected = (torch.rand(3), random.random())
    torch.manual_seed(5)
    random.seed(5)
    dataset[0]
    assert torch.equal(torch.rand(3), expected[0]) and random.random() == expected[1]


def test_preloaded_scenes_equal_the_scenes_read_from_disk(digits):
    transform = train_transform(32, (0.9, 1.1), False)
    from_disk = VOCSegmentation(digits / "seg", "train", transform=transform, seed=1)
    preloaded = VOCSegmentation(digits / "seg", "train", transform=transform, seed=1)
    preloaded.preload()
    for epoch in (0, 3):
        from_disk.set_epoch(epoch)
        preloaded.set_epoch(epoch)
        for index in range(len(from_disk)):
            (image_a, mask_a, _), (image_b, mask_b, _) = from_disk[index], preloaded[index]
            assert torch.equal(image_a, image_b) and torch.equal(mask_a, mask_b)
    image, mask = preloaded.load(0)
    image[:] = 0  # a transform that writes into its input cannot change the cache
    assert preloaded.load(0)[0].any()


def test_preloading_names_every_bad_file(digits, tmp_path):
    import shutil

    root = tmp_path / "seg"
    shutil.copytree(digits / "seg", root)
    voc = root / "VOCdevkit" / "VOC2012"
    (voc / "JPEGImages" / "val_00001.jpg").write_bytes(b"not a jpeg")
    (voc / "SegmentationClass" / "val_00002.png").unlink()
    with pytest.raises(DataError, match="2 bad sample") as error:
        VOCSegmentation(root, "val").preload()
    assert "val_00001.jpg" in str(error.value) and "val_00002.png" in str(error.value)
