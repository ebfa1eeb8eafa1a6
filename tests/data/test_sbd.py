import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from repeatseg.data import DataError, VOCSegmentation
from repeatseg.data.sbd import convert_sbd
from repeatseg.data.synthetic import make_synthetic_voc


def _sbd(tmp_path, voc, train_ids, val_ids):
    dataset = tmp_path / "benchmark_RELEASE" / "dataset"
    (dataset / "cls").mkdir(parents=True)
    for sample_id in train_ids + val_ids:
        mask = np.array(Image.open(voc / "SegmentationClass" / f"{sample_id}.png"))
        segmentation = np.where(mask == 255, 0, mask).astype(np.uint8)
        savemat(dataset / "cls" / f"{sample_id}.mat", {"GTcls": {"Segmentation": segmentation}})
    (dataset / "train.txt").write_text("\n".join(train_ids) + "\n")
    (dataset / "val.txt").write_text("\n".join(val_ids) + "\n")
    return dataset.parent


def test_sbd_conversion_writes_train_aug_without_voc_val(tmp_path):
    voc = make_synthetic_voc(tmp_path / "data", num_train=4, num_val=3, seed=2, min_size=48, max_size=64)
    voc_train = (voc / "ImageSets/Segmentation/train.txt").read_text().split()
    voc_val = (voc / "ImageSets/Segmentation/val.txt").read_text().split()
    # SBD covers two VOC train ids, one VOC val id (must be dropped) and one extra id.
    extra = "synth_extra"
    (voc / "JPEGImages" / f"{extra}.jpg").write_bytes((voc / "JPEGImages" / f"{voc_train[0]}.jpg").read_bytes())
    (voc / "SegmentationClass" / f"{extra}.png").write_bytes((voc / "SegmentationClass" / f"{voc_train[0]}.png").read_bytes())
    sbd = _sbd(tmp_path, voc, voc_train[:2] + [extra], [voc_val[0]])
    ids = convert_sbd(sbd, tmp_path / "data")
    assert ids == sorted(set(voc_train) | {extra})
    assert not set(ids) & set(voc_val)
    dataset = VOCSegmentation(tmp_path / "data", "train_aug")
    assert len(dataset) == 5
    extra_mask = dataset[dataset.ids.index(extra)][1].numpy()
    assert 255 not in extra_mask  # SBD masks have no void band
    kept = dataset[dataset.ids.index(voc_train[0])][1].numpy()
    assert 255 in kept  # VOC's own annotation was kept for VOC train ids


def test_missing_sbd_folder_is_explained(tmp_path):
    make_synthetic_voc(tmp_path / "data", num_train=1, num_val=1, min_size=48, max_size=64)
    with pytest.raises(DataError, match="benchmark_RELEASE/dataset/cls"):
        convert_sbd(tmp_path / "nowhere", tmp_path / "data")
