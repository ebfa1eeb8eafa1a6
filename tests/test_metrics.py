import math

import torch

from repeatseg.metrics import SegmentationMetrics, format_table


def test_miou_from_a_hand_computed_confusion_matrix():
    # 3 classes present out of 4; 255 pixels must not count; two batches accumulate.
    target_a = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 255]])
    pred_a = torch.tensor([[0, 1, 1, 1], [2, 0, 3, 3]])
    target_b = torch.tensor([[0, 0, 0, 2]])
    pred_b = torch.tensor([[0, 0, 2, 2]])
    metrics = SegmentationMetrics(num_classes=4)
    metrics.update(pred_a[None], target_a[None])
    metrics.update(pred_b[None], target_b[None])
    result = metrics.compute()
    # Counted pixels (target, prediction): a: (0,0) (0,1) (1,1) (1,1) (2,2) (2,0); b: (0,0) (0,0) (0,2) (2,2)
    confusion = [[3, 1, 1, 0],
                 [0, 2, 0, 0],
                 [1, 0, 2, 0],
                 [0, 0, 0, 0]]
    assert result["confusion_matrix"] == confusion
    # IoU = diagonal / (row sum + column sum - diagonal), over the classes present.
    iou = [3 / (5 + 4 - 3), 2 / (2 + 3 - 2), 2 / (3 + 3 - 2)]
    assert math.isclose(result["miou"], sum(iou) / 3, rel_tol=1e-6)
    assert math.isclose(result["pixel_acc"], 7 / 10, rel_tol=1e-6)
    assert math.isclose(result["mean_class_acc"], (3 / 5 + 2 / 2 + 2 / 3) / 3, rel_tol=1e-6)
    assert result["per_class_iou"]["class_3"] is None  # absent everywhere: no IoU, not 0


def test_whole_split_miou_is_not_the_mean_of_per_image_mious():
    big_t, big_p = torch.zeros(1, 10, 10, dtype=torch.long), torch.zeros(1, 10, 10, dtype=torch.long)
    big_t[0, :5] = 1
    big_p[0, :5] = 1
    small_t, small_p = torch.tensor([[[1, 0]]]), torch.tensor([[[0, 1]]])
    metrics = SegmentationMetrics(num_classes=2)
    metrics.update(big_p, big_t)
    metrics.update(small_p, small_t)
    assert metrics.compute()["miou"] > 0.9  # per-image averaging would give ~0.5


def test_voc_table_names_classes():
    metrics = SegmentationMetrics(num_classes=21)
    metrics.update(torch.zeros(1, 2, 2, dtype=torch.long), torch.zeros(1, 2, 2, dtype=torch.long))
    table = format_table(metrics.compute())
    assert "background" in table and "tvmonitor" in table and "miou" in table
