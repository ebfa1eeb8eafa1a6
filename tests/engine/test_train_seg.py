"""Segmentation training end to end on the synthetic VOC set: learning, resume, DDP, failures, eval."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tiny import run_killed_at_epoch

import repeatseg.files
from repeatseg.config import SegConfig, load_config
from repeatseg.data.synthetic import make_synthetic_voc
from repeatseg.engine import checkpoint as ckpt
from repeatseg.engine import seg
from repeatseg.engine.distributed import setup
from repeatseg.engine.seg import train_segmentation
from repeatseg.engine.trainer import EMA_WARMUP_POWER, NonFiniteLossError, Trainer
from repeatseg.errors import ConfigError
from tests.tool_loader import load_tool

ROOT = Path(__file__).resolve().parents[2]
CLASSES = (1, 7, 13)  # ellipse/stripes, diamond/checker, triangle/dots: distinct shape, texture, hue
ENCODER = "repeat_r18_f2_b8"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    make_synthetic_voc(root, num_train=32, num_val=8, seed=0, min_size=64, max_size=96, classes=CLASSES)
    return root


def config(data_root, output, *sets):
    base = [f"data.root={data_root}", "data.dataset=voc", f"model.encoder={ENCODER}", "data.crop_size=64",
            "data.workers=0", "train.batch_size=8", "train.device=cpu", "train.log_mode=quiet",
            "train.eval_batch_size=4", "optim.lr=0.05", "schedule.epochs=3", "schedule.warmup_iters=0",
            "train.eval_every=1", f"output={output}"]
    return load_config(SegConfig, sets=[*base, *sets])


@pytest.mark.slow
def test_tiny_training_learns_well_above_chance(data_root, tmp_path):
    cfg = config(data_root, tmp_path / "run", "schedule.epochs=12", "train.eval_every=12")
    metrics = train_segmentation(cfg, tmp_path / "run", setup("cpu"))
    # Chance: everything background gives IoU(bg) ~0.7 and 0 for the 3 object classes, mIoU ~0.18.
    assert metrics["miou"] > 0.35, metrics["per_class_iou"]
    files = {p.name for p in (tmp_path / "run").rglob("*") if p.is_file()}
    assert {"config.yaml", "metrics.jsonl", "metrics.json", "last.safetensors", "best.safetensors",
            "last.state.pt"} <= files
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert {"loss", "lr", "images_per_s", "data_wait_share"} <= set(records[0])
    summary = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert summary["miou"] == metrics["miou"] and 0 <= summary["pixel_acc"] <= 1


def test_resume_matches_uninterrupted_run(data_root, tmp_path):
    train_segmentation(config(data_root, tmp_path / "full"), tmp_path / "full", setup("cpu"))

    run_killed_at_epoch(lambda: train_segmentation(config(data_root, tmp_path / "cut"), tmp_path / "cut",
                                                   setup("cpu")), epoch=2)
    assert ckpt.load_weights(tmp_path / "cut/checkpoints/last.safetensors")  # epoch 2 survived
    train_segmentation(load_config(SegConfig, [tmp_path / "cut/config.yaml"]), tmp_path / "cut", setup("cpu"),
                       resume=True)

    full = ckpt.load_weights(tmp_path / "full/checkpoints/last.safetensors")
    resumed = ckpt.load_weights(tmp_path / "cut/checkpoints/last.safetensors")
    assert full.keys() == resumed.keys()
    for key in full:
        assert torch.equal(full[key], resumed[key]), key


def test_an_ema_run_evaluates_and_saves_the_average_and_resumes_to_the_same_weights(data_root, tmp_path,
                                                                                    monkeypatch, cli):
    ema = "train.ema_decay=0.8"  # the cap binds from step 9 on (1 - 9^-3/4 = 0.81) of the 12
    raw = []  # the model's own weights after every step
    original = Trainer.step

    def step(self, inputs, targets):
        loss = original(self, inputs, targets)
        raw.append({k: v.detach().clone() for k, v in self.model.state_dict().items()})
        return loss

    monkeypatch.setattr(Trainer, "step", step)
    final = train_segmentation(config(data_root, tmp_path / "full", ema), tmp_path / "full", setup("cpu"))
    monkeypatch.undo()
    # The average by hand: step k's decay is 0 at k = 1, then min(cap, 1 - k^-3/4) (ModelEmaV3's warmup).
    average = {}
    for k, weights in enumerate(raw, start=1):
        decay = 0.0 if k == 1 else min(0.8, 1 - k ** -EMA_WARMUP_POWER)
        average = {n: w.clone() if not w.is_floating_point() or n not in average else decay * average[n] + (1 - decay) * w
                   for n, w in weights.items()}
    saved = ckpt.load_weights(tmp_path / "full/checkpoints/last.safetensors")
    state = ckpt.load_state(tmp_path / "full/checkpoints/last.state.pt")
    for name, value in average.items():
        torch.testing.assert_close(saved[name], value, rtol=1e-5, atol=1e-6, msg=name)
        assert torch.equal(state["train_weights"][name], raw[-1][name]), name  # the raw weights, for the resume
    assert any(not torch.allclose(saved[n], raw[-1][n]) for n in saved)  # the average is not the last weights
    # What metrics.json says is what the saved file gives.
    code, out, err = cli("--checkpoint", tmp_path / "full/checkpoints/last.safetensors", "--data-root", data_root,
                         "--output", tmp_path / "eval", "--device", "cpu", tool="eval_seg")
    assert code == 0, err
    assert json.loads((tmp_path / "eval/metrics.json").read_text())["miou"] == pytest.approx(final["miou"], abs=1e-6)

    run_killed_at_epoch(lambda: train_segmentation(config(data_root, tmp_path / "cut", ema), tmp_path / "cut",
                                                   setup("cpu")), epoch=2)
    train_segmentation(load_config(SegConfig, [tmp_path / "cut/config.yaml"]), tmp_path / "cut", setup("cpu"),
                       resume=True)
    resumed = ckpt.load_weights(tmp_path / "cut/checkpoints/last.safetensors")
    resumed_state = ckpt.load_state(tmp_path / "cut/checkpoints/last.state.pt")
    for name, value in saved.items():
        assert torch.equal(resumed[name], value) and torch.equal(resumed_state["train_weights"][name],
                                                                 state["train_weights"][name]), name


@pytest.mark.parametrize("value", [0, 1, 1.5])
def test_an_ema_decay_outside_0_1_is_refused(value):
    with pytest.raises(ConfigError, match="train.ema_decay: must be strictly between 0 and 1"):
        load_config(SegConfig, sets=[f"train.ema_decay={value}"])


def test_non_finite_loss_stops_and_keeps_the_last_checkpoint(data_root, tmp_path, monkeypatch):
    run = tmp_path / "run"
    run_killed_at_epoch(lambda: train_segmentation(config(data_root, run), run, setup("cpu")), epoch=1)
    before = (run / "checkpoints/last.safetensors").read_bytes()
    calls = []

    def loss_turning_nan(logits, target, **kwargs):
        calls.append(1)
        loss = torch.nn.functional.mse_loss(logits, logits.detach())
        return loss * float("nan") if len(calls) == 3 else loss

    monkeypatch.setattr(seg.F, "cross_entropy", loss_turning_nan)
    with pytest.raises(NonFiniteLossError, match="last good checkpoint"):
        train_segmentation(config(data_root, run), run, setup("cpu"), resume=True)
    assert (run / "checkpoints/last.safetensors").read_bytes() == before


def test_atomic_write_keeps_the_old_file_when_interrupted(tmp_path, monkeypatch):
    path = tmp_path / "last.safetensors"
    ckpt.save_weights(path, {"w": torch.ones(3)})

    def crash(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(repeatseg.files.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_weights(path, {"w": torch.zeros(3)})
    assert torch.equal(ckpt.load_weights(path)["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.safetensors"]  # no temp file left behind


_tool = load_tool



CLI_ARGS = ["--encoder", ENCODER, "--dataset", "voc", "--crop-size", "64", "--batch-size", "8", "--workers", "0",
            "--device", "cpu", "--log-mode", "plain", "--set", "train.eval_batch_size=4",
            "--set", "schedule.warmup_iters=0", "--set", "train.eval_every=1"]


def test_eval_seg_reproduces_training_metrics_and_writes_predictions(data_root, tmp_path, cli):
    run = tmp_path / "run"
    code, out, err = cli("--data-root", data_root, "--output", run, "--epochs", "1", *CLI_ARGS)
    assert code == 0, err
    assert "miou" in out and "background" in out
    final = json.loads((run / "metrics.json").read_text())
    code, out, err = cli("--checkpoint", run, "--data-root", data_root, "--output", tmp_path / "eval",
                         "--save-predictions", tmp_path / "pred", "--device", "cpu", tool="eval_seg")
    assert code == 0, err
    assert f"evaluating {run / 'checkpoints' / 'best.safetensors'}" in err and "split 'val'" in err and "8 images" in err
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert evaluated["miou"] == pytest.approx(final["miou"], abs=1e-6)
    predictions = sorted((tmp_path / "pred").glob("*.png"))
    assert len(predictions) == 8
    voc = data_root / "VOCdevkit" / "VOC2012"
    first = Image.open(predictions[0])
    assert first.mode == "P" and first.size == Image.open(voc / "JPEGImages" / f"{predictions[0].stem}.jpg").size
    assert set(np.unique(np.array(first))) <= set(range(21))
    code, out, _ = cli("--checkpoint", run / "checkpoints" / "last.safetensors", "--data-root", data_root, "--flip",
                       "--device", "cpu", tool="eval_seg")
    assert code == 0 and "miou" in out
    code, _, err = cli("--data-root", data_root, "--output", run, "--epochs", "1", *CLI_ARGS)
    assert code == 2 and "--resume" in err  # an existing run is never overwritten


def test_cli_errors_name_the_problem(data_root, tmp_path, cli):
    code, _, err = cli("--data-root", data_root, "--output", tmp_path / "a", "--epochs", "1", "--set", "optim.lrr=1")
    assert code == 2 and "optim.lrr" in err
    code, _, err = cli("--data-root", tmp_path, "--output", tmp_path / "b", "--epochs", "1", *CLI_ARGS)
    assert code == 2 and "JPEGImages/<id>.jpg" in err
    code, _, err = cli("--data-root", data_root, "--output", tmp_path / "c", "--set", "schedule.epochs=1",
                       "--set", "schedule.iters=2", *CLI_ARGS)
    assert code == 2 and "not both" in err
    code, _, err = cli("--checkpoint", tmp_path / "missing", tool="eval_seg")
    assert code == 2 and "missing" in err


@pytest.mark.slow
def test_two_process_gloo_ddp_run(data_root, tmp_path):
    run = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(ROOT / "tools" / "train_seg.py"), "--data-root", str(data_root), "--output", str(run),
         "--iters", "6", *CLI_ARGS, "--set", "train.log_every=4", "--log-mode", "bar"],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if "loss" in r]
    # One writer (no duplicated records); the bar shows on rank 0 only, yet every rank logs the
    # epoch's last, partial window together (it is a collective).
    assert steps == [4, 6]
    assert records[0]["images_per_s"] > 0
    summary = json.loads((run / "metrics.json").read_text())
    assert summary["steps"] == 6 and 0 <= summary["miou"] <= 1


def test_run_folder_defaults_to_runs_slash_encoder(data_root, tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = cli("--data-root", data_root, "--iters", "1", *CLI_ARGS)
    assert code == 0, err
    assert (tmp_path / "runs" / ENCODER / "metrics.json").is_file()


def test_a_training_says_what_it_will_do_and_writes_plain_lines_to_a_log(data_root, tmp_path, cli):
    """Without --config the README's recipe applies (warmup 500, so 2 steps end warming up: said);
    the banner names steps, evaluations, data, parameters, device and weights; a bar is never drawn
    into a file (stderr is not a terminal here), log lines are written instead."""
    args = ["--data-root", data_root, "--output", tmp_path / "run", "--iters", "2", "--encoder", ENCODER,
            "--dataset", "voc", "--crop-size", "64", "--batch-size", "8", "--workers", "0", "--device", "cpu",
            "--log-mode", "bar", "--set", "train.eval_batch_size=4", "--set", "train.log_every=1"]
    code, out, err = cli(*args)
    assert code == 0, err
    assert "training 2 of 2 steps: 1 epochs of 4 steps, 1 evaluation(s)" in err
    assert "32 training images (train), 8 validation images (val)" in err
    assert "trainable parameters" in err and "device cpu" in err and "encoder weights: none (random init)" in err
    assert "warning: the schedule ends after 2 steps, before its 500 warmup steps" in err
    assert "\r" not in err and "step 2/2 loss" in out


def test_default_workers_never_exceed_the_cores_left_to_them(monkeypatch):
    from repeatseg.config import default_workers

    for cores, expected in ((1, 0), (2, 1), (3, 2), (64, 4)):
        monkeypatch.setattr(os, "sched_getaffinity", lambda _pid, n=cores: set(range(n)))
        assert default_workers() == expected
        assert load_config(SegConfig).data.workers == expected


def test_train_seg_defaults_are_the_recipe_file_s_schedule_and_evaluation():
    import yaml

    recipe = yaml.safe_load((ROOT / "configs" / "seg" / "voc_unet.yaml").read_text())
    defaults = load_config(SegConfig)
    assert defaults.schedule.warmup_iters == recipe["schedule"]["warmup_iters"]
    assert defaults.train.eval_every == recipe["train"]["eval_every"]
