import numpy as np
import torch

from repeatseg.data import collate_padded, to_device, train_transform
from repeatseg.data.presets import MEAN, STD


def test_train_transform_pads_masks_with_255_at_bottom_right():
    image = np.full((40, 30, 3), 200, np.uint8)
    mask = np.ones((40, 30), np.uint8)
    transform = train_transform(crop_size=64, scale_range=(1.0, 1.0), hflip=False)
    transform.set_random_seed(0)
    out = transform(image=image, mask=mask)
    assert out["mask"].shape == (64, 64)
    assert (out["mask"][:40, :30] == 1).all()  # content stays at the top left
    assert (out["mask"][40:] == 255).all() and (out["mask"][:, 30:] == 255).all()
    assert (out["image"][40:] == 0).all()


def test_train_transform_scales_within_range_and_is_seeded():
    image = np.random.default_rng(0).integers(0, 255, (100, 100, 3), dtype=np.uint8)
    mask = np.zeros((100, 100), np.uint8)
    mask[:50] = 3
    transform = train_transform(crop_size=32)
    outs = []
    for _ in range(2):
        transform.set_random_seed(7)
        outs.append(transform(image=image, mask=mask))
    assert np.array_equal(outs[0]["image"], outs[1]["image"])
    assert set(np.unique(outs[0]["mask"])) <= {0, 3, 255}  # nearest-neighbour masks: no blended labels


def test_collate_pads_to_multiple_of_32_and_keeps_sizes():
    batch = [(torch.ones(3, 40, 50, dtype=torch.uint8), torch.ones(40, 50, dtype=torch.uint8), 0),
             (torch.ones(3, 70, 20, dtype=torch.uint8), torch.ones(70, 20, dtype=torch.uint8), 1)]
    images, masks, indices, sizes = collate_padded(batch)
    assert images.shape == (2, 3, 96, 64) and masks.shape == (2, 96, 64)
    assert (masks[0, 40:] == 255).all() and (masks[1, :, 20:] == 255).all()
    assert sizes.tolist() == [[40, 50], [70, 20]] and indices.tolist() == [0, 1]


def test_normalisation_happens_on_the_device_in_float():
    images = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    out = to_device(images, torch.device("cpu"))
    assert out.dtype == torch.float32
    torch.testing.assert_close(out[0, :, 0, 0], torch.tensor([(255 - m) / s for m, s in zip(MEAN, STD)]))
