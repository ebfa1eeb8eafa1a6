"""The study's bill (``--plan``): images, FLOPs and hours against hand computations, split sizes from
the flag, the disk or known data sets, and the command line."""

import json
from pathlib import Path

import pytest

from repeatseg import describe
from repeatseg.config import ClsConfig, SegConfig, StudyConfig, load_config
from repeatseg.study.plan import cell_cost, evaluations, make_shard, plan_costs, pretrain_cost, tflops_from_bench, totals
from tests.tool_loader import load_tool

ROOT = Path(__file__).resolve().parents[2]


def study_of(*sets: str) -> StudyConfig:
    return load_config(StudyConfig, [ROOT / "configs/study/digits.yaml"], sets=list(sets))


def test_a_digits_cell_and_its_pretraining_match_a_hand_computation(tmp_path):
    # No data at data.root: the sizes are the known ones (2,000 / 1,000 scenes; 4,000 / 1,000 digits).
    absent = tmp_path / "absent"
    study = study_of("encoders=[dense_r18_w1_b4]", "seeds=[0]", f"seg_sets=[data.root={absent}]",
                     f"pretrain.sets=[data.root={absent}]")
    pretrain, cell = plan_costs(study)
    # Cell: 1,000 steps x 16 = 16,000 images; 2,000 // 16 = 125 steps per epoch, so 8 epochs, and
    # with eval_every 1000 one evaluation (at the end) of the 1,000 val scenes, at the 32 px crop.
    macs = describe("dense_r18_w1_b4", 32, segmenter=True, classes=11, decoder_channels=[64, 32, 16, 16, 16]).macs
    assert macs < describe("dense_r18_w1_b4", 32, segmenter=True, classes=11).macs  # the recipe's smaller decoder
    assert (cell.steps, cell.train_images, cell.eval_images, cell.macs) == (1000, 16000, 1000, macs)
    assert cell.flops == 6 * macs * 16000 + 2 * macs * 1000
    assert "known" in cell.sizes and cell.status == "-"
    # Pretraining: 3 epochs x (4,000 // 64 = 62 steps) x 64 = 11,904 images; one evaluation of 1,000.
    assert (pretrain.steps, pretrain.train_images, pretrain.eval_images, pretrain.input_size) == (186, 11904, 1000, 32)
    assert pretrain.flops == 6 * pretrain.macs * 11904 + 2 * pretrain.macs * 1000
    # The classifier (head included, no skip adapters) costs about what describe's encoder does.
    assert pretrain.macs == pytest.approx(describe("dense_r18_w1_b4", 32).macs, rel=0.1)
    [cells, pretrainings, both] = totals([pretrain, cell], tflops=1.0)
    assert both["flops"] == cell.flops + pretrain.flops and both["train_images"] == 16000 + 11904
    assert both["hours"] == pytest.approx((cell.flops + pretrain.flops) / 1e12 / 3600)
    assert (cells["units"], pretrainings["units"]) == (1, 1)


def test_the_issues_voc_figures_one_h100_hour_per_dense_4x_cell_thirty_for_its_pretraining():
    study = load_config(StudyConfig, [ROOT / "configs/study/voc_table3.yaml"],
                        sets=["encoders=[dense_r18_w4]", "seeds=[0]", "pretrain.enabled=true",
                              "pretrain.config=configs/cls/imagenet_r18.yaml"])
    pretrain, cell = plan_costs(study)
    # 40k iterations x 16 at 512 px; train_aug (10,582 // 16 = 661 steps) gives 61 epochs, evaluated
    # at 5, 10, ..., 60 and 61: 13 passes over the 1,449 val images.
    assert (cell.train_images, cell.eval_images) == (640000, 13 * 1449)
    assert cell.flops / 160e12 / 3600 == pytest.approx(1.0, abs=0.1)
    # 90 epochs x (1,281,167 // 256 = 5,004 steps) x 256; evaluated every 5 epochs: 18 x 50,000.
    assert (pretrain.train_images, pretrain.eval_images) == (90 * 5004 * 256, 18 * 50000)
    assert 28 < pretrain.flops / 160e12 / 3600 < 34


def test_evaluations_follow_the_trainer():
    assert [evaluations(e, 5) for e in (4, 5, 6, 61)] == [1, 1, 2, 13]
    assert evaluations(8, 1000) == 1 and evaluations(3, 1) == 3


def test_unknown_split_sizes_are_said_and_taken_from_the_flag_or_the_disk(tmp_path):
    from repeatseg.data.synthetic import make_synthetic_voc

    recipe = load_config(SegConfig, [ROOT / "configs/seg/voc_unet.yaml"],
                         sets=[f"data.root={tmp_path / 'absent'}", "data.classes=[background, road]",
                               "schedule.iters=null", "schedule.epochs=10", "model.encoder=dense_r18_w1_b8",
                               "data.split=train"])
    unknown = cell_cost(recipe)  # a VOC-layout set of its own classes, not on disk: size unknown
    assert unknown.steps is None and unknown.flops is None and "unknown" in unknown.sizes
    flagged = cell_cost(recipe, images_per_epoch=100)
    assert (flagged.steps, flagged.train_images, flagged.eval_images) == (10 * 6, 960, None)
    make_synthetic_voc(tmp_path / "voc", num_train=40, num_val=3, min_size=64, max_size=80, classes=(1, 2))
    recipe.data.root = str(tmp_path / "voc")
    counted = cell_cost(recipe)  # 40 // 16 = 2 steps per epoch; evaluated at 5 and 10 of 3 images
    assert (counted.steps, counted.train_images, counted.eval_images) == (20, 320, 6)
    assert "counted in" in counted.sizes
    with pytest.raises(ValueError, match="fewer than one batch"):
        cell_cost(recipe, images_per_epoch=8)


def test_a_pretraining_counts_the_images_of_its_image_folder(tmp_path):
    for name in ("train/0/a.png", "train/0/b.JPEG", "train/1/c.png", "train/1/notes.txt", "val/0/d.png"):
        (tmp_path / "cls" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "cls" / name).write_bytes(b"")
    recipe = load_config(ClsConfig, [ROOT / "configs/cls/digits.yaml"],
                         sets=[f"data.root={tmp_path}", "train.batch_size=1", "model.name=dense_resnet18_w1_b8"])
    cost = pretrain_cost(recipe, "dense_r18_w1_b8")  # 3 images (not the .txt), 3 epochs, one evaluation of 1
    assert (cost.steps, cost.train_images, cost.eval_images) == (9, 9, 1) and "counted in" in cost.sizes
    assert "known" in pretrain_cost(recipe, "dense_r18_w1_b8", look_on_disk=False).sizes


def test_bench_results_give_a_throughput(tmp_path):
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"dense": "dense_r18_w1_b8", "input_size": 64, "batch": 2,
                                 "train_step_s": {"candidate": 0.3, "dense": 0.5}}))
    macs = describe("dense_r18_w1_b8", 64, segmenter=True).macs
    assert tflops_from_bench(bench) == pytest.approx(6 * macs * 2 / 0.5 / 1e12)
    bench.write_text("{}")
    with pytest.raises(ValueError, match="not a tools/bench.py"):
        tflops_from_bench(bench)


def _tool():
    return load_tool("transfer_study")


def run_tool(*argv: str) -> int:
    tool = _tool()
    return tool.main(tool.get_args_parser().parse_args(list(argv)))


def test_plan_on_the_command_line_trains_nothing_and_prints_json_and_shards(tmp_path, capsys):
    args = ["--config", "configs/study/digits.yaml", "--set", "seeds=[0, 1]",
            "--set", "encoders=[dense_r18_w1_b4, dense_r18_w4_b4]", "--output", str(tmp_path / "study")]
    assert run_tool(*args, "--plan", "--json", "--tflops", "0.01", "--shard", "0/2") == 0
    plan = json.loads(capsys.readouterr().out)
    assert [(u["kind"], u["encoder"], u["seed"]) for u in plan["units"]][:2] == [("pretrain", "dense_r18_w1_b4", 0),
                                                                                 ("cell", "dense_r18_w1_b4", 0)]
    assert all(u["status"] == "to do" and u["shard"] in (0, 1) for u in plan["units"])
    study = study_of("seeds=[0, 1]", "encoders=[dense_r18_w1_b4, dense_r18_w4_b4]")
    assignment = make_shard(study, 0, 2).assignment
    assert all(u["shard"] == assignment[(u["encoder"], u["seed"])] for u in plan["units"])
    parts = {t["part"]: t for t in plan["totals"]}
    assert parts["all"]["flops"] == sum(u["flops"] for u in plan["units"])
    assert parts["shard 0"]["flops"] + parts["shard 1"]["flops"] == parts["all"]["flops"]
    assert not (tmp_path / "study").exists()  # a plan writes nothing

    assert run_tool(*args, "--plan", "--tflops", "0.01") == 0
    table = capsys.readouterr().out
    assert "| cell | dense_r18_w4_b4 | 1 | 32 | 16 | 1,000 | 16,000 | 1,000 |" in table
    assert "| all | 8 |" in table and "at 0.01 TFLOPS" in table


@pytest.mark.parametrize("argv, message", [
    (["--plan", "--shard", "2/2"], "--shard 2/2"),
    (["--output", "x", "--json"], "--json goes with --plan"),
    ([], "--output"),
    (["--plan", "--images-per-epoch", "0"], "--images-per-epoch must be at least 1"),
])
def test_bad_scale_out_arguments_exit_2_with_a_message(argv, message, capsys):
    assert run_tool("--config", "configs/study/digits.yaml", *argv) == 2
    assert message in capsys.readouterr().err
