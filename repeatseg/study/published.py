"""The numbers the README and the docs quote from a published study, recomputed from its raw runs.

A published study (``results/<study>/``) holds every unit's ``metrics.json``. ``quoted_tables``
computes the quoted tables from those files alone (not from the study's own ``results.csv``), and
``tools/quote_results.py`` writes them between the markers

    <!-- results/digits: begin (tools/quote_results.py) -->
    ...
    <!-- results/digits: end -->

in a Markdown file; a test recomputes them and fails when a file quotes other numbers.
"""

from __future__ import annotations

import itertools
import math
import re
import statistics
from pathlib import Path

from ..config import StudyConfig, load_config
from .adaptive import metric_of, progress, results
from .aggregate import read_top1, timing_records
from .runner import plan_pretraining, plan_units
from .validity import diagnostics, interval_lines


def _points(value: float | None, digits: int = 1) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{100 * value:.{digits}f}"


def _mean_sd(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return _points(values[0])
    return f"{_points(statistics.fmean(values))} ± {_points(statistics.stdev(values))}"


def quoted_tables(study_dir: str | Path) -> str:
    """Per-encoder results, the quantities with 95 % intervals, the validity diagnostics and the wall
    time of the study in ``study_dir``, as Markdown (deterministic: the bootstrap is seeded)."""
    study_dir = Path(study_dir)
    study = load_config(StudyConfig, [study_dir / "study.yaml"])
    if not study.cells:
        return classification_tables(study, study_dir)
    found = results(study, study_dir)
    top1: dict[str, list[float]] = {}
    for unit in plan_pretraining(study, study_dir):
        if (value := read_top1(unit.run_dir)) is not None:
            top1.setdefault(unit.encoder, []).append(value)
    checks = diagnostics(study, study_dir, plan_units(study, study_dir))
    metric = metric_of(study)
    lines = [f"| encoder | n | {'mIoU' if metric == 'miou' else 'top-1'} (mean ± sd, %) | pretrained top-1 (%) "
             "| signs/values moved: pretraining | fine-tuning |", "|---|---|---|---|---|---|"]
    for name in study.encoders:
        values = list(found[name].values())
        moved = [checks[name].get("moved_after_pretraining"), checks[name].get("moved_after_fine-tuning")]
        lines.append(f"| {name} | {len(values)} | {_mean_sd(values)} | {_mean_sd(top1.get(name, []))} "
                     f"| {_share(moved[0])} | {_share(moved[1])} |")
    samples = {name: list(values.values()) for name, values in found.items()}
    uncertainty, _ = interval_lines(study, samples, "mIoU" if metric == "miou" else "top-1")
    table = [line for line in uncertainty if line.startswith("|")]
    pairs = [line for line in comparison_lines(study, samples) if line.startswith("|")]
    state = progress(study, study_dir)
    met = sum(short <= 1 for _, short in state.shortfalls)
    summary = cost_line(study, study_dir)
    if summary:
        summary += f"; {met} of {len(state.shortfalls)} precision targets met." if state.shortfalls else "."
    return "\n".join([*lines, "", *table, "", *pairs, "", summary or "no units run yet."])


def classification_tables(study: StudyConfig, study_dir: Path) -> str:
    """A classification study's (``cells: false``) Table-4 rows and gaps, as its report gives them."""
    from .classification_report import gap_lines, protocol_lines, study_rows, table_lines

    runs, rows, _ = study_rows(study, study_dir)
    gaps = [line for line in gap_lines(runs, rows) if line.startswith("|")]
    protocols = [line for line in protocol_lines(runs, rows) if line.startswith("|")]
    return "\n".join([*table_lines(rows), "", *gaps, *(["", *protocols] if protocols else []), "",
                      (cost_line(study, study_dir) or "no units run yet") + "."])


def cost_line(study: StudyConfig, study_dir: Path) -> str:
    """How many units ran, their unit-hours and the median load they started at ('' before any)."""
    records = timing_records(study_dir)
    if not records:
        return ""
    hours = sum(r["seconds"] for r in records) / 3600
    loads = sorted(r["load_before"] for r in records)
    budget = f" (of a budget of {study.budget_unit_hours:g})" if study.budget_unit_hours else ""
    return (f"{len(records)} units, {hours:.2f} unit-hours{budget}, "
            f"median 1-minute load {loads[len(loads) // 2]:.1f} when units started")


def comparison_lines(study: StudyConfig, samples: dict[str, list[float]]) -> list[str]:
    """Every pair of sharing encoders of one width: their metric's gap with a 95 % t interval
    (Welch), e.g. f4 - r4 (what f's learned bits buy over random signs) and s4 - f4."""
    from ..variants import get_variant
    from .precision import Quantity, Summary, t_interval, value_and_se

    shared = [name for name in study.encoders if get_variant(name).contrast is not None]
    lines = ["| comparison | gap (points) | SE | 95 % CI | n |", "|---|---|---|---|---|"]
    for first, second in itertools.combinations(shared, 2):
        if get_variant(first).width != get_variant(second).width:
            continue
        quantity = Quantity("gap", (first, second))
        summaries = {name: Summary.of(samples.get(name, [])) for name in quantity.encoders}
        value, se = value_and_se(quantity, summaries)
        ci = t_interval(quantity, summaries)
        interval = "-" if not math.isfinite(ci.low) else f"[{_points(ci.low)}, {_points(ci.high)}]"
        lines.append(f"| {first} - {second} | {_points(value)} | {_points(se, 2)} | {interval} "
                     f"| {summaries[first].n}, {summaries[second].n} |")
    return lines if len(lines) > 2 else []


def _share(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def marker_pattern(name: str) -> re.Pattern:
    """The begin/end markers of study ``name`` (e.g. ``results/digits``) and what lies between."""
    return re.compile(rf"(<!-- {re.escape(name)}: begin[^>]*-->\n)(.*?)\n?(<!-- {re.escape(name)}: end -->)", re.S)


def quoted_in(text: str, name: str) -> list[str]:
    """Every block a Markdown text quotes between study ``name``'s markers."""
    return [match.group(2) for match in marker_pattern(name).finditer(text)]


def requote(text: str, name: str, tables: str) -> str:
    """``text`` with every block between ``name``'s markers replaced by ``tables``."""
    return marker_pattern(name).sub(lambda m: m.group(1) + tables + "\n" + m.group(3), text)
