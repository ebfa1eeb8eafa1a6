"""Hostile-user cases, round three (issue #24): outputs that never overwrite, resumes that refuse
what changes the run, studies that refuse what changes the grid, data that cannot silently change
meaning, built-in data written once, bounded evaluation memory, no leftovers, messages.

As in test_reliability.py, every refused case asserts the exit code, the file or key in the
message, no traceback, and that every file existing before the command is byte-identical after it.
One tiny digits set (tools/make_digits.py, 8 + 4 scenes) and one finished run serve the module.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import repeatseg
from repeatseg.config import SegConfig, StudyConfig, load_config, save_config
from repeatseg.data import DataError, VOCSegmentation
from repeatseg.data.generate import generate_once
from repeatseg.engine.seg import SizeBoundedBatches
from repeatseg.errors import ConfigError
from repeatseg.files import MARKER, read_marker, remove_stale_temporaries, save_weights, write_marker
from repeatseg.study import runner
from tests.engine.test_reliability import _weights_turn_nan_at_step, digest, refused
from tests.tool_loader import load_tool

ROOT = Path(__file__).resolve().parents[2]
ENCODER = "repeat_r18_f2_b4"
DIGITS_ARGS = ["--train-scenes", "8", "--val-scenes", "4"]


def train_args(data: Path, output: Path, *extra) -> list:
    return ["--encoder", ENCODER, "--data-root", data, "--output", output, "--crop-size", "32", "--batch-size", "4",
            "--workers", "0", "--device", "cpu", "--log-mode", "quiet", "--set", "train.eval_batch_size=4",
            "--set", "schedule.warmup_iters=0", "--set", "train.eval_every=1", *extra]


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """A tiny digits set written by tools/make_digits.py (its cls/ split is the full 5,000 digits)."""
    root = tmp_path_factory.mktemp("digits") / "digits"
    tool = load_tool("make_digits")
    assert tool.main(tool.get_args_parser().parse_args(["--output", str(root), *DIGITS_ARGS])) == 0
    return root


@pytest.fixture(scope="module")
def seg_data(digits):
    return digits / "seg"


@pytest.fixture(scope="module")
def finished_run(seg_data, tmp_path_factory):
    """A finished one-epoch (2-step) segmentation run; tests copy it before changing anything."""
    run = tmp_path_factory.mktemp("finished") / "run"
    tool = load_tool("train_seg")
    assert tool.main(tool.get_args_parser().parse_args([str(a) for a in train_args(seg_data, run, "--epochs", "1")])) == 0
    return run


@pytest.fixture()
def own_digits(digits, tmp_path):
    """A copy of the digits set that a test may damage (its seg/ VOC2012 folder)."""
    root = tmp_path / "digits"
    shutil.copytree(digits / "seg", root / "seg")
    return root / "seg", root / "seg" / "VOCdevkit" / "VOC2012"


# ------------------------------------------------------------ 1. outputs never overwrite


def test_export_encoder_never_replaces_a_dataset_file(cls_run, own_digits, cli):
    _, voc = own_digits
    mask = voc / "SegmentationClass" / "val_00000.png"
    before = digest(voc)
    refused(cli(cls_run, "--output", mask, tool="export_encoder"), mask, "inside the dataset")
    refused(cli(cls_run, "--output", mask, "--force", tool="export_encoder"), mask, "inside the dataset")
    refused(cli(cls_run, "--output", voc / "new.safetensors", tool="export_encoder"), "inside the dataset")
    assert digest(voc) == before


def test_export_encoder_never_writes_into_a_run_folder(cls_run, cli):
    before = digest(cls_run)
    for target in (cls_run / "config.yaml", cls_run / "encoder.safetensors", cls_run / "checkpoints" / "e.safetensors"):
        refused(cli(cls_run, "--output", target, tool="export_encoder"), target, "run folder")
        refused(cli(cls_run, "--output", target, "--force", tool="export_encoder"), target, "run folder")
    assert digest(cls_run) == before


def test_export_replaces_only_its_own_file_and_only_with_force(finished_run, tmp_path, cli):
    notes = tmp_path / "notes.safetensors"
    notes.write_bytes(b"a user's file with a weights-like name")
    link = tmp_path / "link.safetensors"
    link.symlink_to(finished_run / "checkpoints" / "best.safetensors")
    before = digest(tmp_path) | {"run": digest(finished_run)}
    refused(cli(finished_run, "--fold", "--output", notes, tool="export"), notes, "--force")
    refused(cli(finished_run, "--fold", "--output", notes, "--force", tool="export"), notes, "not written by")
    refused(cli(finished_run, "--pack", "--output", link, "--force", tool="export"), link, "not written by")
    assert digest(tmp_path) | {"run": digest(finished_run)} == before
    ours = tmp_path / "folded.safetensors"
    code, _, err = cli(finished_run, "--fold", "--output", ours, tool="export")
    assert code == 0, err
    first = ours.read_bytes()
    refused(cli(finished_run, "--pack", "--output", ours, tool="export"), ours, "exists")
    assert ours.read_bytes() == first
    code, _, err = cli(finished_run, "--pack", "--output", ours, "--force", tool="export")  # ours: replaced
    assert code == 0, err
    assert ours.read_bytes() != first and repeatseg.load_packed(ours) is not None


def test_an_onnx_export_is_one_marked_file_that_only_force_replaces(finished_run, tmp_path, cli):
    pytest.importorskip("onnxscript", reason="the [onnx] extra is not installed")
    output = tmp_path / "m.onnx"
    code, _, err = cli(finished_run, "--onnx", "--output", output, "--input-size", "32", tool="export")
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]  # self-contained: no .data file, no temporary
    from repeatseg.outputs import written_by_repeatseg

    assert written_by_repeatseg(output)
    refused(cli(finished_run, "--onnx", "--output", output, tool="export"), output, "--force")
    code, _, err = cli(finished_run, "--fold", "--output", output, "--force", tool="export")
    assert code == 0, err


def test_eval_predictions_never_replace_files_already_in_the_folder(finished_run, seg_data, tmp_path, cli):
    folder = tmp_path / "pred"
    folder.mkdir()
    (folder / "val_00000.png").write_bytes(b"a user's picture")
    before = digest(folder)
    args = ["--checkpoint", finished_run, "--data-root", seg_data, "--device", "cpu", "--workers", "0"]
    refused(cli(*args, "--save-predictions", folder, tool="eval_seg"), folder, "not empty")
    refused(cli(*args, "--save-predictions", folder, "--force", tool="eval_seg"), folder, "not empty")
    assert digest(folder) == before


def test_eval_refills_its_own_folders_only_with_force_and_leaves_no_stale_file(finished_run, seg_data, tmp_path, cli):
    predictions, output = tmp_path / "pred", tmp_path / "eval"
    args = ["--checkpoint", finished_run, "--data-root", seg_data, "--device", "cpu", "--workers", "0",
            "--save-predictions", predictions, "--output", output]
    code, _, err = cli(*args, tool="eval_seg")
    assert code == 0, err
    ids = VOCSegmentation(seg_data, "val").ids
    assert sorted(p.name for p in predictions.iterdir()) == sorted([MARKER, *(f"{i}.png" for i in ids)])
    before = digest(tmp_path)
    refused(cli(*args, tool="eval_seg"), output, "--force")
    assert digest(tmp_path) == before
    (predictions / "mine.txt").write_text("a user's note among the predictions")
    refused(cli(*args, "--force", tool="eval_seg"), predictions, "mine.txt")
    (predictions / "mine.txt").unlink()
    code, _, err = cli(*args, "--split", "train", "--force", tool="eval_seg")  # another split replaces the old one
    assert code == 0, err
    train_ids = VOCSegmentation(seg_data, "train").ids
    assert sorted(p.name for p in predictions.iterdir()) == sorted([MARKER, *(f"{i}.png" for i in train_ids)])
    assert json.loads((output / "metrics.json").read_text())["split"] == "train"


def test_eval_output_is_never_a_user_folder_or_a_run_folder(finished_run, seg_data, tmp_path, cli):
    user = tmp_path / "user"
    user.mkdir()
    (user / "metrics.json").write_text('{"mine": 1}')
    before = digest(tmp_path) | {"run": digest(finished_run)}
    args = ["--checkpoint", finished_run, "--data-root", seg_data, "--device", "cpu"]
    refused(cli(*args, "--output", user, "--force", tool="eval_seg"), user, "not empty")
    refused(cli(*args, "--output", finished_run, "--force", tool="eval_seg"), "training run folder")
    refused(cli(*args, "--output", finished_run / "checkpoints", tool="eval_seg"), "training run folder")
    refused(cli(*args, "--output", seg_data / "VOCdevkit" / "eval", tool="eval_seg"), "inside the dataset")
    assert digest(tmp_path) | {"run": digest(finished_run)} == before


def test_training_never_takes_a_user_folder_for_a_run(seg_data, tmp_path, cli):
    user = tmp_path / "results"
    user.mkdir()
    (user / "config.yaml").write_text("my: notes\n")
    (user / "metrics.json").write_text('{"miou": 0.9}')
    (user / "metrics.jsonl").write_text('{"loss": 1}\n')
    before = digest(user)
    refused(cli(*train_args(seg_data, user, "--iters", "1")), user, "not a repeatseg run folder")
    assert digest(user) == before
    other_kind = tmp_path / "pred"
    other_kind.mkdir()
    write_marker(other_kind, "predictions", files=[])
    refused(cli(*train_args(seg_data, other_kind, "--iters", "1")), other_kind, "predictions folder")


def test_training_never_writes_a_new_run_inside_a_dataset(own_digits, tmp_path, cli):
    root, voc = own_digits
    before = digest(voc)
    for inside in (voc / "runs" / "a", root / "VOCdevkit" / "b"):
        refused(cli(*train_args(root, inside, "--iters", "1")), inside, "inside the dataset")
    assert digest(voc) == before and not (voc / "runs").exists() and not (root / "VOCdevkit" / "b").exists()


def test_eval_refuses_one_folder_for_metrics_and_predictions(finished_run, seg_data, tmp_path, cli):
    folder = tmp_path / "both"
    refused(cli("--checkpoint", finished_run, "--data-root", seg_data, "--output", folder, "--save-predictions", folder,
                tool="eval_seg"), folder, "two folders")
    assert not folder.exists()


def test_training_never_writes_inside_a_dataset_marker_folder(seg_data, tmp_path, cli):
    """A run folder is checked like any other: a folder holding a data set is not empty, not a run."""
    data = tmp_path / "data"
    shutil.copytree(seg_data, data)
    before = digest(data)
    refused(cli(*train_args(seg_data, data, "--iters", "1")), data, "not a repeatseg run folder")
    assert digest(data) == before


# ------------------------------------------------------------ 2. resume refuses what changes the run


def test_resume_refuses_another_split(run_copy, cli):
    before = digest(run_copy)
    err = refused(cli("--resume", run_copy, "--split", "val"), "data.split", "'train'", "'val'", run_copy / "config.yaml")
    assert "resumed run keeps" in err
    assert digest(run_copy) == before


@pytest.mark.parametrize("flag, value, key", [("--batch-size", "2", "train.batch_size"), ("--seed", "7", "train.seed"),
                                              ("--crop-size", "64", "data.crop_size"),
                                              ("--set", "train.amp=bf16", "train.amp"),
                                              ("--set", "train.eval_every=2", "train.eval_every"),
                                              ("--encoder-weights", "imagenet", "model.encoder_weights")])
def test_resume_refuses_settings_that_change_what_is_trained(run_copy, cli, flag, value, key):
    before = digest(run_copy)
    refused(cli("--resume", run_copy, flag, value, "--epochs", "2"), key)
    assert digest(run_copy) == before


def test_resume_refuses_a_config_yaml_edited_after_the_run_started(run_copy, cli):
    import yaml

    saved = yaml.safe_load((run_copy / "config.yaml").read_text())
    saved["optim"]["lr"] = 0.5
    (run_copy / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    before = digest(run_copy)
    refused(cli("--resume", run_copy, "--epochs", "2"), run_copy / "config.yaml", "edited", "optim.lr", "0.5")
    assert digest(run_copy) == before


def test_resume_of_a_finished_run_changes_nothing(run_copy, cli):
    before = digest(run_copy)
    code, out, err = cli("--resume", run_copy, "--workers", "0", "--device", "cpu", "--log-mode", "plain",
                         "--set", "train.log_every=5")
    assert code == 0, err
    assert "already finished" in err and "Traceback" not in err
    assert "miou" in out.lower() or "mIoU" in out  # its results are printed again
    assert digest(run_copy) == before
    assert "confusion_matrix" in json.loads((run_copy / "metrics.json").read_text())


def test_a_run_stopped_before_its_summary_is_summarised_in_full(run_copy, cli):
    (run_copy / "metrics.json").unlink()
    code, _, err = cli("--resume", run_copy)
    assert code == 0, err
    summary = json.loads((run_copy / "metrics.json").read_text())
    assert "confusion_matrix" in summary and summary["train_images_per_s"] is not None


def test_resume_of_a_folder_that_is_no_run_is_refused(tmp_path, cli):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "config.yaml").write_text(json.dumps({"model": {"encoder": ENCODER}}))
    before = digest(folder)
    refused(cli("--resume", folder), folder, "not a repeatseg run folder")
    assert digest(folder) == before


# ------------------------------------------------------------ 3. studies refuse what changes the grid


STUDY = ["encoders=[dense_r18_w1_b4, dense_r18_w2_b4]", "seeds=[0]", "seg_config=configs/seg/digits.yaml"]


@pytest.fixture()
def finished_study(tmp_path, seg_data):
    """A study folder whose two cells finished under its recipe (config.yaml as the runner writes it)."""
    study_dir = tmp_path / "study"
    study = load_config(StudyConfig, sets=[*STUDY, f"seg_sets=[data.root={seg_data.parent}, schedule.iters=2]"],
                        overrides=[{"output": str(study_dir)}])
    for cell in runner.plan_cells(study, study_dir):
        cell.run_dir.mkdir(parents=True)
        save_config(runner.fresh_seg_config(study, cell, None), cell.run_dir / "config.yaml")
        (cell.run_dir / "metrics.json").write_text(json.dumps({"miou": 0.5, "pixel_acc": 0.8}))
    save_config(study, study_dir / "study.yaml")
    write_marker(study_dir, "study")
    return study_dir, study


def _study(cli, *args):
    return cli(*[str(a) for a in args], tool="transfer_study")


@pytest.fixture()
def no_training(monkeypatch):
    """A study test that must be refused before any unit runs fails at once if one would."""
    def trained(*args, **kwargs):
        raise AssertionError("a unit ran: the study was not refused")

    monkeypatch.setattr(runner, "run_pretrain", trained)
    monkeypatch.setattr(runner, "run_cell", trained)


def test_a_study_rerun_with_other_seg_sets_is_refused(finished_study, seg_data, cli, no_training):
    study_dir, _ = finished_study
    before = digest(study_dir)
    other = ["--set", f"seg_sets=[data.root={seg_data.parent}, schedule.iters=3]"]
    for mode in ([], ["--report-only"]):
        refused(_study(cli, "--config", study_dir / "study.yaml", "--output", study_dir, *other, *mode),
                "schedule.iters", "dense_r18_w1_b4", "another recipe")
    assert digest(study_dir) == before


def test_a_study_rerun_with_other_pretraining_is_refused(tmp_path, cli, no_training):
    study_dir = tmp_path / "study"
    study = load_config(StudyConfig, sets=[*STUDY, "pretrain.enabled=true", "pretrain.config=configs/cls/digits.yaml",
                                           "pretrain.sets=[schedule.epochs=1]"], overrides=[{"output": str(study_dir)}])
    unit = runner.plan_pretraining(study, study_dir)[0]
    unit.run_dir.mkdir(parents=True)
    save_config(runner.fresh_cls_config(study, unit), unit.run_dir / "config.yaml")
    save_config(study, study_dir / "study.yaml")
    write_marker(study_dir, "study")
    before = digest(study_dir)
    refused(_study(cli, "--output", study_dir, "--set", "pretrain.sets=[schedule.epochs=2]"), "schedule.epochs",
            "pretrain dense_r18_w1_b4 seed 0")
    assert digest(study_dir) == before


def test_a_study_may_grow_and_move_without_changing_its_recipe(finished_study, seg_data, tmp_path):
    study_dir, study = finished_study
    moved = tmp_path / "moved_data"
    grown = load_config(StudyConfig, [study_dir / "study.yaml"],
                        sets=["seeds=[0, 1]", "encoders=[dense_r18_w1_b4, dense_r18_w2_b4, repeat_r18_f2_b4]",
                              f"seg_sets=[data.root={moved}, schedule.iters=2, train.device=cpu, data.workers=0]"])
    runner.check_study(grown, study_dir)  # more seeds and encoders, another data root and device: the same recipe


def test_a_moved_study_folder_keeps_its_own_pretrainings_cells(tmp_path):
    """A cell of the study's own pretraining records its export's path as it was then: after the
    folder is moved (or run from another directory) the same export is named differently, and the
    cell is still this recipe's. Weights from anywhere else are still another recipe."""
    old_dir, new_dir = tmp_path / "old_study", tmp_path / "published" / "study"
    study = load_config(StudyConfig, sets=[*STUDY, "pretrain.enabled=true", "pretrain.config=configs/cls/digits.yaml",
                                           "pretrain.tag=digits"])
    cell = runner.plan_cells(study, old_dir)[0]
    saved = runner.fresh_seg_config(study, cell, runner.cell_weights(study, cell))
    assert saved.model.encoder_weights == str(old_dir / "weights" / "dense_r18_w1_b4-digits-seed0.safetensors")
    moved = runner.plan_cells(study, new_dir)[0]
    moved.run_dir.mkdir(parents=True)
    save_config(saved, moved.run_dir / "config.yaml")
    runner.check_units_unchanged(study, new_dir)  # the same unit, its folder renamed
    saved.model.encoder_weights = str(old_dir / "weights" / "dense_r18_w1_b4-digits-seed1.safetensors")
    save_config(saved, moved.run_dir / "config.yaml")
    with pytest.raises(ConfigError, match="encoder_weights"):
        runner.check_units_unchanged(study, new_dir)  # another seed's export: not this cell's pretraining


@pytest.mark.parametrize("sets, key", [(["encoders=[dense_r18_w1_b4, dense_r18_w1_b4]"], "encoders"),
                                       (["seeds=[0, 0]"], "seeds"), (["encoders=[]"], "encoders"),
                                       (["seeds=[]"], "seeds"), (["pretrain.tag=../../x"], "pretrain.tag"),
                                       (["encoders=[../dense_r18_w1_b4]"], "encoders"), (["seeds=[-1]"], "seeds")])
def test_a_grid_that_is_not_one_is_refused_before_anything_runs(tmp_path, cli, no_training, sets, key):
    common = ["--config", "configs/study/digits.yaml", *(a for s in sets for a in ("--set", s))]
    refused(_study(cli, *common, "--output", tmp_path / "study"), key)
    refused(_study(cli, *common, "--plan"), key)  # --plan would bill a duplicate twice
    assert not (tmp_path / "study").exists()


def test_a_study_never_takes_a_user_folder(tmp_path, cli, no_training):
    folder = tmp_path / "home"
    folder.mkdir()
    (folder / "thesis.tex").write_text("chapter 1")
    before = digest(folder)
    refused(_study(cli, "--config", "configs/study/digits.yaml", "--output", folder), folder, "thesis.tex")
    refused(_study(cli, "--report-only", "--config", "configs/study/digits.yaml", "--output", folder), folder,
            "not a study folder")
    assert digest(folder) == before


# ------------------------------------------------------------ 4. data that could silently change meaning


def test_duplicate_class_names_in_classes_txt_are_refused(own_digits, tmp_path, cli, capsys):
    root, voc = own_digits
    names = voc / "ImageSets" / "Segmentation" / "classes.txt"
    names.write_text(names.read_text().replace("digit_7", "digit_1"))
    before = digest(voc)
    refused(cli(*train_args(root, tmp_path / "run", "--iters", "1")), names, "digit_1")
    check_data = load_tool("check_data")
    assert check_data.main(type("Args", (), {"data_root": root, "split": ["train"]})()) == 1
    assert "more than once" in capsys.readouterr().out
    assert digest(voc) == before and not (tmp_path / "run").exists()


def test_duplicate_class_names_in_the_config_are_refused(seg_data, tmp_path, cli):
    classes = "[background, a, a, b, c, d, e, f, g, h, i]"
    refused(cli(*train_args(seg_data, tmp_path / "run", "--iters", "1", "--set", f"data.classes={classes}")),
            "data.classes", "more than once")
    assert not (tmp_path / "run").exists()


def test_a_16_bit_png_image_is_read_by_its_values_not_as_white(own_digits, tmp_path, capsys):
    root, voc = own_digits
    dataset = VOCSegmentation(root, "val")
    path = dataset.paths(0)[0]
    height, width = dataset.load(0)[1].shape
    values = np.linspace(0, 65535, height * width).reshape(height, width).astype(np.uint16)
    Image.fromarray(values).save(path, format="PNG")  # a 16-bit PNG under the image's name
    with Image.open(path) as image:
        assert image.mode.startswith("I")
    image, _ = dataset.load(0)
    expected = np.round(values / 257).astype(np.uint8)
    assert np.array_equal(image[..., 0], expected) and np.array_equal(image[..., 2], expected)
    from repeatseg.data.imagenet import ImageFolderClassification

    folder = tmp_path / "cls" / "val" / "a"
    folder.mkdir(parents=True)
    Image.fromarray(values).save(folder / "x.png")
    shutil.copytree(tmp_path / "cls" / "val", tmp_path / "cls" / "train")
    sample, _ = ImageFolderClassification(tmp_path / "cls", "val", transform=np.asarray)[0]
    assert np.array_equal(sample[..., 1], expected)


def test_make_digits_over_an_existing_set_with_other_arguments_is_refused(digits, cli):
    before = digest(digits)
    for other in (["--seed", "1"], ["--canvas", "64"], ["--train-scenes", "9"]):
        refused(cli("--output", digits, *DIGITS_ARGS, *other, tool="make_digits"), digits, "other arguments",
                other[0][2:].replace("-", "_"))
    code, out, err = cli("--output", digits, *DIGITS_ARGS, tool="make_digits")  # the same arguments: found, untouched
    assert code == 0 and "already holds" in out, err
    assert digest(digits) == before


def test_make_digits_refuses_a_folder_that_holds_other_files(tmp_path, cli):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "seg").mkdir()
    (folder / "seg" / "keep.txt").write_text("mine")
    before = digest(folder)
    refused(cli("--output", folder, *DIGITS_ARGS, tool="make_digits"), folder, "not a data set")
    assert digest(folder) == before


def test_a_tiny_image_is_named_by_check_data_and_by_training(own_digits, tmp_path, cli, capsys):
    root, voc = own_digits
    dataset = VOCSegmentation(root, "val")
    image_path, mask_path = dataset.paths(1)
    Image.new("RGB", (1, 1)).save(image_path, format="JPEG")
    Image.new("P", (1, 1)).save(mask_path)
    check_data = load_tool("check_data")
    assert check_data.main(type("Args", (), {"data_root": root, "split": ["val"]})()) == 1
    out = capsys.readouterr().out
    assert str(image_path) in out and "1x1" in out
    refused(cli(*train_args(root, tmp_path / "run", "--iters", "1")), image_path, "1x1")
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------ 5. built-in data written once


WORKER = """
import os, sys, time
from pathlib import Path
from repeatseg.data.generate import generate_once
from repeatseg.files import read_marker

folder, gate = Path(sys.argv[1]), Path(sys.argv[2])

def write(partial):
    (gate.parent / "started").write_text(str(os.getpid()))
    while not gate.exists():
        time.sleep(0.05)
    for index in range(20):
        (partial / f"{index}.txt").write_text(str(index))

generate_once(folder, {"generator": "test", "files": 20}, write)
print("wrote" if read_marker(folder)["pid"] == os.getpid() else "found", flush=True)
"""


def _worker(tmp_path, folder):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-c", WORKER, str(folder), str(tmp_path / "go")], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for(path: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_two_processes_generating_one_set_write_it_once(tmp_path):
    folder = tmp_path / "set"
    first = _worker(tmp_path, folder)
    _wait_for(tmp_path / "started")  # the first holds the lock and is writing
    second = _worker(tmp_path, folder)
    while "waiting for another process" not in (line := second.stderr.readline()):  # it waits, reads no half set
        assert line, "the second process never waited"
    assert not folder.exists()  # nothing at the folder while it is being written
    (tmp_path / "go").write_text("")
    outputs = [process.communicate(timeout=120)[0].strip() for process in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0]
    assert outputs == ["wrote", "found"]
    assert sorted(p.name for p in folder.iterdir()) == sorted([MARKER, *(f"{i}.txt" for i in range(20))])
    assert not list(tmp_path.glob(".set.*.partial"))


def test_a_writer_killed_mid_set_leaves_no_set_and_the_next_one_cleans_up(tmp_path):
    folder = tmp_path / "set"
    writer = _worker(tmp_path, folder)
    _wait_for(tmp_path / "started")
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert not folder.exists() and list(tmp_path.glob(".set.*.partial"))  # only the aside copy, no half set
    generate_once(folder, {"generator": "test", "files": 1}, lambda partial: (partial / "0.txt").write_text("0"))
    assert (folder / "0.txt").is_file() and not list(tmp_path.glob(".set.*.partial"))


@pytest.mark.parametrize("generator", ["digits", "synthetic_voc", "synthetic_imagenet"])
def test_every_generator_writes_aside_and_leaves_nothing_when_it_fails(tmp_path, monkeypatch, generator):
    from repeatseg.data import digits as digits_module
    from repeatseg.data import synthetic

    saved = []

    def disk_full_at_the_fourth_image(self, path, *args, **kwargs):
        saved.append(path)
        if len(saved) == 4:
            raise OSError(28, "No space left on device", str(path))
        return real_save(self, path, *args, **kwargs)

    real_save = Image.Image.save
    monkeypatch.setattr(Image.Image, "save", disk_full_at_the_fourth_image)
    folder = tmp_path / "set"
    make = {"digits": lambda: digits_module.make_digits(folder, train_scenes=2, val_scenes=1),
            "synthetic_voc": lambda: synthetic.make_synthetic_voc(folder, 3, 2, min_size=32, max_size=40, classes=(1,)),
            "synthetic_imagenet": lambda: synthetic.make_synthetic_imagenet(folder, 2, 2, 1, size=32)}[generator]
    with pytest.raises(DataError, match="No space left on device"):
        make()
    assert len(saved) == 4 and all(".partial" in str(path) for path in saved)  # every file was written aside
    left = [p for p in tmp_path.rglob("*") if p.is_file() and not p.name.endswith(".lock")]
    assert left == [] and not list(tmp_path.rglob("*.partial"))  # no half set, nothing aside
    monkeypatch.setattr(Image.Image, "save", real_save)
    make()  # the next call writes the whole set
    assert read_marker(folder if generator != "synthetic_voc" else folder / "VOCdevkit")["kind"] == "data"


def test_a_config_never_trains_on_a_half_written_generated_set(tmp_path, cli):
    root = tmp_path / "synthetic_cls"
    (root / "val").mkdir(parents=True)  # what a killed writer of the old code left: no train/, no marker
    before = digest(root)
    refused(cli("--model", "repeat_resnet18_f2_b4", "--set", "data.dataset=synthetic", "--data-root", root,
                "--output", tmp_path / "run", "--iters", "1", "--device", "cpu", "--workers", "0",
                "--log-mode", "quiet", tool="train_cls"), root, "not a data set")
    assert digest(root) == before and not (tmp_path / "run").exists()


# ------------------------------------------------------------ 6. memory


def test_evaluation_batches_are_bounded_by_their_padded_size():
    sizes = [(32, 32), (30, 20), (1000, 900), (64, 64), (500, 500), (512, 512), (40, 40)]
    batches = list(SizeBoundedBatches(list(range(len(sizes))), sizes, batch_size=2))
    assert sorted(i for batch in batches for i in batch) == list(range(len(sizes)))  # every image once, in order
    assert [2] in batches  # the large image is evaluated alone
    budget = 2 * 512 * 512
    for batch in batches:
        height = max(-(-sizes[i][0] // 32) * 32 for i in batch)
        width = max(-(-sizes[i][1] // 32) * 32 for i in batch)
        assert len(batch) <= 2 and (len(batch) == 1 or len(batch) * height * width <= budget)


def test_an_image_too_large_to_evaluate_is_named_before_training(own_digits, tmp_path, cli):
    root, voc = own_digits
    dataset = VOCSegmentation(root, "val")
    image_path, mask_path = dataset.paths(2)
    Image.new("RGB", (96, 80)).save(image_path, format="JPEG")
    Image.new("P", (96, 80)).save(mask_path)
    refused(cli(*train_args(root, tmp_path / "run", "--iters", "1", "--set", "train.eval_max_pixels=4096")),
            image_path, "96x80", "train.eval_max_pixels")
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------ 7. leftovers


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_an_export_removes_what_a_killed_export_left_and_only_that(finished_run, tmp_path, cli):
    output = tmp_path / "f.safetensors"
    host = socket.gethostname()
    dead = tmp_path / f".f.safetensors.{host}-{_dead_pid()}-abcd1234.tmp"
    live = tmp_path / f".f.safetensors.{host}-{os.getpid()}-efgh5678.tmp"
    foreign = tmp_path / ".f.safetensors.notes.tmp"
    far = tmp_path / ".f.safetensors.otherhost-1-ijkl9012.tmp"
    for path in (dead, live, foreign, far):
        path.write_bytes(b"\0" * 100)
    os.utime(far, (time.time() - 3600, time.time() - 3600))  # another host's, silent for an hour
    code, _, err = cli(finished_run, "--fold", "--output", output, tool="export")
    assert code == 0, err
    assert not dead.exists() and not far.exists()
    assert live.exists() and foreign.exists()  # a live writer's file and a user's file stay


def test_a_study_rerun_removes_what_a_killed_pretraining_export_left(tmp_path, monkeypatch):
    weights = tmp_path / "weights" / "e-t-seed0.safetensors"
    weights.parent.mkdir()
    leftover = weights.parent / f".{weights.name}.{socket.gethostname()}-{_dead_pid()}-abcd1234.tmp"
    leftover.write_bytes(b"\0" * 100)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.json").write_text("{}")
    monkeypatch.setattr(runner, "export_encoder", lambda run_dir, out, which: Path(out).write_bytes(b"w"))
    runner.run_pretrain(StudyConfig(), runner.PretrainPlan("e", 0, tmp_path / "run", weights), runner.DistInfo())
    assert weights.read_bytes() == b"w" and not leftover.exists()
    assert remove_stale_temporaries(weights) == []


# ------------------------------------------------------------ 8. a message instead of a traceback


@pytest.mark.parametrize("encoder", ["dense_r18_w4_b0", "repeat_r18_f4_b0", "dacnn_r18_mix_b0"])
def test_a_zero_base_width_is_named(seg_data, tmp_path, cli, encoder):
    refused(cli(*train_args(seg_data, tmp_path / "run", "--iters", "1"), "--encoder", encoder), encoder, "_b0")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("options, named", [("score_init=[1,0]", "score_init"),
                                            ("gradient=!custom", "gradient"),
                                            ("gradient=bireal,gradient=clamp", "more than once")])
def test_bad_model_options_are_named(seg_data, cls_run, tmp_path, cli, options, named):
    refused(cli(*train_args(seg_data, tmp_path / "run", "--iters", "1"), "--encoder", f"repeat_r18_f2_b4[{options}]"),
            named)
    refused(cli("--model", f"repeat_resnet18_f2_b4[{options}]", "--data-root", cls_run.parent / "data", "--output",
                tmp_path / "cls", "--image-size", "32", "--batch-size", "4", "--workers", "0", "--device", "cpu",
                "--log-mode", "quiet", tool="train_cls"), named)
    assert not (tmp_path / "run").exists() and not (tmp_path / "cls").exists()


def test_options_a_model_does_not_read_are_refused(seg_data, tmp_path, cli):
    refused(cli(*train_args(seg_data, tmp_path / "run", "--iters", "1"), "--encoder", "dense_r18_w4_b4[gradient=bireal]"),
            "gradient")


@pytest.mark.parametrize("content", ["{not json", '"a string"', '{"miou": NaN, "pixel_acc": 0.5}', "[1, 2]"])
def test_report_only_names_a_bad_metrics_json(finished_study, cli, no_training, content):
    study_dir, study = finished_study
    bad = runner.plan_cells(study, study_dir)[1].run_dir / "metrics.json"
    bad.write_text(content)
    before = digest(study_dir)
    refused(_study(cli, "--report-only", "--output", study_dir), bad)
    assert digest(study_dir) == before


def test_ctrl_c_in_the_study_runner_says_how_to_continue(tmp_path, cli, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run_pretrain", interrupted)
    monkeypatch.setattr(runner, "run_cell", interrupted)
    try:
        result = _study(cli, "--config", "configs/study/digits.yaml", "--output", tmp_path / "study",
                        "--set", "encoders=[dense_r18_w1_b4]", "--set", "seeds=[0]")
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C escaped the study tool as a traceback")
    refused(result, "interrupted", "same command", code=130)


TOOLS = sorted(p.stem for p in (ROOT / "tools").glob("*.py") if not p.stem.startswith("_") and p.stem != "bench")
CTRL_C_AT_IMPORT = """
import builtins, runpy, sys
real_import = builtins.__import__

def interrupted_import(name, *args, **kwargs):
    if name == "torch" or name.startswith("torch."):
        raise KeyboardInterrupt  # as if Ctrl-C came while torch imports
    return real_import(name, *args, **kwargs)

builtins.__import__ = interrupted_import
sys.path.insert(0, sys.argv[1].rsplit("/", 1)[0])
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_ctrl_c_while_any_tool_imports_gives_one_line():
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    for name in TOOLS:
        result = subprocess.run([sys.executable, "-c", CTRL_C_AT_IMPORT, str(ROOT / "tools" / f"{name}.py"), "--help"],
                                capture_output=True, text=True, env=env, timeout=120)
        if result.returncode == 0 and "usage:" in result.stdout:
            continue  # its --help imports no torch: nothing to interrupt
        assert result.returncode in (130, -signal.SIGINT), (name, result.stderr)
        assert "Traceback" not in result.stderr and "interrupted" in result.stderr, (name, result.stderr)


def test_make_digits_on_a_read_only_file_system_is_named(tmp_path, cli, monkeypatch):
    import errno

    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "mkdir", read_only)
    refused(cli("--output", tmp_path / "digits", *DIGITS_ARGS, tool="make_digits"), tmp_path / "digits",
            "Read-only file system")
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, named", [(["--canvas", "3200000"], "--canvas"), (["--seed", "-1"], "--seed")])
def test_make_digits_refuses_absurd_arguments_and_leaves_nothing(tmp_path, cli, args, named):
    refused(cli("--output", tmp_path / "digits", *DIGITS_ARGS, *args, tool="make_digits"), named)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("setting, key", [("optim.name=sgdd", "optim.name"), ("optim.lr=-0.1", "optim.lr"),
                                          ("data.workers=-1", "data.workers"),
                                          ("data.scale_range=[2.0, 0.5]", "data.scale_range"),
                                          ("schedule.warmup_iters=-5", "schedule.warmup_iters"),
                                          ("train.seed=-3", "train.seed"),
                                          ("data.crop_size=100000", "data.crop_size"),
                                          ("model.decoder_channels=[0, 1, 2, 3, 4]", "model.decoder_channels"),
                                          ("model.in_channels=0", "model.in_channels"),
                                          ("train.device=banana", "train.device")])
def test_bad_config_values_name_their_key(seg_data, tmp_path, cli, setting, key):
    refused(cli(*train_args(seg_data, tmp_path / "run", "--iters", "1", "--set", setting)), key)
    assert not (tmp_path / "run").exists()


def test_a_non_finite_loss_before_the_first_checkpoint_says_there_is_none(seg_data, tmp_path, cli, monkeypatch):
    _weights_turn_nan_at_step(monkeypatch, bad_step=1)
    err = refused(cli(*train_args(seg_data, tmp_path / "run", "--iters", "1")), "non-finite", code=3)
    assert "No checkpoint was written" in err and "is intact" not in err


def test_eval_names_a_packed_or_folded_file_for_what_it_is(tmp_path, seg_data, cls_run, cli):
    from tiny import tiny_named

    name = tiny_named("basis_r18_s4u1_b8").name
    model = repeatseg.build_segmenter(name, classes=11).eval()
    meta = {"encoder": name, "classes": 11, "in_channels": 3}
    repeatseg.pack(model, tmp_path / "packed.safetensors", meta)
    save_weights(tmp_path / "folded.safetensors", repeatseg.fold(model).state_dict(),
                 dict(meta, folded_from=name, fused_bn="False"))
    refused(cli("--checkpoint", tmp_path / "packed.safetensors", "--data-root", seg_data, tool="eval_seg"),
            tmp_path / "packed.safetensors", "packed export")
    refused(cli("--checkpoint", tmp_path / "folded.safetensors", "--data-root", seg_data, tool="eval_seg"),
            tmp_path / "folded.safetensors", "folded export")
    refused(cli("--checkpoint", cls_run, "--data-root", seg_data, tool="eval_seg"), "classification checkpoint")
    code, _, err = cli(cls_run, "--output", tmp_path / "encoder.safetensors", tool="export_encoder")
    assert code == 0, err
    refused(cli("--checkpoint", tmp_path / "encoder.safetensors", "--data-root", seg_data, tool="eval_seg"),
            "exported encoder")


def test_a_config_key_that_is_a_path_is_refused(seg_data, tmp_path, cli):
    refused(cli(*train_args(seg_data, tmp_path / "run", "--iters", "1", "--set", "data.val_split=../../val")),
            "data.val_split", "plain name")
    assert load_config(SegConfig, sets=["data.val_split=val"]).data.val_split == "val"
