"""The report's uncertainty and validity sections: 95 % intervals, precision targets, and whether
every sharing scheme's learnable part trained, with what each unit cost.

Intervals: Student t (Welch) for a mean or a gap, ``scipy.stats.bootstrap`` over seeds for a
relative contribution (a ratio of differences: its sampling distribution is skewed at these n).
Diagnostics come from each run's ``metrics.json`` (``sharing``: ``repeatseg.layers.sharing_diagnostics``
of the final weights), after pretraining and after fine-tuning.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from ..config import StudyConfig
from ..variants import get_variant
from .aggregate import timing_records
from .precision import Quantity, Summary, goal_se, interval, quantities_of, value_and_se


def _points(value: float | None, digits: int = 1) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{100 * value:.{digits}f}"


def quantity_row(quantity: Quantity, samples: dict[str, list[float]]) -> dict:
    """Estimate, SE, 95 % interval and the n behind each encoder of one quantity (fractions)."""
    summaries = {name: Summary.of(samples.get(name, [])) for name in quantity.encoders}
    value, se = value_and_se(quantity, summaries)
    ci = interval(quantity, samples)
    goal = goal_se(quantity, value)
    row = {"quantity": quantity.label, "kind": quantity.kind, "encoders": list(quantity.encoders),
            "value": value, "se": se if math.isfinite(se) else math.nan, "ci_low": ci.low, "ci_high": ci.high,
            "ci_method": ci.method, "n": [summaries[name].n for name in quantity.encoders],
            "goal_se": goal if math.isfinite(goal) else None,
            "met": bool(math.isfinite(se) and se <= goal) if (quantity.se_goal or quantity.z_goal) else None}
    return {key: None if isinstance(v, float) and not math.isfinite(v) else v for key, v in row.items()}


def default_quantities(encoders: list[str]) -> list[Quantity]:
    """Without targets: every sharing encoder's relative contribution and every width effect the grid has."""
    quantities = []
    for name in encoders:
        variant = get_variant(name)
        if variant.contrast is not None and all(v.name in encoders for v in variant.contrast):
            quantities.append(Quantity("rel_contribution", (name, *(v.name for v in variant.contrast))))
        narrow = variant.widened_from
        if narrow is not None and narrow.name in encoders:
            quantities.append(Quantity("gap", (name, narrow.name)))
    return quantities


def interval_lines(study: StudyConfig, samples: dict[str, list[float]], metric: str) -> tuple[list[str], list[dict]]:
    """The report's "Uncertainty" section and its rows (for results.json)."""
    targets = quantities_of(study.targets, study.encoders)
    wanted = targets + [q for q in default_quantities(study.encoders) if q not in targets
                        and all(q.encoders != t.encoders or q.kind != t.kind for t in targets)]
    rows = [quantity_row(q, samples) for q in wanted]
    if not rows:
        return [], []
    lines = ["## Uncertainty and precision targets", "",
             f"On {metric}, in points: the estimate, its standard error (delta method for a ratio), a 95 % "
             "confidence interval (Student t with Welch's degrees of freedom for a gap or a mean; bootstrap over "
             "seeds, `scipy.stats.bootstrap`, for a relative contribution) and the runs behind each encoder. "
             "Targets (`targets` in the study config) say whether their SE goal is met. The runner stops adding "
             "seeds on these standard errors, never on the estimates, so the means stay unbiased "
             "(`repeatseg.study.precision`).", "",
             "| quantity | estimate | SE | 95 % CI | method | n | target SE | met |", "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        ci = "-" if row["ci_low"] is None else f"[{_points(row['ci_low'])}, {_points(row['ci_high'])}]"
        met = "-" if row["met"] is None else ("yes" if row["met"] else "**no**")
        lines.append(f"| {row['quantity']} | {_points(row['value'])} | {_points(row['se'], 2)} | {ci} "
                     f"| {row['ci_method']} | {', '.join(map(str, row['n']))} | {_points(row['goal_se'], 2)} | {met} |")
    if study.targets:
        lines += ["", f"Seeds added up to `max_seeds` = {study.max_seeds} per encoder"
                  + (f" within {study.budget_unit_hours:g} unit-hours" if study.budget_unit_hours is not None else "")
                  + "."]
    return [*lines, ""], rows


def _sharing(run_dir: Path) -> dict:
    path = run_dir / "metrics.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text()).get("sharing") or {}
    except ValueError:
        return {}


def _mean_of(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def diagnostics(study: StudyConfig, study_dir: Path, units: list) -> dict[str, dict]:
    """encoder -> {moved after pretraining / fine-tuning (share, mean over runs), spreads, seconds, load}."""
    records = timing_records(study_dir)
    found: dict[str, dict] = {}
    for name in study.encoders:
        entry: dict = {}
        for kind, label in (("pretrain", "pretraining"), ("cell", "fine-tuning")):
            runs = [_sharing(u.run_dir) for u in units if u.encoder == name and u.kind == kind]
            moved = [r["moved"]["mean"] for r in runs if "moved" in r]
            if moved:
                entry[f"moved_after_{label}"] = _mean_of(moved)
            for key in ("b1", "b2", "scale"):
                spread = [r[key]["std"] for r in runs if key in r]
                if spread:
                    entry[f"{key}_std_after_{label}"] = _mean_of(spread)
            times = [r for r in records if r["encoder"] == name and r["kind"] == kind]
            if times:
                entry[f"{kind}_seconds"] = _mean_of([r["seconds"] for r in times])
                entry[f"{kind}_load"] = statistics.median(r["load_before"] for r in times)
                entry[f"{kind}_units"] = len(times)
        found[name] = entry
    return found


def diagnostics_lines(study: StudyConfig, study_dir: Path, units: list) -> tuple[list[str], dict]:
    found = diagnostics(study, study_dir, units)
    if not any(found.values()):
        return [], found
    lines = ["## Validity diagnostics", "",
             "Moved: the share of a sharing scheme's learnable values that left their initial transform "
             "(f and c: signs that differ from pure tiling; s: (b1, b2) pairs; r: per-tile scales), mean over runs, "
             "after pretraining and after fine-tuning; spreads: std over tiles of s's b1 and b2 and r's scales "
             "(after fine-tuning). Seconds: mean wall seconds per unit and the median 1-minute load average when "
             "units started (`timing.jsonl`).", "",
             "| encoder | moved after pretraining | moved after fine-tuning | spread | pretrain s (load) "
             "| cell s (load) | note |", "|---|---|---|---|---|---|---|"]
    for name, entry in found.items():
        moved = [entry.get("moved_after_pretraining"), entry.get("moved_after_fine-tuning")]
        spreads = ", ".join(f"{key} {entry[f'{key}_std_after_fine-tuning']:.3g}" for key in ("b1", "b2", "scale")
                            if f"{key}_std_after_fine-tuning" in entry) or "-"
        note = ""
        if any(m is not None for m in moved) and all(m in (None, 0.0) for m in moved):
            note = "**did not move: its learnable part stayed at its initialisation**"
        elif moved[0] == 0.0:
            note = "**did not move in pretraining** (entered fine-tuning as its initial transform)"
        lines.append(f"| {name} | {_share(moved[0])} | {_share(moved[1])} | {spreads} | {_cost(entry, 'pretrain')} "
                     f"| {_cost(entry, 'cell')} | {note} |")
    return [*lines, ""], found


def _cost(entry: dict, kind: str) -> str:
    seconds = entry.get(f"{kind}_seconds")
    return "-" if seconds is None else f"{seconds:.0f} ({entry[f'{kind}_load']:.1f})"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f} %"
