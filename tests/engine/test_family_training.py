"""Every family trains through the same engine: regularisation terms and model options."""

import json

import pytest
from tiny import tiny, tiny_named

from repeatseg.config import ClsConfig, SegConfig, load_config
from repeatseg.data.synthetic import make_synthetic_voc
from repeatseg.engine.distributed import setup
from repeatseg.engine.seg import train_segmentation
from repeatseg.files import load_weights
from repeatseg.segmenter import load_segmenter
from repeatseg.weights import read_checkpoint


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    make_synthetic_voc(root, num_train=8, num_val=2, seed=0, min_size=64, max_size=64, classes=(1, 7))
    return root


def run(data_root, output, encoder, *sets):
    base = [f"data.root={data_root}", "data.dataset=voc", f"model.encoder={encoder}", "data.crop_size=64",
            "data.workers=0", "train.batch_size=4", "train.device=cpu", "train.log_mode=quiet",
            "train.eval_batch_size=2", "schedule.iters=2", "train.log_every=1", "schedule.warmup_iters=0",
            f"output={output}"]
    cfg = load_config(SegConfig, sets=[*base, *sets])
    train_segmentation(cfg, output, setup("cpu"))
    return [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines() if "loss" in line]


def test_shared_bases_add_their_orthogonality_penalty_and_log_it(data_root, tmp_path):
    records = run(data_root, tmp_path / "basis", tiny_named("basis_r18_s4u1_b8").name)
    assert all("regularization" in r and r["regularization"] >= 0 for r in records)
    assert not any("regularization" in r for r in run(data_root, tmp_path / "off", "basis_r18_s4u1_b8",
                                                       "optim.regularization_weight=0"))
    assert not any("regularization" in r for r in run(data_root, tmp_path / "dense", tiny("resnet18", 1, None).name))


def test_model_options_from_the_config_reach_the_model_and_its_checkpoint(data_root, tmp_path):
    encoder = tiny("resnet18", 2, "flip").name
    run(data_root, tmp_path / "run", encoder, "model.options.gradient=bireal")
    _, metadata = read_checkpoint(tmp_path / "run/checkpoints/last.safetensors")
    assert json.loads(metadata["options"]) == {"gradient": "bireal"}
    model, _ = load_segmenter(tmp_path / "run")
    assert model.encoder.layer1[0].conv1.transform.gradient == "bireal"
    model.load_state_dict(load_weights(tmp_path / "run/checkpoints/last.safetensors"))


def test_an_unknown_option_is_a_config_error_naming_it(data_root, tmp_path):
    with pytest.raises(ValueError, match="gradiant"):
        run(data_root, tmp_path / "bad", tiny("resnet18", 2, "flip").name, "model.options.gradiant=bireal")


def test_classification_config_has_model_options():
    cfg = load_config(ClsConfig, sets=["model.options.gradient=bireal"])
    assert cfg.model.options == {"gradient": "bireal"}


def test_a_pretrained_encoder_brings_its_options_unless_overridden(tmp_path):
    import repeatseg
    from repeatseg.files import save_weights

    name = tiny("resnet18", 2, "flip").name
    encoder = repeatseg.build_segmenter(name, classes=3, options={"gradient": "bireal"}).encoder
    path = tmp_path / "pretrained.safetensors"
    save_weights(path, {k: v for k, v in encoder.state_dict().items() if not k.startswith("adapters.")},
                 {"encoder": name, "options": {"gradient": "bireal"}})
    model = repeatseg.build_segmenter(name, classes=3, encoder_weights=path)
    assert model.encoder.layer1[0].conv1.transform.gradient == "bireal"
    assert model.encoder_variant.option_dict == {"gradient": "bireal"}
    overridden = repeatseg.build_segmenter(name, classes=3, encoder_weights=path, options={"gradient": "clamp"})
    assert overridden.encoder.layer1[0].conv1.transform.gradient == "clamp"
