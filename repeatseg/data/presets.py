"""Augmentation recipes (albumentations 2.x) and batching; images stay uint8 until they reach the device."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..extras import require
from .voc import IGNORE_INDEX, MIN_IMAGE_SIDE

A = require("albumentations", extra="train")
cv2 = require("cv2", extra="train")

# ImageNet statistics in 0..255 units: normalisation happens on the device, after the uint8 copy.
MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)


def train_transform(crop_size: int = 512, scale_range: tuple[float, float] = (0.5, 2.0), hflip: bool = True):
    """Random scale, pad to the crop at bottom/right (image 0, mask 255), random crop, flip.

    ``fill_mask`` is albumentations 2.x's name (1.x's ``mask_value`` is silently ignored and would
    pad masks with background); ``position="top_left"`` pads bottom/right like torchvision and mmseg.
    """
    low, high = scale_range
    steps = []
    smallest = math.ceil(1 / low)  # an image side below this would scale to 0 px (OpenCV refuses it)
    if smallest > MIN_IMAGE_SIDE:  # the reader refuses smaller images; only a tiny low scale needs this
        steps.append(A.PadIfNeeded(smallest, smallest, position="top_left", border_mode=cv2.BORDER_CONSTANT,
                                   fill=0, fill_mask=IGNORE_INDEX))
    steps += [
        A.RandomScale(scale_limit=(low - 1.0, high - 1.0), interpolation=cv2.INTER_LINEAR,
                      mask_interpolation=cv2.INTER_NEAREST, p=1.0),
        A.PadIfNeeded(crop_size, crop_size, position="top_left", border_mode=cv2.BORDER_CONSTANT,
                      fill=0, fill_mask=IGNORE_INDEX),
        A.RandomCrop(crop_size, crop_size),
    ]
    if hflip:
        steps.append(A.HorizontalFlip(p=0.5))
    return A.Compose(steps)


def collate_padded(batch, multiple: int = 32):
    """Stack samples of different sizes: pad bottom/right to the batch maximum rounded up to
    ``multiple`` (image 0, mask 255), and keep each sample's original size to crop predictions back.
    """
    images, masks, indices = zip(*batch)
    height = max(img.shape[1] for img in images)
    width = max(img.shape[2] for img in images)
    height, width = -(-height // multiple) * multiple, -(-width // multiple) * multiple
    image_batch = torch.stack([F.pad(img, (0, width - img.shape[2], 0, height - img.shape[1])) for img in images])
    mask_batch = torch.stack([F.pad(m, (0, width - m.shape[1], 0, height - m.shape[0]), value=IGNORE_INDEX)
                              for m in masks])
    sizes = torch.tensor([img.shape[1:] for img in images])
    return image_batch, mask_batch, torch.tensor(indices), sizes


def to_device(images: torch.Tensor, device: torch.device, channels_last: bool = False) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> normalised float on ``device``; float images (the rotation digits, in
    [0, 1], one channel) are already what the model takes and only move."""
    if images.is_floating_point():
        images = images.to(device, non_blocking=True)
        return images.contiguous(memory_format=torch.channels_last) if channels_last else images
    images = images.to(device, non_blocking=True).float()
    mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=device).view(1, 3, 1, 1)
    images = (images - mean) / std
    return images.contiguous(memory_format=torch.channels_last) if channels_last else images
