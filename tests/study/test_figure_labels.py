"""Figure labels of points close together do not overlap."""

import itertools

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from repeatseg.study.report import annotate_apart  # noqa: E402


def test_labels_of_clustered_points_do_not_overlap():
    fig, ax = plt.subplots(figsize=(6, 4))
    points = [(1.0 + 0.01 * i, 30.0 + 0.05 * i, f"repeat_r18_x{i}_b4") for i in range(8)] + [(5.0, 20.0, "dense")]
    ax.scatter([p[0] for p in points], [p[1] for p in points])
    annotate_apart(ax, points)
    fig.canvas.draw()
    boxes = [Text.get_window_extent(text) for text in ax.texts]  # the label, without its leader line
    assert len(boxes) == len(points)
    assert not any(a.overlaps(b) for a, b in itertools.combinations(boxes, 2))
    plt.close(fig)
