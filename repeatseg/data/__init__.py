"""Data: VOC/SBD readers, the synthetic VOC generator, augmentation presets."""

from .presets import collate_padded, to_device, train_transform
from .voc import (
                  CLASS_NAMES,
                  IGNORE_INDEX,
                  NUM_CLASSES,
                  DataError,
                  VOCSegmentation,
                  check_split,
                  find_voc_root,
                  save_mask,
                  voc_palette,
)

__all__ = [
    "VOCSegmentation", "DataError", "check_split", "find_voc_root", "save_mask", "voc_palette",
    "train_transform", "collate_padded", "to_device", "CLASS_NAMES", "NUM_CLASSES", "IGNORE_INDEX",
]
