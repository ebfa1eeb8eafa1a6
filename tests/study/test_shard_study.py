"""Two shards of a tiny digits study started together through the command line, with real training:
between them they run every unit once and the one that completes the grid writes the report."""

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

from tiny_study import ENCODERS, study_args

ROOT = Path(__file__).resolve().parents[2]


def shard_command(study_dir: Path, data: Path, shard: str) -> list[str]:
    return [sys.executable, "tools/transfer_study.py", *study_args(study_dir, data), "--shard", shard]


def test_two_shards_started_together_run_every_unit_once_and_write_the_report(tiny_digits, tmp_path):
    study_dir = tmp_path / "study"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    shards = [subprocess.Popen(shard_command(study_dir, tiny_digits, f"{i}/2"), cwd=ROOT, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(2)]
    outputs = [shard.communicate(timeout=900) for shard in shards]
    assert [shard.returncode for shard in shards] == [0, 0], [err[-3000:] for _, err in outputs]

    timing = [json.loads(line) for line in (study_dir / "timing.jsonl").read_text().splitlines()]
    runs = Counter((t["kind"], t["encoder"], t["seed"]) for t in timing)
    expected = {(kind, e, s) for kind in ("pretrain", "cell") for e in ENCODERS for s in (0, 1)}
    assert set(runs) == expected and set(runs.values()) == {1}  # every unit run, none twice
    by_pair = {(t["encoder"], t["seed"]): {r["shard"] for r in timing if (r["encoder"], r["seed"]) ==
                                           (t["encoder"], t["seed"])} for t in timing}
    assert all(len(found) == 1 for found in by_pair.values())  # a pair's pretraining and cell on one shard
    assert {t["shard"] for t in timing} == {"0/2", "1/2"}  # both shards did work
    saved = (study_dir / "study.yaml").read_text()
    assert {t["threads"] for t in timing} == {1} and "train.threads=1" in saved  # one recorded count ($OMP_NUM_THREADS)
    assert all(1 <= t["study_processes_on_host"] <= 2 for t in timing)

    assert any("report:" in out for out, _ in outputs)  # the shard that completed the grid wrote it
    rows = {r["encoder"]: r for r in json.loads((study_dir / "results.json").read_text())["rows"]}
    assert all(rows[e]["n"] == 2 and rows[e]["top1_n"] == 2 for e in ENCODERS)
    for encoder in ENCODERS:  # each cell was trained once: one final evaluation in its log
        for seed in (0, 1):
            log = (study_dir / "cells" / encoder / f"seed{seed}" / "metrics.jsonl").read_text().splitlines()
            assert sum('"val"' in line for line in log) == 1
