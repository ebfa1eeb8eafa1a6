"""Rerun one (encoder, seed) pair of a finished study from its committed configs and compare.

A published study (``results/<study>/``) keeps every unit's ``config.yaml`` and ``metrics.json``
but no weights. Reproducing a pair is therefore its pretraining (from the pretraining run's
config), the export of its final encoder, and its cell (from the cell's config, pointed at the
new export), each in a fresh folder under ``output``; the study folder is only read. On the same
kind of machine at the recorded thread count a CPU run is deterministic, so the numbers agree to
the last digit there; on other hardware (another CPU's kernels, a GPU) they agree to within the
seed spread, not exactly (``docs``: results, digits). So the outcome says on which CPU the cell ran
(its ``timing.jsonl`` record, where the study recorded one) and on which the rerun did.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..config import ClsConfig, SegConfig, load_config
from ..engine.distributed import DistInfo
from ..files import write_json
from ..threads import cpu_kind
from ..weights import export_encoder
from .aggregate import read_summary, timing_records
from .machines import KIND_KEYS


def reproduce_pair(study_dir: str | Path, encoder: str, seed: int, output: str | Path,
                   data_root: str | None = None, cls_data_root: str | None = None) -> dict:
    """Retrain ``encoder`` at ``seed`` as ``study_dir`` did; returns (and writes to
    ``output/reproduction.json``) the committed and the new top-1 and mIoU and their differences.
    ``data_root`` / ``cls_data_root``: where this machine keeps the cell's / pretraining's data."""
    from ..engine.cls import train_classification
    from ..engine.seg import train_segmentation

    study_dir, output = Path(study_dir), Path(output)
    cell_dir = study_dir / "cells" / encoder / f"seed{seed}"
    pretrain_dir = study_dir / "pretrain" / encoder / f"seed{seed}"
    if not (cell_dir / "metrics.json").is_file():
        raise FileNotFoundError(f"{cell_dir}: no finished cell of {encoder} seed {seed} in {study_dir}")
    outcome: dict = {"study": str(study_dir), "encoder": encoder, "seed": seed}
    weights = None
    if (pretrain_dir / "config.yaml").is_file():
        cls_cfg = load_config(ClsConfig, [pretrain_dir / "config.yaml"])
        cls_cfg = dataclasses.replace(cls_cfg, output=str(output / "pretrain"),
                                      data=dataclasses.replace(cls_cfg.data, root=cls_data_root or cls_cfg.data.root))
        train_classification(cls_cfg, output / "pretrain", DistInfo())
        weights = output / "encoder.safetensors"
        export_encoder(output / "pretrain", weights, which="last")
        outcome["top1"] = {"committed": read_summary(pretrain_dir / "metrics.json", ("top1",))["top1"],
                           "rerun": read_summary(output / "pretrain" / "metrics.json", ("top1",))["top1"]}
    seg_cfg = load_config(SegConfig, [cell_dir / "config.yaml"])
    model = dataclasses.replace(seg_cfg.model, encoder_weights=str(weights) if weights else seg_cfg.model.encoder_weights)
    seg_cfg = dataclasses.replace(seg_cfg, output=str(output / "cell"), model=model, provenance={},
                                  data=dataclasses.replace(seg_cfg.data, root=data_root or seg_cfg.data.root))
    train_segmentation(seg_cfg, output / "cell", DistInfo())
    outcome["miou"] = {"committed": read_summary(cell_dir / "metrics.json", ("miou",))["miou"],
                       "rerun": read_summary(output / "cell" / "metrics.json", ("miou",))["miou"]}
    committed = next((record for record in reversed(timing_records(study_dir)) if record.get("kind") == "cell"
                      and record.get("encoder") == encoder and record.get("seed") == seed), {})
    machine = {"committed": {key: committed[key] for key in KIND_KEYS if key in committed} or None,
               "rerun": cpu_kind()}
    machine["same_kind"] = None if machine["committed"] is None else machine["committed"] == machine["rerun"]
    outcome["machine"] = machine  # same_kind None: not recorded (studies before cpu_kind was logged)
    for entry in (outcome.get("top1"), outcome["miou"]):
        if entry:
            entry["difference"] = entry["rerun"] - entry["committed"]
    write_json(output / "reproduction.json", outcome)
    return outcome
