"""Seeds where the uncertainty is: after its grid, a study with ``targets`` adds seeds one
(encoder, seed) pair at a time until every target's standard error is met, an encoder has
``max_seeds`` or the study has spent ``budget_unit_hours`` (the statistics and why precision
stopping does not bias the estimates: ``repeatseg.study.precision``).

An added pair is the next unused seed of the chosen encoder: its pretraining (when the study
pretrains) and its cell, both run folders claimed before either starts, so the folders on disk
say which seeds exist and who runs them. Processes sharing the study cooperate through that
alone: a pair another live process holds counts as pending (as if finished with the same
spread, ``precision.next_encoder``), a pair nobody holds is unfinished work that the first
process to look takes over and resumes, and two processes choosing the same new pair find one
claim refused and choose again.

The budget counts the wall seconds in ``timing.jsonl`` (every unit any process ran, grid
included), so a unit already running when the budget runs out still finishes.
"""

from __future__ import annotations

import statistics
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from ..config import StudyConfig
from ..files import FolderClaimedError, claim_run_folder
from .aggregate import read_summary, timing_records
from .precision import Quantity, Summary, next_encoder, quantities_of, shortfall
from .runner import pair_units, plan_units


@dataclass
class Pair:
    """One (encoder, seed) of the study: its pretraining and/or cell units, in run order."""

    encoder: str
    seed: int
    units: list

    @property
    def finished(self) -> bool:
        return all(unit.finished for unit in self.units)


def pairs_of(study: StudyConfig, study_dir: Path) -> list[Pair]:
    """Every (encoder, seed) of the plan (grid and added seeds), in plan order."""
    pairs: dict[tuple[str, int], Pair] = {}
    for unit in plan_units(study, study_dir):
        pairs.setdefault((unit.encoder, unit.seed), Pair(unit.encoder, unit.seed, [])).units.append(unit)
    return list(pairs.values())


def metric_of(study: StudyConfig) -> str:
    """What the targets are measured on: the cells' mIoU, or the classifiers' top-1 without cells."""
    return "miou" if study.cells else "top1"


def results(study: StudyConfig, study_dir: Path) -> dict[str, dict[int, float]]:
    """encoder -> seed -> the finished pair's metric (``metric_of``)."""
    metric, found = metric_of(study), {name: {} for name in study.encoders}
    for pair in pairs_of(study, study_dir):
        unit = pair.units[-1]  # the cell, or the classification run of a study without cells
        if (unit.run_dir / "metrics.json").is_file() and pair.encoder in found:  # (a published study has no weights)
            found[pair.encoder][pair.seed] = read_summary(unit.run_dir / "metrics.json", (metric,))[metric]
    return found


def spent_unit_hours(study_dir: Path) -> float:
    return sum(record["seconds"] for record in timing_records(study_dir)) / 3600


def pair_hours(study_dir: Path) -> dict[str, float]:
    """encoder -> mean unit-hours of one of its pairs so far (its kinds' mean durations, summed)."""
    by_kind: dict[tuple[str, str], list[float]] = {}
    for record in timing_records(study_dir):
        by_kind.setdefault((record["encoder"], record["kind"]), []).append(record["seconds"] / 3600)
    hours: dict[str, float] = {}
    for (encoder, _), values in by_kind.items():
        hours[encoder] = hours.get(encoder, 0.0) + statistics.fmean(values)
    return hours


@dataclass
class Progress:
    """Where the targets stand: each quantity's SE / goal (<= 1: met), the hours spent."""

    shortfalls: list[tuple[Quantity, float]]
    spent_hours: float

    @property
    def met(self) -> bool:
        return all(short <= 1 for _, short in self.shortfalls)


def progress(study: StudyConfig, study_dir: Path, found: dict[str, dict[int, float]] | None = None) -> Progress:
    """``found``: ``results(study, study_dir)`` when the caller has read it already."""
    quantities = quantities_of(study.targets, study.encoders)
    found = results(study, study_dir) if found is None else found
    summaries = {name: Summary.of(list(values.values())) for name, values in found.items()}
    return Progress([(q, shortfall(q, summaries)) for q in quantities], spent_unit_hours(study_dir))


@dataclass
class Choice:
    """What the next step of the adaptive phase is: run ``pair`` (claimed in ``claim``), wait, or stop."""

    action: str  # "run", "wait" or "stop"
    pair: Pair | None = None
    claim: ExitStack | None = None
    why: str = ""


def claim_pair(pair: Pair) -> ExitStack | None:
    """Claim every run folder of ``pair`` for this process (None if a live process holds one)."""
    stack = ExitStack()
    try:
        for unit in pair.units:
            stack.enter_context(claim_run_folder(unit.run_dir))
    except FolderClaimedError:
        stack.close()
        return None
    return stack


def new_pair(study: StudyConfig, study_dir: Path, encoder: str, taken: set[int]) -> Pair:
    """The units of ``encoder`` at its lowest seed not yet used (by the grid or an added pair)."""
    seed = next(k for k in range(len(taken) + 1) if k not in taken)
    return Pair(encoder, seed, pair_units(study, study_dir, encoder, seed))


def choose(study: StudyConfig, study_dir: Path) -> Choice:
    """The adaptive phase's next step for this process (rank 0): take over an unfinished pair
    nobody holds, else stop when every target is met or the budget is spent, else claim a new
    seed of the encoder ``next_encoder`` names, else wait for pairs other processes run."""
    pending: dict[str, int] = {}
    for pair in pairs_of(study, study_dir):
        if pair.finished:
            continue
        claim = claim_pair(pair)
        if claim is not None:
            if pair.finished:  # finished meanwhile by its holder
                claim.close()
                continue
            return Choice("run", pair, claim, "unfinished and not held: taken over")
        pending[pair.encoder] = pending.get(pair.encoder, 0) + 1
    found = results(study, study_dir)
    state = progress(study, study_dir, found)
    if state.met:
        return Choice("stop", why="every target is met")
    if study.budget_unit_hours is not None and state.spent_hours >= study.budget_unit_hours:
        return Choice("stop", why=f"the budget of {study.budget_unit_hours:g} unit-hours is spent "
                                  f"({state.spent_hours:.2f} h)")
    summaries = {name: Summary.of(list(values.values())) for name, values in found.items()}
    hours = pair_hours(study_dir)
    typical = statistics.fmean(hours.values()) if hours else 1.0
    quantities = [q for q, _ in state.shortfalls]
    while True:
        name = next_encoder(quantities, summaries, pending=pending, cost=lambda n: hours.get(n, typical),
                            max_seeds=study.max_seeds)
        if name is None:
            break
        taken = {pair.seed for pair in pairs_of(study, study_dir) if pair.encoder == name}
        pair = new_pair(study, study_dir, name, taken)
        claim = claim_pair(pair)
        if claim is not None:
            return Choice("run", pair, claim, "added where it shrinks the largest remaining SE most")
        pending[name] = pending.get(name, 0) + 1  # another process took that seed just now
    if pending:
        return Choice("wait", why="waiting for pairs other processes run")
    return Choice("stop", why=f"no encoder of an unmet target may get another seed (max_seeds {study.max_seeds})")


def target_lines(study: StudyConfig, study_dir: Path) -> list[str]:
    """Plain-text state of every target, for the log and the report."""
    state = progress(study, study_dir)
    return [f"{q.label}: SE {'met' if short <= 1 else 'not met'} ({short:.2f} x its goal)"
            for q, short in state.shortfalls]
