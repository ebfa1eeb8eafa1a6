import pytest

from repeatseg.data.digits import SceneStyle, load_mnist_5k, stratified_split, write_classification, write_scenes


@pytest.fixture(scope="module")
def tiny_digits(tmp_path_factory):
    """A digits folder in make_digits' layout with 2 + 1 digits per class and 8 + 4 scenes."""
    root = tmp_path_factory.mktemp("digits")
    images, labels = load_mnist_5k()
    train, held_out = stratified_split(labels, seed=0)
    write_classification(root / "cls", images, labels, {
        "train": [r for d in range(10) for r in train[labels[train] == d][:2]],
        "val": [r for d in range(10) for r in held_out[labels[held_out] == d][:1]]})
    write_scenes(root / "seg", images, labels, {"train": (train, 8), "val": (held_out, 4)}, seed=0, style=SceneStyle())
    return root
