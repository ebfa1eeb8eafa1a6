"""Run the study grid as a list of units: (optional) pretraining per (encoder, seed), then one
``train_seg`` cell per (encoder, seed) that starts from that seed's pretrained encoder.

Study folder::

    <study>/study.yaml                                 the resolved study config
    <study>/pretrain/<encoder>/seed<k>/                train_cls.py runs (when pretrain.enabled)
    <study>/weights/<encoder>-<tag>-seed<k>.safetensors
    <study>/cells/<encoder>/seed<k>/                   ordinary train_seg.py run folders
    <study>/timing.jsonl                               wall time, machine load and threads of every unit run
    <study>/.processes/<host>-<pid>.lock               one per live study process (repeatseg.study.processes)
    <study>/report.md, results.csv, results.json, figures/

With ``cells: false`` (a classification study) the plan is the pretraining units alone, none
exported: a unit is finished when its ``metrics.json`` is written.

The plan (``plan_units``) is seed-major: every encoder at seed 0, then seed 1, ..., so a study cut
short still has a full grid at fewer seeds. A unit whose output exists is skipped (a pretraining
unit once its weights are exported, a cell once ``metrics.json`` is written); one with
``checkpoints/last.state.pt`` is resumed; so killing the study loses at most the current epoch.

Several processes may share one study folder (``Shard``: n jobs, each running its part of the
plan; ``repeatseg.study.plan.make_shard`` assigns the units). Every unit runs under a claim on its
run folder (``repeatseg.files.claim_run_folder``), so no unit runs twice: a process waits for its
units that another live process holds (and for a cell's pretraining another process is running)
until they finish, or until the holder dies (the kernel then drops its lock) and it takes the unit
over and resumes it.

Every unit of a study runs at one intra-op thread count, recorded in ``study.yaml`` (part of the
recipe; see ``repeatseg.study.processes``), and a process that would crowd its host says so.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from ..classifiers import timm_name_of
from ..config import (
    FREE_ON_RESUME,
    ClsConfig,
    ConfigError,
    SegConfig,
    StudyConfig,
    config_differences,
    load_config,
    validated,
)
from ..engine.distributed import DistInfo, barrier
from ..errors import OutputExistsError
from ..files import (
    MARKER,
    OWNER_FILE,
    TEMP_SUFFIX,
    FolderClaimedError,
    claim_run_folder,
    marker_kind,
    remove_stale_temporaries,
    write_marker,
)
from ..outputs import enclosing_dataset, is_study_folder
from ..threads import cpu_kind, usable_cores
from ..weights import export_encoder
from .processes import SETTLE_S, at_threads, fix_threads, planned_threads, register


@dataclass
class PretrainPlan:
    """Pretrain ``encoder`` as a classifier with ``seed`` and export its encoder to ``weights``."""

    encoder: str
    seed: int
    run_dir: Path
    weights: Path
    export: bool = True  # False in a classification study (cells: false): the run is the result
    cell_summary: Path | None = None  # its cell's metrics.json: once it exists the weights are no longer needed
    kind = "pretrain"

    @property
    def finished(self) -> bool:
        """Exported (or, in a classification study, its run finished); also once its cell has
        finished: a published study keeps no weights, and its pretrainings are not redone."""
        if not self.export:
            return (self.run_dir / "metrics.json").is_file()
        return self.weights.is_file() or (self.cell_summary is not None and self.cell_summary.is_file())

    @property
    def started(self) -> bool:
        return (self.run_dir / "checkpoints" / "last.state.pt").is_file()


@dataclass
class CellPlan:
    """Fine-tune ``encoder`` with ``seed`` (from ``pretrain``'s weights when there is one)."""

    encoder: str
    seed: int
    run_dir: Path
    pretrain: PretrainPlan | None = None
    kind = "cell"

    @property
    def finished(self) -> bool:
        return (self.run_dir / "metrics.json").is_file()

    @property
    def started(self) -> bool:
        return (self.run_dir / "checkpoints" / "last.state.pt").is_file()


def added_seeds(study: StudyConfig, study_dir: Path) -> dict[str, list[int]]:
    """encoder -> the seeds beyond ``study.seeds`` that precision targets added (their run folders
    exist: ``repeatseg.study.adaptive`` claims them before they run). Empty without targets."""
    if not study.targets:
        return {}
    added = {}
    for name in study.encoders:
        found = {int(p.name[4:]) for kind in ("pretrain", "cells") for p in (study_dir / kind / name).glob("seed*")
                 if p.name[4:].isdigit() and p.is_dir()}
        added[name] = sorted(found - set(study.seeds))
    return added


def plan_units(study: StudyConfig, study_dir: Path) -> list[PretrainPlan | CellPlan]:
    """Every unit of work in run order: per seed, per encoder, its pretraining (if enabled) then its
    cell; then the seeds precision targets added, per encoder (``added_seeds``)."""
    units: list[PretrainPlan | CellPlan] = []
    added = added_seeds(study, study_dir)
    grid = [(seed, name) for seed in study.seeds for name in study.encoders]
    extra = [(seed, name) for name, seeds in added.items() for seed in seeds]
    for seed, name in grid + extra:
        units += pair_units(study, study_dir, name, seed)
    return units


def pair_units(study: StudyConfig, study_dir: Path, encoder: str, seed: int) -> list[PretrainPlan | CellPlan]:
    """The units of one (encoder, seed): its pretraining (if enabled), then its cell (if any)."""
    units: list[PretrainPlan | CellPlan] = []
    pretrain = None
    if study.pretrain.enabled:
        pretrain = PretrainPlan(encoder, seed, study_dir / "pretrain" / encoder / f"seed{seed}",
                                study_dir / "weights" / f"{encoder}-{study.pretrain.tag}-seed{seed}.safetensors",
                                export=study.cells)
        units.append(pretrain)
    if study.cells:
        units.append(CellPlan(encoder, seed, study_dir / "cells" / encoder / f"seed{seed}", pretrain))
        if pretrain is not None:
            pretrain.cell_summary = units[-1].run_dir / "metrics.json"
    return units


@dataclass
class Shard:
    """Shard ``index`` of ``count`` processes sharing a study folder. ``assignment`` maps every
    (encoder, seed) to its shard; a pair's pretraining and cell go together, so a cell never waits
    on another shard for its encoder. The default, 0/1, is the whole plan."""

    index: int = 0
    count: int = 1
    assignment: dict[tuple[str, int], int] = field(default_factory=dict)

    def owns(self, unit: PretrainPlan | CellPlan) -> bool:
        return self.count == 1 or self.assignment.get((unit.encoder, unit.seed)) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> (i, n) with 0 <= i < n; a ValueError that says what is wrong otherwise."""
    index, slash, count = text.partition("/")
    if not slash or not index.strip().isdigit() or not count.strip().isdigit():
        raise ConfigError(f"--shard {text!r}: expected i/n with whole numbers, e.g. 0/4")
    index, count = int(index), int(count)
    if count < 1 or index >= count:
        raise ConfigError(f"--shard {text}: needs n >= 1 and 0 <= i < n (shards are numbered 0..n-1)")
    return index, count


def plan_cells(study: StudyConfig, study_dir: Path) -> list[CellPlan]:
    return [unit for unit in plan_units(study, study_dir) if isinstance(unit, CellPlan)]


def plan_pretraining(study: StudyConfig, study_dir: Path) -> list[PretrainPlan]:
    return [unit for unit in plan_units(study, study_dir) if isinstance(unit, PretrainPlan)]


def find_config(path: str | None, study_file: Path) -> str | None:
    """``path`` as given where it exists from the current folder (or is absolute); otherwise the
    first of the study file's folder and its parents that holds it (a study in configs/study/
    names configs/seg/... from the repository root): a study runs from any folder."""
    if not path or Path(path).is_absolute() or Path(path).exists():
        return path
    for folder in [study_file.resolve().parent, *study_file.resolve().parents]:
        if (folder / path).exists():
            return str(folder / path)
    return path  # reported as missing where it is read


def resolve_config_paths(study: StudyConfig, study_file: Path) -> StudyConfig:
    """``study`` with ``seg_config`` and ``pretrain.config`` found from ``study_file`` (``find_config``)."""
    study.seg_config = find_config(study.seg_config, study_file)
    study.pretrain.config = find_config(study.pretrain.config, study_file)
    return study


def cell_weights(study: StudyConfig, cell: CellPlan) -> str | None:
    """The encoder weights a cell starts from: its pretraining's export, else the study's ``weights``."""
    return str(cell.pretrain.weights) if cell.pretrain else study.weights.get(cell.encoder, study.weights.get("default"))


def fresh_seg_config(study: StudyConfig, cell: CellPlan, weights: str | None) -> SegConfig:
    """The config the study gives ``cell`` (what a new cell starts with)."""
    model = {"encoder": cell.encoder, "encoder_weights": weights, "weights_dir": study.weights_dir}
    return load_config(SegConfig, [study.seg_config],
                       [{"model": model, "train": {"seed": cell.seed}, "output": str(cell.run_dir)}], study.seg_sets)


def seg_config_for(study: StudyConfig, cell: CellPlan, weights: str | None) -> SegConfig:
    if cell.started:  # a resumed cell keeps the config it started with
        return load_config(SegConfig, [cell.run_dir / "config.yaml"])
    return fresh_seg_config(study, cell, weights)


def fresh_cls_config(study: StudyConfig, unit: PretrainPlan) -> ClsConfig:
    """The config the study gives a pretraining unit."""
    overrides = {"model": {"name": timm_name_of(unit.encoder)}, "train": {"seed": unit.seed},
                 "output": str(unit.run_dir)}
    return load_config(ClsConfig, [study.pretrain.config], [overrides], study.pretrain.sets)


def cls_config_for(study: StudyConfig, unit: PretrainPlan) -> ClsConfig:
    if unit.started:
        return load_config(ClsConfig, [unit.run_dir / "config.yaml"])
    return fresh_cls_config(study, unit)


# ------------------------------------------------------------------------------ grid checks

# A unit's saved config may differ from what the study gives it now only where a resume may
# (repeatseg.config.FREE_ON_RESUME: data root, device, workers, logging, ...), but not in its
# schedule's length: every unit of a study trains as long as the recipe says. Keys its run filled
# in from the data (the class list) count as equal when the study leaves them unset.
FREE_IN_A_STUDY = FREE_ON_RESUME - {"schedule.epochs", "schedule.iters"}
FILLED_BY_THE_RUN = {"model.classes", "data.classes", "model.num_classes"}
# What a study folder holds (a folder of only these, e.g. units hard-linked from another study, is one).
STUDY_ENTRIES = {"study.yaml", "pretrain", "weights", "cells", "timing.jsonl", "report.md", "results.csv",
                 "results.json", "figures", ".report", "predictions.png", MARKER, OWNER_FILE}


def check_study_folder(study_dir: Path) -> None:
    """Refuse a study folder that holds other files (a study never writes among a user's files)."""
    dataset = enclosing_dataset(study_dir)
    if dataset is not None:
        raise OutputExistsError(f"{study_dir} is inside the dataset {dataset}: choose an --output outside it")
    if not study_dir.exists():
        return
    if not study_dir.is_dir():
        raise OutputExistsError(f"{study_dir} is a file, not a study folder")
    if is_study_folder(study_dir):
        return
    foreign = sorted(p.name for p in study_dir.iterdir()  # another shard's temporaries may be there
                     if p.name not in STUDY_ENTRIES and not (p.name.startswith(".") and p.name.endswith(TEMP_SUFFIX)))
    if foreign:
        raise OutputExistsError(f"{study_dir} is not empty and not a study folder (it holds {', '.join(foreign[:5])}): "
                              "choose another --output")


def _same_weights(old: str, new: str, own_export: bool) -> bool:
    """The same encoder weights: the same file named from another folder, or (``own_export``: a
    cell of this study's own pretraining) the same export ``weights/<encoder>-<tag>-seed<k>`` of a
    study folder that was moved, renamed, or run from another directory since the cell ran."""
    if Path(old).resolve() == Path(new).resolve():
        return True
    return own_export and Path(old).parts[-2:] == Path(new).parts[-2:] and Path(new).parent.name == "weights"


def _unit_differences(saved, fresh, own_export: bool = False) -> list[tuple[str, object, object]]:
    changed = []
    for key, old, new in config_differences(saved, fresh, FREE_IN_A_STUDY):
        if key in FILLED_BY_THE_RUN and new is None:
            continue
        if key == "model.encoder_weights" and old and new and _same_weights(old, new, own_export):
            continue
        changed.append((key, old, new))
    return changed


def check_units_unchanged(study: StudyConfig, study_dir: Path) -> None:
    """Refuse a study whose recipe is not the one its started and finished units ran with (other
    ``seg_sets``, ``pretrain.sets``, weights, or an edited recipe file): their results would be
    reported under a recipe they were not trained with. Names the unit, the key and both values.
    Encoders and seeds may be added or dropped; the data root, device, workers and logging may change."""
    for unit in plan_units(study, study_dir):
        saved_path = unit.run_dir / "config.yaml"
        if not saved_path.is_file():
            continue
        if isinstance(unit, PretrainPlan):
            saved, fresh = load_config(ClsConfig, [saved_path]), fresh_cls_config(study, unit)
        else:
            saved, fresh = load_config(SegConfig, [saved_path]), fresh_seg_config(study, unit, cell_weights(study, unit))
        changed = _unit_differences(saved, fresh, own_export=isinstance(unit, CellPlan) and unit.pretrain is not None)
        if changed:
            listed = "; ".join(f"{key} is {old!r} there, {new!r} now" for key, old, new in changed[:5])
            raise ConfigError(f"{study_dir}: {unit.kind} {unit.encoder} seed {unit.seed} ran with another recipe "
                              f"({saved_path}: {listed}). A study reports every unit under one recipe: use the "
                              "recipe it was started with, or another --output for the new one")


def check_study(study: StudyConfig, study_dir: Path) -> None:
    """Everything a study must pass before it runs or reports: a valid grid (non-empty, no encoder
    or seed twice, names that are plain), a folder that is a study's, units that ran this recipe."""
    from .precision import quantities_of

    validated(study)
    quantities_of(study.targets, study.encoders)
    check_study_folder(study_dir)
    check_units_unchanged(study, study_dir)


def say(dist: DistInfo, text: str) -> None:
    if dist.is_main:
        tqdm.write(text, file=sys.stderr)


def run_pretrain(study: StudyConfig, unit: PretrainPlan, dist: DistInfo) -> None:
    """Train (or resume) the classifier, then export its encoder. The final weights are exported,
    not the best epoch's: choosing an epoch on the held-out split would let it leak into the study."""
    from ..engine.cls import train_classification

    if not (unit.run_dir / "metrics.json").is_file():
        train_classification(cls_config_for(study, unit), unit.run_dir, dist, resume=unit.started)
    if dist.is_main and unit.export:
        remove_stale_temporaries(unit.weights)  # what a kill during an earlier export left
        export_encoder(unit.run_dir, unit.weights, which="last")
    barrier()


def run_cell(study: StudyConfig, cell: CellPlan, dist: DistInfo) -> None:
    from ..engine.seg import train_segmentation

    train_segmentation(seg_config_for(study, cell, cell_weights(study, cell)), cell.run_dir, dist, resume=cell.started)
    barrier()


def log_timing(study_dir: Path, unit, seconds: float, load_before: float, dist: DistInfo,
               shard: Shard | None = None, processes: int = 1) -> None:
    """One line per unit run: how long it took, the 1-minute load average before and after, the
    intra-op threads it ran at and the study processes on its host when it started (of the cores
    it could use), which shard, host and process ran it (several may share the study folder), and
    the kind of CPU and torch version (``repeatseg.threads.cpu_kind``: what bit-for-bit reproduction needs)."""
    if dist.is_main:
        record = {"kind": unit.kind, "encoder": unit.encoder, "seed": unit.seed, "seconds": round(seconds, 2),
                  "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2),
                  "cpus": os.cpu_count(), "usable_cores": usable_cores(), "threads": torch.get_num_threads(),
                  "study_processes_on_host": processes, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                  "shard": str(shard or Shard()), "host": socket.gethostname(), "pid": os.getpid(), **cpu_kind(),
                  "torch": torch.__version__}
        with open(study_dir / "timing.jsonl", "a") as out:
            out.write(json.dumps(record) + "\n")


POLL_S = 30.0  # how often a process waiting for units other processes hold looks again
WAIT_S = 6 * 3600.0  # how long it waits, without progress, before leaving them to a later run
RUN, DONE, WAIT = 0, -1, -2  # what rank 0 tells the other ranks (RUN: a unit's index, >= 0)


def run_study(study: StudyConfig, study_dir: Path, dist: DistInfo, shard: Shard | None = None,
              wait_s: float = WAIT_S, poll_s: float = POLL_S) -> list[PretrainPlan | CellPlan]:
    """Run every unfinished unit of ``shard``'s part of the plan (all of it by default), each
    under a claim on its run folder; returns the whole plan. Units other live processes hold are
    waited for, not run twice (see ``UnitQueue``). Encoders pretrained with different recipes stop
    it first (``repeatseg.study.recipes``), unless ``study.allow_mixed_recipes``; so do units recorded
    on another kind of CPU (``repeatseg.study.machines``), unless ``study.allow_mixed_machines``."""
    from . import adaptive  # noqa: F401  (loaded now: a long study's later phase never imports edited code)
    from .machines import check_machine
    from .recipes import check_recipes, describe  # they read this module's plan

    shard = shard or Shard()
    if study.pretrain.enabled and not study.pretrain.config:
        raise ConfigError("pretrain.enabled needs pretrain.config (a configs/cls/*.yaml recipe)")
    if not study.cells and not study.pretrain.enabled:
        raise ConfigError("cells: false (a classification study) needs pretrain.enabled and pretrain.config: "
                          "its classification runs are the study")
    planned = planned_threads(study, study_dir)  # part of the recipe: every unit runs at one count
    check_study(at_threads(study, planned), study_dir)  # before anything is written
    check_machine(study, study_dir)  # its units ran on this kind of CPU, or allowed
    recipes = check_recipes(at_threads(study, planned), study_dir)  # one pretraining recipe, or allowed
    if len(recipes) > 1:
        say(dist, "mixed pretraining recipes (allow_mixed_recipes: true):\n  " + "\n  ".join(describe(recipes)))
    study_dir.mkdir(parents=True, exist_ok=True)
    if dist.is_main and marker_kind(study_dir) is None:
        write_marker(study_dir, "study")
    registration = register(study_dir)
    settle_s = SETTLE_S if shard.count > 1 else 0.0  # shards started together count each other
    threads = _from_main(fix_threads(study, study_dir, registration, settle_s) if dist.is_main else 0, dist)
    study = at_threads(study, threads)  # fix_threads recorded it in study.yaml
    if threads != planned:
        check_study(study, study_dir)
        check_recipes(study, study_dir)
    torch.set_num_threads(threads)
    say(dist, f"{threads} intra-op thread(s) for every unit (train.threads, recorded in {study_dir / 'study.yaml'})")
    units = plan_units(study, study_dir)
    mine = [unit for unit in units if shard.owns(unit)]
    label = f"shard {shard}: " if shard.count > 1 else ""
    queue = UnitQueue(mine, dist, wait_s, poll_s, label)
    durations: dict[str, list[float]] = {"pretrain": [], "cell": []}
    while (unit := queue.next()) is not None:
        try:
            left = [u for u in mine if not u.finished]
            say(dist, f"{label}[{mine.index(unit) + 1}/{len(mine)}] {unit.kind} {unit.encoder} seed {unit.seed}: "
                      f"{'resuming' if unit.started else 'starting'} | done {len(mine) - len(left)}, "
                      f"left {len(left)}, ETA {_eta(left, durations)}")
            run_unit(study, study_dir, unit, dist, shard, registration, threads, label, durations)
        finally:
            queue.release()
    left = [u for u in mine if not u.finished]
    say(dist, f"{label}all {len(mine)} units finished" if not left else
        f"{label}{len(mine) - len(left)} of {len(mine)} units finished; {len(left)} left to a later run")
    if study.targets:
        run_targets(study, study_dir, dist, shard, registration, threads, label, durations, poll_s)
        units = plan_units(study, study_dir)
    return units


def run_unit(study: StudyConfig, study_dir: Path, unit, dist: DistInfo, shard: Shard, registration, threads: int,
             label: str, durations: dict[str, list[float]]) -> None:
    """Run one unit (said if the host is crowded), then log its wall time and load (``log_timing``)."""
    processes = registration.say_if_crowded(threads, lambda text: say(dist, f"{label}{text}"))
    start, load_before = time.perf_counter(), os.getloadavg()[0]
    (run_pretrain if isinstance(unit, PretrainPlan) else run_cell)(study, unit, dist)
    seconds = time.perf_counter() - start
    durations[unit.kind].append(seconds)
    log_timing(study_dir, unit, seconds, load_before, dist, shard, processes)


def run_targets(study: StudyConfig, study_dir: Path, dist: DistInfo, shard: Shard, registration, threads: int,
                label: str, durations: dict[str, list[float]], poll_s: float) -> None:
    """The adaptive phase (``repeatseg.study.adaptive``): pairs of added seeds until the targets
    are met, ``max_seeds`` reached or the budget spent; rank 0 chooses, the other ranks follow."""
    from . import adaptive

    names = list(study.encoders)
    while True:
        choice = adaptive.choose(study, study_dir) if dist.is_main else None
        action = _from_main({"run": RUN, "wait": WAIT, "stop": DONE}[choice.action] if dist.is_main else 0, dist)
        if action == DONE:
            say(dist, f"{label}precision targets: {choice.why if choice else 'done'}\n  "
                      + "\n  ".join(adaptive.target_lines(study, study_dir)))
            return
        if action == WAIT:
            time.sleep(poll_s)
            continue
        encoder = names[_from_main(names.index(choice.pair.encoder) if dist.is_main else 0, dist)]
        seed = _from_main(choice.pair.seed if dist.is_main else 0, dist)
        pair = choice.pair if dist.is_main else adaptive.new_pair(study, study_dir, encoder, set(range(seed)))
        try:
            say(dist, f"{label}precision targets: {encoder} seed {seed} ({choice.why if choice else ''})")
            for unit in pair.units:
                if unit.finished:
                    continue
                run_unit(study, study_dir, unit, dist, shard, registration, threads, label, durations)
        finally:
            if choice is not None:
                choice.claim.close()


class UnitQueue:
    """Hands out this process's units one at a time, each claimed (on rank 0) for its run.

    Rank 0 walks the units in plan order and claims the first unfinished one no live process
    holds; the other ranks of a torchrun group follow its choice. Units another process holds,
    and cells whose pretraining is not exported yet, are passed over; when nothing else is left
    the queue waits for them, looking every ``poll_s`` seconds: each either finishes, or its
    holder dies and its claim is free (at once where locks work; after the heartbeat window on
    file systems whose locks are local to each host, see ``repeatseg.files``) and this process
    takes it over. After ``wait_s`` seconds without progress it leaves them to a later run.
    """

    def __init__(self, units: list, dist: DistInfo, wait_s: float, poll_s: float, label: str = ""):
        self.units, self.dist, self.wait_s, self.poll_s, self.label = units, dist, wait_s, poll_s, label
        self.claim = ExitStack()
        self.said_held: set[int] = set()  # units reported as held elsewhere (said once)
        self.given_up: set[int] = set()
        self.waiting_since: float | None = None

    def next(self) -> PretrainPlan | CellPlan | None:
        while True:
            choice = _from_main(self._choose() if self.dist.is_main else RUN, self.dist)
            if choice == WAIT:
                time.sleep(self.poll_s)
                continue
            return None if choice == DONE else self.units[choice]

    def release(self) -> None:
        self.claim.close()

    def _choose(self) -> int:
        """Rank 0: the index of a unit now claimed for this process, WAIT or DONE."""
        pending = []  # (index, why it cannot run now)
        for index, unit in enumerate(self.units):
            if index in self.given_up or unit.finished:
                continue
            if isinstance(unit, CellPlan) and unit.pretrain is not None and not unit.pretrain.finished:
                pending.append((index, "needs its pretraining"))  # its encoder is not exported yet
            elif self._claim(index, unit):
                self.waiting_since = None
                return index
            else:
                pending.append((index, "run by another process"))
        if not pending:
            return DONE
        names = ", ".join(f"{self.units[i].kind} {self.units[i].encoder} seed {self.units[i].seed} ({why})"
                          for i, why in pending)
        if self.waiting_since is None:
            self.waiting_since = time.monotonic()
            say(self.dist, f"{self.label}waiting for {names}; looking every {self.poll_s:g} s for up to "
                           f"{self.wait_s / 60:g} min")
        elif time.monotonic() - self.waiting_since > self.wait_s:
            say(self.dist, f"{self.label}gave up waiting after {self.wait_s / 60:g} min for {names}: left to a later run")
            self.given_up.update(i for i, _ in pending)
            return DONE
        return WAIT

    def _claim(self, index: int, unit) -> bool:
        """Claim ``unit``'s run folder for this process; False if a live process holds it or it
        finished meanwhile. The claim is held until ``release``."""
        stack = ExitStack()
        try:
            stack.enter_context(claim_run_folder(unit.run_dir))
        except FolderClaimedError as error:
            if index not in self.said_held:
                self.said_held.add(index)
                say(self.dist, f"{self.label}{unit.kind} {unit.encoder} seed {unit.seed}: held elsewhere ({error})")
            return False
        if unit.finished:  # finished by another process between the check and the claim
            stack.close()
            return False
        self.claim = stack
        return True


def _from_main(value: int, dist: DistInfo) -> int:
    """Rank 0's ``value`` on every rank of a torchrun group (the value itself without one)."""
    if not torch.distributed.is_initialized():
        return value
    tensor = torch.tensor([value if dist.is_main else 0], dtype=torch.int64, device=dist.device)
    torch.distributed.broadcast(tensor, src=0)
    return int(tensor.item())


def study_complete(study: StudyConfig, study_dir: Path) -> bool:
    """Whether every unit of the whole plan (all shards) has finished."""
    return all(unit.finished for unit in plan_units(study, study_dir))


def _eta(left: list, durations: dict[str, list[float]]) -> str:
    """Remaining time from the mean duration of each kind so far (the other kind's if none yet)."""
    seen = [d for values in durations.values() for d in values]
    if not seen:
        return "after the first unit"
    fallback = sum(seen) / len(seen)
    mean = {kind: sum(v) / len(v) if v else fallback for kind, v in durations.items()}
    return _clock(sum(mean[unit.kind] for unit in left))


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"
