import pytest

from repeatseg.config import ConfigError, SegConfig, load_config, save_config, to_dict


def test_yaml_files_flags_and_set_in_order(tmp_path):
    path = tmp_path / "a.yaml"
    path.write_text("optim:\n  lr: 0.02\ndata:\n  crop_size: 256\n")
    cfg = load_config(SegConfig, [path], [{"optim": {"lr": 0.05}}], ["optim.lr=0.1", "train.amp=fp16",
                                                                        "data.scale_range=[0.75, 1.5]"])
    assert cfg.optim.lr == 0.1 and cfg.data.crop_size == 256 and cfg.train.amp == "fp16"
    assert cfg.data.scale_range == (0.75, 1.5)


@pytest.mark.parametrize("override, message", [
    ("optim.lrr=0.1", "unknown config key optim.lrr; did you mean optim.lr"),
    ("optim.lr=fast", "optim.lr: expected float, got str 'fast'"),
    ("train.amp=fp8", "train.amp: 'fp8' is not one of"),
    ("data.crop_size=1.5", "data.crop_size: expected int"),
    ("train.batch_size=true", "train.batch_size: expected int, got bool"),
    ("data.scale_range=[0.5]", "data.scale_range: expected 2 values"),
    ("model=3", "model: expected a mapping"),
    ("nonsense", "--set expects key=value"),
])
def test_bad_values_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_config(SegConfig, sets=[override])


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml"):
        load_config(SegConfig, [tmp_path / "nope.yaml"])


def test_saved_config_loads_back_identically(tmp_path):
    cfg = load_config(SegConfig, sets=["model.encoder=dense_r18_w2", "schedule.iters=100"])
    save_config(cfg, tmp_path / "config.yaml")
    assert to_dict(load_config(SegConfig, [tmp_path / "config.yaml"])) == to_dict(cfg)


def test_shipped_configs_are_valid():
    from pathlib import Path

    from repeatseg.config import ClsConfig

    configs = Path(__file__).parents[1] / "configs"
    for path in sorted(configs.glob("seg/*.yaml")):
        load_config(SegConfig, [path])
    for path in sorted(configs.glob("cls/*.yaml")):
        load_config(ClsConfig, [path])
    assert len(list(configs.glob("*/*.yaml"))) >= 5


def test_a_partial_section_keeps_the_config_class_defaults():
    from repeatseg.config import ClsConfig

    cfg = load_config(ClsConfig, sets=["optim.momentum=0.8"])
    assert cfg.optim.lr == 0.1 and cfg.optim.lr_base_batch == 256 and cfg.schedule.name == "multistep"
