"""The report of a classification study (``cells: false``), in the form of the paper's Table 4.

Every (model, seed) is one classification run evaluated every epoch on the test split. Per model:

- top-1 of the **last** epoch and of the **best** epoch (the paper does not say which it reports;
  the best epoch is chosen on the test split itself, so it is biased upwards), in %, mean ± its
  standard error over seeds (sample std / sqrt(n));
- the relative contribution (M - lower) / (upper - lower) on the seed means, with the model's
  ``contrast`` (upper, lower): for the rotation family (s-RepeatNet and dense FLOP-matched models)
  (RE-CNN of the same group, vanilla CNN), Table 4's definition. Its SE is propagated to first
  order (delta method, ``aggregate.relative_contribution``); its 95 % confidence interval is
  Fieller's for a ratio of two differences of independent means (Student t with min(n) - 1
  degrees of freedom, conservative), which is unbounded when the denominator (the RE-CNN's gain)
  is not resolved at that level, and then says so;
- for an s-RepeatNet, also the share of the dense FLOP-matched model's gain it keeps,
  (s - vanilla) / (dense - vanilla), when that row is in the study;
- parameters, stored bytes and MACs (``repeatseg.describe``; for rotcnn_* MACs of the folded model),
  and the paper's numbers beside, labelled as the paper's.

Writes ``report.md``, ``results.csv``, ``results.json`` and ``figures/{test_top1_per_epoch,top1_vs_macs}.png``.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from ..extras import require

require("matplotlib", extra="train").use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from scipy import stats as scipy_stats  # noqa: E402

from ..accounting import describe  # noqa: E402
from ..classifiers import get_classifier  # noqa: E402
from ..config import ClsConfig, StudyConfig, load_config  # noqa: E402
from ..files import atomic_write_text, write_json  # noqa: E402
from ..variants import get_variant  # noqa: E402
from .aggregate import gap, paired_gap, relative_contribution  # noqa: E402
from .machines import machine_lines  # noqa: E402
from .report import recipe_lines, timing_lines  # noqa: E402
from .runner import plan_pretraining  # noqa: E402

FIGURES = ("test_top1_per_epoch.png", "top1_vs_macs.png")
CSV_COLUMNS = ["model", "label", "kind", "n", "last_mean", "last_se", "best_mean", "best_se", "best_epoch_mean",
               "rel_contribution_last", "rel_contribution_last_se", "rel_contribution_last_ci_low",
               "rel_contribution_last_ci_high", "rel_contribution_best", "rel_contribution_best_se",
               "rel_contribution_best_ci_low", "rel_contribution_best_ci_high", "share_of_dense_last",
               "share_of_dense_last_se", "share_of_dense_last_ci_low", "share_of_dense_last_ci_high",
               "trainable_params", "packed_bytes", "macs", "paper_top1",
               "paper_rel_contribution"]


@dataclass
class Run:
    """One finished classification run: top-1 (fractions) per evaluated epoch, last and best."""

    model: str
    seed: int
    run_dir: str
    epochs: list[int]
    top1: list[float]
    train_loss: list[float] = field(default_factory=list)

    @property
    def last(self) -> float:
        return self.top1[-1]

    @property
    def best(self) -> float:
        return max(self.top1)

    @property
    def best_epoch(self) -> int:
        return self.epochs[self.top1.index(self.best)]


def read_run(run_dir: Path, model: str, seed: int) -> Run | None:
    """The run's per-epoch test top-1 from ``metrics.jsonl``, if it finished (``metrics.json``)."""
    if not (run_dir / "metrics.json").is_file() or not (run_dir / "metrics.jsonl").is_file():
        return None
    epochs, top1, losses = [], [], []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        if "val" in record:
            epochs.append(int(record["epoch"]))
            top1.append(float(record["val"]["top1"]))
        elif "loss" in record:
            losses.append(float(record["loss"]))
    return Run(model, seed, str(run_dir), epochs, top1, losses) if top1 else None


def _se(values: list[float]) -> float:
    return statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else math.nan


def fieller_interval(mine: list[float], upper: list[float], lower: list[float],
                     level: float = 0.95) -> tuple[float, float] | None:
    """Fieller's ``level`` interval of (mean(mine) - mean(lower)) / (mean(upper) - mean(lower)) for
    independent samples (Student t, min(n) - 1 degrees of freedom); ``(-inf, inf)`` when the
    denominator is not resolved at that level; None with fewer than two values in a sample."""
    if min(len(mine), len(upper), len(lower)) < 2:
        return None
    se_m, se_u, se_l = (_se(v) for v in (mine, upper, lower))
    a = statistics.fmean(mine) - statistics.fmean(lower)
    b = statistics.fmean(upper) - statistics.fmean(lower)
    var_a, var_b, cov = se_m**2 + se_l**2, se_u**2 + se_l**2, se_l**2  # the shared lower mean correlates them
    t = scipy_stats.t.ppf(0.5 + level / 2, min(len(mine), len(upper), len(lower)) - 1)
    # rho is inside when (a - rho b)^2 <= t^2 (var_a - 2 rho cov + rho^2 var_b): q2 rho^2 + q1 rho + q0 <= 0
    q2, q1, q0 = b * b - t * t * var_b, -2 * (a * b - t * t * cov), a * a - t * t * var_a
    if q2 <= 0:
        return (-math.inf, math.inf)
    root = math.sqrt(max(q1 * q1 - 4 * q2 * q0, 0.0))
    return ((-q1 - root) / (2 * q2), (-q1 + root) / (2 * q2))


def welch_interval(mine: list[float], other: list[float], level: float = 0.95) -> tuple[float, float] | None:
    """Welch's ``level`` interval of mean(mine) - mean(other); None with fewer than two values."""
    if min(len(mine), len(other)) < 2:
        return None
    var = [statistics.variance(v) / len(v) for v in (mine, other)]
    total = sum(var)
    if total == 0:
        return (statistics.fmean(mine) - statistics.fmean(other),) * 2
    df = total**2 / sum(v**2 / (len(s) - 1) for v, s in zip(var, (mine, other)))
    half = scipy_stats.t.ppf(0.5 + level / 2, df) * math.sqrt(total)
    difference = statistics.fmean(mine) - statistics.fmean(other)
    return (difference - half, difference + half)


@dataclass
class Row:
    """One model's line of the report (top-1 as fractions)."""

    model: str
    label: str
    kind: str
    n: int
    last_mean: float
    last_se: float
    best_mean: float
    best_se: float
    best_epoch_mean: float
    rel_contribution_last: float | None
    rel_contribution_last_se: float | None
    rel_contribution_last_ci: tuple[float, float] | None
    rel_contribution_best: float | None
    rel_contribution_best_se: float | None
    rel_contribution_best_ci: tuple[float, float] | None
    share_of_dense_last: float | None
    share_of_dense_last_se: float | None
    share_of_dense_last_ci: tuple[float, float] | None
    contrast: tuple[str, str] | None
    trainable_params: int
    packed_bytes: int
    macs: int
    paper_top1: float | None
    paper_rel_contribution: float | None
    colour: str | None = None  # how figures draw it (the variant's ``colour``; matplotlib's cycle without one)
    runs: list[str] = field(default_factory=list)

    def csv_values(self) -> dict:
        values = dataclasses.asdict(self)
        for name in ("rel_contribution_last", "rel_contribution_best", "share_of_dense_last"):
            values[f"{name}_ci_low"], values[f"{name}_ci_high"] = values.pop(f"{name}_ci") or (None, None)
        return values


def _variant(name: str):
    return get_classifier(name) or get_variant(name)


def _contribution(name: str, values: dict[str, list[float]]):
    """(value, SE, 95 % CI) of the relative contribution on ``values`` (model -> per-seed numbers)."""
    contrast = _variant(name).contrast
    if contrast is None or not values.get(name):
        return None, None, None
    upper, lower = (values.get(v.name, []) for v in contrast)
    if not upper or not lower:
        return None, None, None
    value, se = relative_contribution(values[name], upper, lower)
    return value, se, fieller_interval(values[name], upper, lower)


def summarise(runs: list[Run], models: list[str], input_size: int) -> list[Row]:
    """One Row per configured model, in order (n = 0 for a model without finished runs)."""
    last = {m: [r.last for r in runs if r.model == m] for m in models}
    best = {m: [r.best for r in runs if r.model == m] for m in models}
    rows = []
    for name in models:
        mine = [r for r in runs if r.model == name]
        variant = _variant(name)
        rc_last, rc_last_se, rc_last_ci = _contribution(name, last)
        rc_best, rc_best_se, rc_best_ci = _contribution(name, best)
        dense = getattr(variant, "flop_matched_dense", None)
        wide, base = last.get(dense.name if dense else "", []), last.get(variant.reference.name, [])
        share, share_se = relative_contribution(last[name], wide, base) if wide and base and last[name] else (None, None)
        share_ci = fieller_interval(last[name], wide, base) if share is not None else None
        numbers = describe(name, input_size)
        contrast = None if variant.contrast is None else tuple(v.name for v in variant.contrast)
        rows.append(Row(
            model=name, label=variant.label, kind=getattr(variant, "kind", ""), n=len(mine),
            last_mean=statistics.fmean(last[name]) if mine else math.nan, last_se=_se(last[name]),
            best_mean=statistics.fmean(best[name]) if mine else math.nan, best_se=_se(best[name]),
            best_epoch_mean=statistics.fmean([r.best_epoch for r in mine]) if mine else math.nan,
            rel_contribution_last=rc_last, rel_contribution_last_se=rc_last_se, rel_contribution_last_ci=rc_last_ci,
            rel_contribution_best=rc_best, rel_contribution_best_se=rc_best_se, rel_contribution_best_ci=rc_best_ci,
            share_of_dense_last=share, share_of_dense_last_se=share_se, share_of_dense_last_ci=share_ci, contrast=contrast,
            trainable_params=numbers.trainable_params, packed_bytes=numbers.packed_bytes, macs=numbers.macs,
            paper_top1=getattr(variant, "paper_top1", None),
            paper_rel_contribution=getattr(variant, "paper_rel_contribution", None),
            colour=getattr(variant, "colour", None), runs=[r.run_dir for r in mine]))
    return rows


# ------------------------------------------------------------------------------------ formatting

def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _pct(value, se=None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if se is None or (isinstance(se, float) and math.isnan(se)):
        return f"{100 * value:.{digits}f}"
    return f"{100 * value:.{digits}f} ± {100 * se:.{digits}f}"


def _interval(ci: tuple[float, float] | None) -> str:
    if ci is None:
        return "-"
    if math.isinf(ci[0]) or math.isinf(ci[1]):
        return "unbounded"
    return f"[{100 * ci[0]:.0f}, {100 * ci[1]:.0f}]"


def gap_lines(runs: list[Run], rows: list[Row]) -> list[str]:
    """Each model against its reference (the vanilla CNN for the rotation family), last epoch: the
    gap, its SE and Welch 95 % CI, and the gap paired by seed (within a seed every model sees the
    same data order and augmentations)."""
    last = {r.model: [x.last for x in runs if x.model == r.model] for r in rows}
    by_seed = {r.model: {x.seed: x.last for x in runs if x.model == r.model} for r in rows}
    lines = []
    for row in rows:
        base = _variant(row.model).reference.name
        if base == row.model or not last[row.model] or not last.get(base):
            continue
        value, se = gap(last[row.model], last[base])
        ci = welch_interval(last[row.model], last[base])
        paired, paired_se, pairs = paired_gap(by_seed[row.model], by_seed[base])
        resolved = "-" if ci is None else ("yes" if ci[0] > 0 or ci[1] < 0 else "no")
        ci_text = "-" if ci is None else f"[{100 * ci[0]:+.2f}, {100 * ci[1]:+.2f}]"
        lines.append(f"| {row.model} - {base} | {100 * value:+.2f} | {_pct(se, digits=2)} | {ci_text} | {resolved} "
                     f"| {100 * paired:+.2f} | {_pct(paired_se, digits=2)} | {pairs} |")
    if not lines:
        return []
    return ["## Gains over the reference (last epoch)", "",
            "Difference of seed means in points, its standard error, Welch's 95 % interval and whether it excludes "
            "0; paired: the mean of the per-seed differences and its SE.", "",
            "| comparison | gap | SE | 95 % CI | resolved | paired gap | paired SE | pairs |",
            "|---|---|---|---|---|---|---|---|", *lines, ""]


ALTERNATE_PREFIX = "eval_"  # a run's <prefix><name>/metrics.json: tools/eval_cls.py --which last --output


def alternate_evaluations(runs: list[Run]) -> dict[str, dict[tuple[str, int], float]]:
    """name -> {(model, seed): top-1} of every run's last checkpoint evaluated again under another
    protocol (``tools/eval_cls.py --run RUN --which last --set ... --output RUN/eval_<name>``)."""
    found: dict[str, dict[tuple[str, int], float]] = {}
    for run in runs:
        for path in sorted(Path(run.run_dir).glob(f"{ALTERNATE_PREFIX}*/metrics.json")):
            record = json.loads(path.read_text())
            if record.get("which") != "last":  # the study's numbers are the last epoch's
                continue
            found.setdefault(path.parent.name[len(ALTERNATE_PREFIX):], {})[(run.model, run.seed)] = float(record["top1"])
    return found


def protocol_lines(runs: list[Run], rows: list[Row]) -> list[str]:
    """The same last-epoch models under each alternate protocol: top-1, the paired difference
    (the study's protocol - the alternate; the same model and test digits, so only the protocol
    differs), its SE and paired-t 95 % interval, and the relative contribution under it."""
    lines = []
    for name, values in alternate_evaluations(runs).items():
        per_model = {r.model: [values[(x.model, x.seed)] for x in runs if x.model == r.model and (x.model, x.seed) in values]
                     for r in rows}
        body = []
        for row in rows:
            pairs = [(x.last, values[(x.model, x.seed)]) for x in runs if x.model == row.model and (x.model, x.seed) in values]
            if not pairs:
                continue
            differences = [a - b for a, b in pairs]
            mean, se = statistics.fmean(differences), _se(differences)
            if len(pairs) > 1:
                half = scipy_stats.t.ppf(0.975, len(pairs) - 1) * se
                ci = f"[{100 * (mean - half):+.2f}, {100 * (mean + half):+.2f}]"
            else:
                ci = "-"
            rc, rc_se, rc_ci = _contribution(row.model, per_model)
            study_values = [a for a, _ in pairs]
            body.append(f"| {row.model} | {len(pairs)} | {_pct(statistics.fmean(study_values), _se(study_values), 2)} "
                        f"| {_pct(statistics.fmean(per_model[row.model]), _se(per_model[row.model]), 2)} "
                        f"| {100 * mean:+.2f} | {_pct(se, digits=2)} | {ci} | {_pct(rc, rc_se)} | {_interval(rc_ci)} |")
        lines += [f"## The same models under another test protocol: `{name}`", "",
                  f"Each run's last checkpoint evaluated again (`{ALTERNATE_PREFIX}{name}/metrics.json`, "
                  "tools/eval_cls.py): top-1 in %, mean ± SE; the difference is paired by run (the study's protocol - "
                  f"`{name}`), with its SE and paired-t 95 % interval; rel. contr. as in the table, under `{name}`.", "",
                  f"| model | n | top-1 (study) | top-1 ({name}) | difference | SE | 95 % CI | rel. contr. ({name}) "
                  "| 95 % CI |", "|---|---|---|---|---|---|---|---|---|", *body, ""]
    return lines


def _share_of_dense(row: Row) -> str:
    """The share of the dense control's gain, or "unresolved" when that gain (its denominator) is
    not resolved at 95 % (Fieller's interval unbounded): a ratio to about zero says nothing."""
    ci = row.share_of_dense_last_ci
    if ci is not None and (math.isinf(ci[0]) or math.isinf(ci[1])):
        return "unresolved"
    return _pct(row.share_of_dense_last, row.share_of_dense_last_se)


def table_lines(rows: list[Row]) -> list[str]:
    """Table 4's form: one line per model (the report's table, and what the README quotes)."""
    lines = ["| model | n | top-1 last | top-1 best | rel. contr. (last) | 95 % CI | rel. contr. (best) | 95 % CI "
             "| share of dense | paper top-1 | paper rel. contr. | params | MMACs |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r.model} ({r.label}) | {r.n} | {_pct(r.last_mean, r.last_se, 2)} | {_pct(r.best_mean, r.best_se, 2)} "
            f"| {_pct(r.rel_contribution_last, r.rel_contribution_last_se)} | {_interval(r.rel_contribution_last_ci)} "
            f"| {_pct(r.rel_contribution_best, r.rel_contribution_best_se)} | {_interval(r.rel_contribution_best_ci)} "
            f"| {_share_of_dense(r)} | {_pct(r.paper_top1)} "
            f"| {_pct(r.paper_rel_contribution)} | {r.trainable_params:,} | {r.macs / 1e6:.1f} |")
    return lines


def markdown(rows: list[Row], runs: list[Run], study: StudyConfig, recipe: ClsConfig, study_dir: Path) -> str:
    data = recipe.data
    lines = [
        "# Classification study: how much of a rotation-equivariant CNN's gain is repetition (Table 4)", "",
        *recipe_lines(study, study_dir),
        *machine_lines(study_dir),
        f"Recipe `{study.pretrain.config}` ({data.dataset}, {data.train_split} -> {data.val_split}, "
        f"{recipe.schedule.epochs} epochs, batch {recipe.train.batch_size}, flips h {data.hflip} / v {data.vflip}, "
        f"test digits {'resampled like the training ones' if data.eval_resample else 'only padded'}); "
        f"seeds {study.seeds}. Each seed trains every model from its own initialisation with the same data order "
        "and augmentations; the data set, its split and the angles are fixed.", "",
        "Top-1 in %, mean ± standard error over seeds (n runs), of the last epoch and of the best epoch (chosen on "
        "the test split itself: biased upwards; the paper does not say which it reports). Rel. contribution = "
        "(M - lower) / (upper - lower) on the seed means with (upper, lower) = (RE-CNN of the same group, vanilla "
        "CNN), ± its first-order SE, and Fieller's 95 % interval (unbounded when the RE-CNN's gain is not resolved). "
        "Share of dense: (s-RepeatNet - vanilla) / (dense FLOP-matched - vanilla), \"unresolved\" when the dense "
        "control's own gain is not resolved (Fieller's interval unbounded). MACs per image at "
        f"{data.image_size}x{data.image_size} (of the folded model); parameters as trained. The paper's columns are "
        "its own claims (rot-MNIST, 12,000 training digits, one run each), not reproduced here.", "",
        *table_lines(rows),
    ]
    lines += ["", *gap_lines(runs, rows), *protocol_lines(runs, rows), *timing_lines(study_dir), "## Figures", ""]
    captions = {FIGURES[0]: "Test top-1 after every epoch, mean over seeds (band: ± SE).",
                FIGURES[1]: "Last-epoch top-1 (± SE) against MACs per image; hollow: the paper's Table 4."}
    for name in FIGURES:
        lines += [f"![{captions[name]}](figures/{name})", "", f"*{captions[name]}*", ""]
    lines += ["## Runs", "", "| model | runs |", "|---|---|"]
    lines += [f"| {r.model} | {'<br>'.join(f'`{run}`' for run in r.runs) or '-'} |" for r in rows]
    missing = [r.model for r in rows if r.n < len(study.seeds)]
    if missing:
        lines += ["", f"**Incomplete:** {', '.join(missing)} have fewer finished runs than seeds."]
    return "\n".join(lines) + "\n"


def plot_curves(rows: list[Row], runs: list[Run], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.2))
    styles = iter(["-", "--", ":", "-."] * 4)
    for row in rows:
        mine = [r for r in runs if r.model == row.model]
        if not mine:
            continue
        length = min(len(r.top1) for r in mine)
        epochs = mine[0].epochs[:length]
        per_epoch = [[r.top1[i] for r in mine] for i in range(length)]
        mean = [100 * statistics.fmean(v) for v in per_epoch]
        se = [100 * (_se(v) if len(v) > 1 else 0.0) for v in per_epoch]
        colour = row.colour
        ax.plot(epochs, mean, next(styles), color=colour, label=f"{row.label} (n={len(mine)})")
        ax.fill_between(epochs, [m - s for m, s in zip(mean, se)], [m + s for m, s in zip(mean, se)],
                        color=colour, alpha=0.15)
    _finish(fig, ax, "epoch", path)


def plot_top1_vs_macs(rows: list[Row], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for row in rows:
        colour = row.colour
        if row.n:
            ax.errorbar(row.macs / 1e6, 100 * row.last_mean, yerr=0 if math.isnan(row.last_se) else 100 * row.last_se,
                        fmt="o", color=colour, capsize=3, label=row.label)
        if row.paper_top1 is not None:
            ax.plot(row.macs / 1e6, 100 * row.paper_top1, "o", mfc="none", color=colour)
    ax.set_xscale("log")
    _finish(fig, ax, "MMACs per image (folded model)", path)


def _finish(fig, ax, xlabel: str, path: Path) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test top-1 (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def study_rows(study: StudyConfig, study_dir: Path) -> tuple[list[Run], list[Row], ClsConfig]:
    """Every finished run of the study (from its own files), the rows they give, and the recipe."""
    runs = [run for unit in plan_pretraining(study, study_dir)
            if (run := read_run(unit.run_dir, unit.encoder, unit.seed)) is not None]
    recipe = load_config(ClsConfig, [Path(runs[0].run_dir) / "config.yaml"]) if runs else \
        load_config(ClsConfig, [study.pretrain.config], sets=study.pretrain.sets)
    return runs, summarise(runs, study.encoders, recipe.data.image_size), recipe


def write_classification_report(study: StudyConfig, study_dir: Path) -> list[Row]:
    """Aggregate every finished run of the study and (re)write results, figures and report.md."""
    runs, rows, recipe = study_rows(study, study_dir)
    with open(study_dir / "results.csv", "w", newline="") as out:
        writer = csv.DictWriter(out, CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            values = {key: _clean(value) for key, value in row.csv_values().items()}
            writer.writerow({key: "" if value is None else value for key, value in values.items()})
    write_json(study_dir / "results.json", {
        "seeds": study.seeds, "recipe": study.pretrain.config, "macs_input_size": recipe.data.image_size,
        "rows": [{k: _clean(v) for k, v in dataclasses.asdict(row).items()} for row in rows],
        "runs": [dataclasses.asdict(run) for run in runs]})
    figures = study_dir / "figures"
    figures.mkdir(exist_ok=True)
    plot_curves(rows, runs, figures / FIGURES[0])
    plot_top1_vs_macs(rows, figures / FIGURES[1])
    atomic_write_text(study_dir / "report.md", markdown(rows, runs, study, recipe, study_dir))
    return rows
