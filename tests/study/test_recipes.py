"""A study's encoders share one pretraining recipe, or the study stops naming them (unless
allow_mixed_recipes, when it runs and its report says so first)."""

from pathlib import Path

import pytest
import torch

import repeatseg
from repeatseg.config import ClsConfig, StudyConfig, load_config
from repeatseg.files import save_weights
from repeatseg.recipe import RANDOM_INIT, UNRECORDED, recipe_of
from repeatseg.study.recipes import MixedRecipesError, check_recipes, encoder_recipes
from tests.tool_loader import load_tool

ROOT = Path(__file__).resolve().parents[2]
DENSE, REPEAT = "dense_r18_w1_b8", "repeat_r18_f2_b8"
RECIPE_A = "aaaaaaaaaaaa"


def encoder_file(path: Path, name: str, recipe: str | None = None) -> Path:
    """An encoder weights file as export_encoder writes it, recording ``recipe`` (or none, as a
    converted or older file)."""
    encoder = repeatseg.build_segmenter(name, classes=3).encoder
    state = {k: v for k, v in encoder.state_dict().items() if not k.startswith("adapters.")}
    if path.suffix == ".pth":
        torch.save(state, path)
    else:
        save_weights(path, state, {"encoder": name, **({"recipe": recipe} if recipe else {})})
    return path


def study(weights: dict, *sets: str) -> StudyConfig:
    return load_config(StudyConfig, sets=[f"encoders=[{DENSE}, {REPEAT}]", "seeds=[0]", *sets],
                       overrides=[{"weights": {k: str(v) for k, v in weights.items()}}])


def _tool():
    return load_tool("transfer_study")


def run_tool(tmp_path, weights: dict, *sets: str) -> int:
    """The study through the command line, on a few synthetic VOC images for 3 iterations."""
    from repeatseg.data.synthetic import make_synthetic_voc

    voc = tmp_path / "voc"
    if not voc.is_dir():
        make_synthetic_voc(voc, num_train=8, num_val=3, min_size=64, max_size=80, classes=(1, 7))
    config = tmp_path / "study.yaml"
    config.write_text(
        f"encoders: [{DENSE}, {REPEAT}]\nseeds: [0]\nseg_config: configs/seg/demo.yaml\n"
        f"weights: {{{', '.join(f'{k}: {v}' for k, v in weights.items())}}}\n"
        f"seg_sets: ['data.root={voc}', data.dataset=voc, data.crop_size=64, data.workers=0, "
        "train.batch_size=4, schedule.epochs=null, schedule.iters=3, schedule.warmup_iters=0, "
        "train.log_mode=quiet, train.eval_batch_size=3]\n")
    args = ["--config", str(config), "--output", str(tmp_path / "out")]
    for item in sets:
        args += ["--set", item]
    tool = _tool()
    return tool.main(tool.get_args_parser().parse_args(args))


def test_mixed_recipes_are_refused_naming_each_recipe_and_its_encoders(tmp_path, capsys):
    weights = {DENSE: encoder_file(tmp_path / "dense.safetensors", DENSE, RECIPE_A),
               REPEAT: encoder_file(tmp_path / "repeat.safetensors", REPEAT)}  # records no recipe
    assert run_tool(tmp_path, weights) == 2
    error = capsys.readouterr().err
    assert f"recipe {RECIPE_A}: {DENSE}" in error and f"recipe {UNRECORDED}: {REPEAT}" in error
    assert "allow_mixed_recipes: true" in error
    assert not (tmp_path / "out").exists()  # refused before anything ran or was written


def test_allowed_mixed_recipes_run_and_the_report_says_so_in_its_first_lines(tmp_path):
    weights = {DENSE: encoder_file(tmp_path / "dense.safetensors", DENSE, RECIPE_A)}  # REPEAT: from scratch
    assert run_tool(tmp_path, weights, "allow_mixed_recipes=true") == 0
    first = (tmp_path / "out" / "report.md").read_text().splitlines()[:8]
    assert any("Mixed pretraining recipes" in line for line in first)
    assert f"- recipe {RECIPE_A}: {DENSE}" in first and f"- recipe {RANDOM_INIT}: {REPEAT}" in first


def test_one_recipe_passes_and_the_report_does_not_warn(tmp_path):
    shared = {DENSE: encoder_file(tmp_path / "dense.safetensors", DENSE, RECIPE_A),
              REPEAT: encoder_file(tmp_path / "repeat.safetensors", REPEAT, RECIPE_A)}
    assert check_recipes(study(shared), tmp_path) == {RECIPE_A: [DENSE, REPEAT]}
    assert check_recipes(study({}), tmp_path) == {RANDOM_INIT: [DENSE, REPEAT]}  # all from scratch
    from repeatseg.study.report import recipe_lines

    assert recipe_lines(study(shared), tmp_path) == []


def test_a_converted_torch_file_is_unrecorded_and_mixing_it_is_refused(tmp_path):
    weights = {DENSE: encoder_file(tmp_path / "dense.pth", DENSE),
               REPEAT: encoder_file(tmp_path / "repeat.safetensors", REPEAT, RECIPE_A)}
    with pytest.raises(MixedRecipesError, match=f"recipe {UNRECORDED}: {DENSE}"):
        check_recipes(study(weights), tmp_path)


def test_encoders_pretrained_in_the_study_have_the_pretraining_configs_recipe(tmp_path):
    sets = ["pretrain.enabled=true", "pretrain.config=configs/cls/digits.yaml", "seeds=[0, 1]",
            "pretrain.sets=[data.root=/elsewhere, data.workers=0, train.device=cpu]"]
    expected = recipe_of(load_config(ClsConfig, [ROOT / "configs/cls/digits.yaml"])).hash
    assert encoder_recipes(study({}, *sets), tmp_path) == {expected: [DENSE, REPEAT]}  # seeds and names ignored
    changed = study({}, *sets[:3], "pretrain.sets=[optim.lr=0.05]")
    assert list(encoder_recipes(changed, tmp_path)) != [expected]
