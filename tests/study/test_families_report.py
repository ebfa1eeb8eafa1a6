"""Every family in the study's aggregation and report: contrasts, kept per byte, the figure."""

import json
import math

import pytest
from PIL import Image

from repeatseg.study.aggregate import read_cell, summarise
from repeatseg.study.report import plot_miou_vs_storage

FAKE = {  # encoder -> mIoU per seed
    "dense_r18_w1_b4": [0.40, 0.42, 0.44],
    "dense_r18_w1_b8": [0.50, 0.52, 0.54],
    "basis_r18_s4u1_b8": [0.47, 0.48, 0.49],
    "dacnn_r18_mix_b8": [0.45, 0.46, 0.47],
}


def fake_cells(study_dir):
    cells = []
    for encoder, values in FAKE.items():
        for seed, miou in enumerate(values):
            run = study_dir / "cells" / encoder / f"seed{seed}"
            run.mkdir(parents=True)
            (run / "metrics.json").write_text(json.dumps({"miou": miou, "pixel_acc": 0.9, "per_class_iou": {}}))
            cells.append(read_cell(run, encoder, seed))
    return cells


def test_compression_families_use_dense_one_and_half_width_and_keep_per_byte(tmp_path):
    from repeatseg import describe

    rows = {r.encoder: r for r in summarise(fake_cells(tmp_path), list(FAKE), input_size=32, classes=11)}
    basis = rows["basis_r18_s4u1_b8"]
    # (0.48 - 0.42) / (0.52 - 0.42) = 0.6 between dense 1x at base width 4 and at 8
    assert basis.rel_contribution == pytest.approx(0.6) and basis.reference == "dense_r18_w1_b8"
    assert (basis.family, basis.label) == ("basis", "basis") and rows["dacnn_r18_mix_b8"].family == "dacnn"
    byte_ratio = describe("basis_r18_s4u1_b8", 32, segmenter=True, classes=11).ratio_to_dense["packed_bytes"]
    assert basis.kept_per_byte == pytest.approx(0.48 / 0.52 / byte_ratio)
    se_m, se_r = 0.01 / math.sqrt(3), 0.02 / math.sqrt(3)
    assert basis.kept_per_byte_se == pytest.approx(basis.kept_per_byte * math.hypot(se_m / 0.48, se_r / 0.52))
    dense = rows["dense_r18_w1_b8"]
    assert dense.rel_contribution is None and (dense.kept_per_byte, dense.kept_per_byte_se) == (1.0, 0.0)
    assert basis.stored_bits_per_weight == 0.0
    plot_miou_vs_storage(list(rows.values()), tmp_path / "figure.png")
    assert Image.open(tmp_path / "figure.png").size[0] > 800


def test_transforms_are_placed_by_the_bits_they_store_per_generated_weight(tmp_path):
    from repeatseg.study.report import plot_contribution_vs_bits

    FAKE.update({"dense_r18_w2_b8": [0.55, 0.56, 0.57], "repeat_r18_f2_b8": [0.53, 0.54, 0.55],
                 "repeat_r18_c2_b8": [0.52, 0.53, 0.54], "repeat_r18_r2_b8": [0.51, 0.52, 0.53]})
    try:
        rows = {r.encoder: r for r in summarise(fake_cells(tmp_path), list(FAKE), input_size=32, classes=11)}
    finally:
        for name in ("dense_r18_w2_b8", "repeat_r18_f2_b8", "repeat_r18_c2_b8", "repeat_r18_r2_b8"):
            FAKE.pop(name)
    flip, coarse, seeded = rows["repeat_r18_f2_b8"], rows["repeat_r18_c2_b8"], rows["repeat_r18_r2_b8"]
    assert 0.9 < flip.stored_bits_per_weight <= 1.0  # every generated weight; the stem conv stores none
    assert 0 < coarse.stored_bits_per_weight < flip.stored_bits_per_weight / 50 and seeded.stored_bits_per_weight == 0
    assert coarse.rel_contribution == pytest.approx((0.53 - 0.52) / (0.56 - 0.52))
    plot_contribution_vs_bits(list(rows.values()), tmp_path / "bits.png")
    assert Image.open(tmp_path / "bits.png").size[0] > 600
