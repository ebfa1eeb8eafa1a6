"""Hostile-user cases (issue #14): nothing lost, nothing silently wrong, a message instead of a traceback.

Every refused case asserts exit code 2 (3 for divergence, 130 for Ctrl-C), the offending file or
key in the message, no traceback, and that files existing before the command are unchanged.
"""

import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import repeatseg
import repeatseg.files
from repeatseg.data import DataError, VOCSegmentation, save_mask
from repeatseg.data.synthetic import make_synthetic_voc
from repeatseg.engine import checkpoint as ckpt
from repeatseg.engine.trainer import Trainer
from tests.tool_loader import load_tool

ROOT = Path(__file__).resolve().parents[2]
ENCODER = "repeat_r18_f2_b8"
TRAIN = ["--encoder", ENCODER, "--dataset", "voc", "--crop-size", "64", "--batch-size", "2", "--workers", "0",
         "--device", "cpu", "--log-mode", "quiet", "--set", "train.eval_batch_size=2", "--set", "schedule.warmup_iters=0",
         "--set", "train.eval_every=1"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("voc")
    make_synthetic_voc(root, num_train=4, num_val=2, seed=0, min_size=64, max_size=64, classes=(1, 7, 13))
    return root


@pytest.fixture()
def own_data(data_root, tmp_path):
    """A copy of the data set that a test may damage; returns (root, VOC2012 folder)."""
    root = tmp_path / "data"
    shutil.copytree(data_root, root)
    return root, root / "VOCdevkit" / "VOC2012"


_tool = load_tool



def refused(result, *named, code=2):
    """The command failed cleanly: exit ``code``, every name in the message, no traceback."""
    exit_code, _, err = result
    assert exit_code == code, err
    assert "Traceback" not in err, err
    for name in named:
        assert str(name) in err, (name, err)
    return err


def digest(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (to show a command changed nothing)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished_run(data_root, tmp_path_factory):
    """A finished 2-epoch run (2 steps per epoch); tests copy it before changing anything."""
    run = tmp_path_factory.mktemp("finished") / "run"
    module = _tool("train_seg")
    args = module.get_args_parser().parse_args([str(a) for a in ["--data-root", data_root, "--output", run,
                                                                 "--epochs", "2", *TRAIN]])
    assert module.main(args) == 0
    return run


# ------------------------------------------------------------------ 1. atomic checkpoints


def _replace_failing_at(call: int, calls: list):
    """os.replace that kills the process (KeyboardInterrupt) instead of performing rename number ``call``."""
    real_replace = os.replace

    def replace(source, target):
        calls.append(target)
        if len(calls) == call:
            raise KeyboardInterrupt
        real_replace(source, target)

    return replace


@pytest.mark.parametrize("best_improves", [False, True])
def test_checkpoint_commit_survives_a_kill_before_any_rename(tmp_path, monkeypatch, best_improves):
    first = {ckpt.WEIGHTS: b"weights 1", ckpt.STATE: b"state 1", ckpt.BEST: b"weights 1"}
    second = {ckpt.WEIGHTS: b"weights 2", ckpt.STATE: b"state 2"}
    if best_improves:
        second[ckpt.BEST] = b"weights 2"
    for call in range(1, 100):
        folder = tmp_path / f"killed_at_rename{call}"
        ckpt.commit(folder, first, {"step": 1})
        calls = []
        with monkeypatch.context() as patch:
            patch.setattr(os, "replace", _replace_failing_at(call, calls))
            try:
                ckpt.commit(folder, second, {"step": 2})
            except KeyboardInterrupt:
                pass
        ckpt.roll_forward(folder)  # what a resume does first
        manifest = ckpt.verify(folder)
        expected = first if manifest["step"] == 1 else {**first, **second}
        assert {name: (folder / name).read_bytes() for name in manifest["files"]} == expected, call
        assert not (folder / ckpt.PENDING).exists()
        if len(calls) < call:  # the commit needed fewer renames: every one of them was interrupted once
            break
    assert call == (9 if best_improves else 7)  # staged files + manifest, then each rename into place


@pytest.mark.slow
def test_kill_loop_resumes_to_the_uninterrupted_weights(data_root, tmp_path):
    """SIGKILL at random moments (seeded), half of them just after a checkpoint write began;
    every kill is resumed, and the run ends with the uninterrupted run's weights and log."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "engine" / "kill_loop.py"), "--data-root", str(data_root),
         "--workdir", str(tmp_path), "--kills", "8", "--seed", "0"],
        capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.splitlines()[-1])
    assert summary["kills"] == 8 and summary["runs_compared"] >= 1
    assert summary["during_checkpoint_write"] >= 1, summary


def test_resume_cuts_metrics_back_and_removes_temporaries(run_copy, cli):
    log = run_copy / "metrics.jsonl"
    before = log.read_bytes()
    with open(log, "a") as out:
        out.write('{"epoch": 3, "step": 5, "loss": 1.0}\n{"epoch": 3, "st')  # after the checkpoint, cut mid-line
    (run_copy / "checkpoints" / ".last.safetensors.x1y2.tmp").write_bytes(b"\0" * 1000)
    (run_copy / "checkpoints" / ckpt.PENDING).mkdir()
    (run_copy / "checkpoints" / ckpt.PENDING / "last.safetensors").write_bytes(b"uncommitted")
    code, _, err = cli("--resume", run_copy, "--log-mode", "quiet")
    assert code == 0, err
    assert log.read_bytes() == before
    assert not [p for p in run_copy.rglob(".*") if p.name != repeatseg.files.MARKER]


def test_damaged_checkpoints_are_refused_on_resume(run_copy, cli):
    weights, state = run_copy / "checkpoints" / ckpt.WEIGHTS, run_copy / "checkpoints" / ckpt.STATE
    good = weights.read_bytes()
    weights.write_bytes(good[: len(good) // 2])
    refused(cli("--resume", run_copy), weights, "sha256")
    weights.write_bytes(good)
    state.write_bytes(b"garbage that is not a checkpoint")
    refused(cli("--resume", run_copy), state, "sha256")
    # A run from before manifests existed is read unchecked: the readers still name the file.
    (run_copy / "checkpoints" / ckpt.MANIFEST).unlink()
    err = refused(cli("--resume", run_copy), state, "weights-only")
    assert "weights_only=False" not in err
    weights.write_bytes(b"")
    refused(cli("--resume", run_copy), weights, "empty, truncated")


def test_altered_weights_in_a_run_are_refused_by_eval_and_export(run_copy, data_root, cli, tmp_path):
    best = run_copy / "checkpoints" / ckpt.BEST
    altered = bytearray(best.read_bytes())
    altered[-5] ^= 0x01  # still a valid safetensors file: only the manifest can tell
    best.write_bytes(bytes(altered))
    refused(cli("--checkpoint", run_copy, "--data-root", data_root, tool="eval_seg"), best, "sha256")
    refused(cli(run_copy, "--pack", "--output", tmp_path / "packed.safetensors", tool="export"), best, "sha256")


# --------------------------------------------------------------------- 2. safe outputs


def test_predictions_are_never_written_into_the_dataset(finished_run, own_data, cli, tmp_path):
    root, voc = own_data
    before = digest(voc)
    (tmp_path / "link").symlink_to(voc / "SegmentationClass")
    for target in (voc / "SegmentationClass", voc, tmp_path / "link"):
        refused(cli("--checkpoint", finished_run, "--data-root", root, "--save-predictions", target, "--device", "cpu",
                    tool="eval_seg"), "inside the dataset")
    assert digest(voc) == before


@pytest.mark.parametrize("bad_id", ["../../../escaped", "/tmp/absolute", "sub/dir", ".."])
def test_split_ids_that_are_paths_are_refused(own_data, cli, finished_run, tmp_path, bad_id):
    root, voc = own_data
    split = voc / "ImageSets" / "Segmentation" / "val.txt"
    split.write_text(split.read_text() + bad_id + "\n")
    with pytest.raises(DataError, match="paths, not file names"):
        VOCSegmentation(root, "val")
    refused(cli("--checkpoint", finished_run, "--data-root", root, "--save-predictions", tmp_path / "pred",
                "--device", "cpu", tool="eval_seg"), split)
    assert not (tmp_path / "escaped.png").exists()


def test_eval_outputs_are_checked_before_evaluating(finished_run, data_root, cli, tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("keep me")
    refused(cli("--checkpoint", finished_run, "--data-root", data_root, "--output", a_file, tool="eval_seg"), a_file)
    refused(cli("--checkpoint", finished_run, "--data-root", data_root, "--save-predictions", a_file,
                "--device", "cpu", tool="eval_seg"), a_file)
    assert a_file.read_text() == "keep me"
    before = digest(finished_run)
    refused(cli("--checkpoint", finished_run, "--data-root", data_root, "--output", finished_run, tool="eval_seg"),
            "training run folder")
    assert digest(finished_run) == before


def test_export_never_overwrites_a_checkpoint(finished_run, cli):
    before = digest(finished_run)
    best = finished_run / "checkpoints" / "best.safetensors"
    refused(cli(best, "--fold", "--output", best, tool="export"), "run folder")
    refused(cli(finished_run, "--pack", "--output", finished_run / "checkpoints" / "packed.safetensors", tool="export"),
            "run folder")
    assert digest(finished_run) == before


# ------------------------------------------------------------------ 3. one run per folder


HOLDER = """
import sys, time
sys.path.insert(0, sys.argv[1])
from repeatseg import files
with files.claim_run_folder(sys.argv[2]):
    print("claimed", flush=True)
    time.sleep(600)
"""


def test_a_second_training_on_a_claimed_folder_is_refused(data_root, tmp_path, cli):
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(ROOT), str(run)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "claimed"
        refused(cli("--data-root", data_root, "--output", run, "--iters", "1", *TRAIN), run, f"pid {holder.pid}")
        assert [p.name for p in run.iterdir()] == [repeatseg.files.OWNER_FILE]  # nothing written
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # The holder died without releasing its claim: the kernel dropped its lock, the next run takes it at once.
    code, _, err = cli("--data-root", data_root, "--output", run, "--iters", "1", *TRAIN)
    assert code == 0, err
    assert not (run / repeatseg.files.OWNER_FILE).exists()


# --------------------------------------------------------------------- 4. non-finite


def test_non_finite_lr_is_refused(data_root, tmp_path, cli):
    for value in (".inf", ".nan"):
        refused(cli("--data-root", data_root, "--output", tmp_path / "run", "--iters", "1", *TRAIN,
                    "--set", f"optim.lr={value}"), "optim.lr", "not a finite number")
    assert not (tmp_path / "run").exists()


def _weights_turn_nan_at_step(monkeypatch, bad_step):
    original = Trainer.step

    def step(self, inputs, targets):
        loss = original(self, inputs, targets)
        if self.progress.step == bad_step:
            with torch.no_grad():
                next(self.model.parameters()).fill_(float("nan"))
        return loss

    monkeypatch.setattr(Trainer, "step", step)


def test_non_finite_weights_are_never_saved(data_root, tmp_path, cli, monkeypatch):
    _weights_turn_nan_at_step(monkeypatch, bad_step=4)  # the last step of epoch 2
    run = tmp_path / "run"
    refused(cli("--data-root", data_root, "--output", run, "--epochs", "2", *TRAIN), "non-finite weights", code=3)
    manifest = ckpt.verify(run / "checkpoints")
    assert manifest["epoch"] == 1  # epoch 1's checkpoint, untouched
    for name in ("last.safetensors", "best.safetensors"):
        assert not repeatseg.files.non_finite_keys(ckpt.read_weights(run / "checkpoints" / name))
    _weights_turn_nan_at_step(monkeypatch, bad_step=1)
    refused(cli("--data-root", data_root, "--output", tmp_path / "one", "--iters", "1", *TRAIN), "non-finite", code=3)
    assert not (tmp_path / "one" / "checkpoints" / "last.safetensors").exists()


# -------------------------------------------------------------- 5. tampered packed files


def _packed(tmp_path):
    from tiny import tiny

    name = tiny("resnet18", 2, "flip").name
    model = repeatseg.build_segmenter(name, classes=3).eval()
    path = tmp_path / "m.safetensors"
    repeatseg.pack(model, path, {"encoder": name, "classes": 3, "in_channels": 3})
    data = path.read_bytes()
    size = int.from_bytes(data[:8], "little")
    return data[:8], json.loads(data[8:8 + size]), data[8 + size:]


def _rewrite(prefix, header, body, path):
    """The file with an edited header of the same length (so the safetensors layout stays valid)."""
    text = json.dumps(header, separators=(",", ":")).encode()
    original = int.from_bytes(prefix, "little")
    assert len(text) <= original
    path.write_bytes(prefix + text + b" " * (original - len(text)) + body)
    return path


def test_tampered_packed_headers_are_refused(tmp_path):
    prefix, header, body = _packed(tmp_path)
    float_key = next(k for k, v in header.items() if k != "__metadata__" and v["dtype"] == "F32")
    matrix_key = next(k for k, v in header.items() if k != "__metadata__" and v["shape"] != v["shape"][::-1])
    edits = {
        "dtype": lambda h: h[float_key].update(dtype="I32"),
        "shape": lambda h: h[matrix_key].update(shape=h[matrix_key]["shape"][::-1]),
        "metadata": lambda h: h["__metadata__"].update(classes="4"),
    }
    for what, edit in edits.items():
        changed = json.loads(json.dumps(header))
        edit(changed)
        with pytest.raises(ValueError, match="checksum"):
            repeatseg.load_packed(_rewrite(prefix, changed, body, tmp_path / f"{what}.safetensors"))
    assert repeatseg.load_packed(_rewrite(prefix, header, body, tmp_path / "same.safetensors"))  # the control
    older = json.loads(json.dumps(header))
    older["__metadata__"]["format"] = "repeatseg-packed-v1"
    with pytest.raises(ValueError, match="older format v1"):
        repeatseg.load_packed(_rewrite(prefix, older, body, tmp_path / "v1.safetensors"))


# ------------------------------------------------------ 6. extending a finished run


def test_resume_with_more_epochs_extends_the_schedule(run_copy, cli):
    import yaml

    refused(cli("--resume", run_copy, "--epochs", "1"), "already trained 4 steps")
    code, _, err = cli("--resume", run_copy, "--epochs", "3", "--set", "train.log_every=1")
    assert code == 0, err
    records = [json.loads(line) for line in (run_copy / "metrics.jsonl").read_text().splitlines()]
    lr = {r["step"]: r["lr"] for r in records if "loss" in r}
    assert list(lr) == [2, 4, 5, 6]
    assert lr[4] == 0 and lr[5] == pytest.approx(0.01 * (1 - 5 / 6) ** 0.9)  # the 6-step poly schedule at step 5
    saved = yaml.safe_load((run_copy / "config.yaml").read_text())
    assert saved["schedule"]["epochs"] == 3
    assert saved["provenance"]["schedule_changes"] == [{"at_step": 4, "from_steps": 4, "to_steps": 6}]
    assert ckpt.verify(run_copy / "checkpoints")["step"] == 6


# ------------------------------------------------- 7. a message instead of a traceback


def test_damaged_weight_files_are_named(finished_run, data_root, cli, tmp_path):
    good = (finished_run / "checkpoints" / "best.safetensors").read_bytes()
    for name, data in (("empty.safetensors", b""), ("cut.safetensors", good[: len(good) // 3])):
        path = tmp_path / name
        path.write_bytes(data)
        refused(cli("--data-root", data_root, "--output", tmp_path / "run", "--iters", "1", *TRAIN,
                    "--encoder-weights", path), path)
        refused(cli("--checkpoint", path, "--data-root", data_root, tool="eval_seg"), path)
        refused(cli(path, "--pack", "--output", tmp_path / "out.safetensors", tool="export"), path)
    assert not (tmp_path / "run").exists() and not (tmp_path / "out.safetensors").exists()


def test_yaml_that_does_not_parse_is_named(run_copy, data_root, cli, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim:\n  lr: [0.1\n")
    refused(cli("--config", bad, "--data-root", data_root, "--output", tmp_path / "new", *TRAIN), bad, "line")
    (run_copy / "config.yaml").write_text("model: {encoder: x\n")
    refused(cli("--resume", run_copy), run_copy / "config.yaml")


def test_disk_full_during_a_checkpoint_keeps_the_last_one(data_root, tmp_path, cli, monkeypatch):
    run = tmp_path / "run"
    original_save, saves = Trainer.save, []

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    def save(self, best):
        saves.append(best)
        with monkeypatch.context() as patch:
            if len(saves) == 2:  # the disk fills up during the second checkpoint
                patch.setattr(repeatseg.files.os, "fsync", disk_full)
            original_save(self, best)

    monkeypatch.setattr(Trainer, "save", save)
    refused(cli("--data-root", data_root, "--output", run, "--epochs", "3", *TRAIN), "No space left on device",
            run / "checkpoints")
    assert ckpt.verify(run / "checkpoints")["epoch"] == 1
    assert not [p for p in run.rglob(".*") if p.name != repeatseg.files.MARKER]  # no temporaries, no half-written checkpoint
    monkeypatch.setattr(Trainer, "save", original_save)
    code, _, err = cli("--resume", run)
    assert code == 0, err


def test_bad_numbers_are_named(data_root, tmp_path, cli):
    refused(cli("--data-root", data_root, "--output", tmp_path / "a", "--epochs", "0", *TRAIN), "schedule.epochs")
    refused(cli("--data-root", data_root, "--output", tmp_path / "b", "--iters", "1", *TRAIN, "--crop-size", "0"),
            "data.crop_size")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_mask_classes_beyond_the_model_are_named(own_data, tmp_path, cli):
    root, voc = own_data
    # A model.classes that disagrees with the dataset's class list is refused before anything runs.
    refused(cli("--data-root", root, "--output", tmp_path / "a", "--iters", "1", *TRAIN, "--set", "model.classes=5"),
            "model.classes", "classes.txt")
    assert not (tmp_path / "a").exists()
    # Masks holding values beyond the class list: the validation split is read before training, so
    # the first bad file is named and nothing is trained.
    val = VOCSegmentation(root, "val")
    first_bad = next(path for path in (val.paths(i)[1] for i in range(len(val)))
                     if ((np.array(Image.open(path)) >= 5) & (np.array(Image.open(path)) != 255)).any())
    refused(cli("--data-root", root, "--output", tmp_path / "b", "--iters", "1", *TRAIN,
                "--set", "data.classes=[bg, a, b, c, d]"), first_bad, "outside 0..4")
    assert not (tmp_path / "b").exists()


def test_eval_class_count_mismatch_is_named(data_root, tmp_path, cli):
    path = tmp_path / "two_classes.safetensors"
    model = repeatseg.build_segmenter(ENCODER, classes=2)
    repeatseg.files.save_weights(path, model.state_dict(), {"encoder": ENCODER, "classes": 2, "in_channels": 3})
    refused(cli("--checkpoint", path, "--data-root", data_root, "--device", "cpu", "--workers", "0", tool="eval_seg"),
            "predicts 2 classes", "VOC2012 has 21")


def test_resume_refuses_settings_it_could_not_honour(run_copy, cli):
    before = digest(run_copy)
    refused(cli("--resume", run_copy, "--encoder", "dense_r18_w1_b8"), "model.encoder", "config.yaml")
    refused(cli("--resume", run_copy, "--lr", "0.5"), "optim.lr")
    assert digest(run_copy) == before


def test_ctrl_c_says_how_to_resume(data_root, tmp_path, cli, monkeypatch):
    original = Trainer.train_one_epoch

    def interrupted_at(epoch):
        def train_one_epoch(self, current):
            if current == epoch:
                raise KeyboardInterrupt
            return original(self, current)
        return train_one_epoch

    monkeypatch.setattr(Trainer, "train_one_epoch", interrupted_at(0))
    refused(cli("--data-root", data_root, "--output", tmp_path / "early", "--epochs", "2", *TRAIN),
            "before the first checkpoint", code=130)
    monkeypatch.setattr(Trainer, "train_one_epoch", interrupted_at(1))
    run = tmp_path / "run"
    refused(cli("--data-root", data_root, "--output", run, "--epochs", "2", *TRAIN),
            f"interrupted; resume with --resume {run}", code=130)
    monkeypatch.setattr(Trainer, "train_one_epoch", original)
    code, _, err = cli("--resume", run)
    assert code == 0, err
    code, _, err = cli("--data-root", data_root, "--output", tmp_path / "early", "--epochs", "1", *TRAIN)
    assert code == 0, err  # a folder stopped before its first checkpoint starts again


# ------------------------------------------------------------------ 8. clearer messages


def test_worker_errors_read_like_main_process_errors(own_data, tmp_path, cli):
    root, voc = own_data
    bad = voc / "SegmentationClass" / f"{VOCSegmentation(root, 'train').ids[1]}.png"
    save_mask(np.zeros((5, 7), np.uint8), bad)
    messages = []
    for workers in ("0", "1"):
        args = ["--data-root", root, "--output", tmp_path / f"w{workers}", "--epochs", "1", *TRAIN, "--workers", workers]
        messages.append(refused(cli(*args), bad).strip())
    assert messages[0] == messages[1] and len(messages[1].splitlines()) == 1


def test_nan_in_pretrained_weights_is_named(data_root, tmp_path, cli):
    encoder = repeatseg.build_segmenter(ENCODER).encoder.state_dict()
    encoder["conv1.weight"][0, 0, 0, 0] = float("nan")
    path = tmp_path / "nan.safetensors"
    repeatseg.files.save_weights(path, encoder)
    refused(cli("--data-root", data_root, "--output", tmp_path / "run", "--iters", "1", *TRAIN,
                "--encoder-weights", path), path, "NaN", "conv1.weight")


def test_bad_validation_data_stops_the_run_before_training(own_data, tmp_path, cli):
    root, voc = own_data
    image = voc / "JPEGImages" / f"{VOCSegmentation(root, 'val').ids[1]}.jpg"
    image.write_bytes(b"not a jpeg")
    refused(cli("--data-root", root, "--output", tmp_path / "run", "--epochs", "1", *TRAIN), image, "nothing was trained")
    assert not (tmp_path / "run").exists()


def test_check_data_reports_an_empty_split(own_data, capsys):
    root, voc = own_data
    (voc / "ImageSets" / "Segmentation" / "val.txt").write_text("\n")
    check_data = _tool("check_data")
    assert check_data.main(type("Args", (), {"data_root": root, "split": ["train", "val"]})()) == 1
    out = capsys.readouterr().out
    assert "train: ok" in out and "lists no image ids" in out
