"""Precision targets: the standard error a study wants on a quantity, and where its next seed helps most.

A study may name targets (``StudyConfig.targets``), e.g. the relative contribution of f4 and s4
to within 8 points (``se: 0.08``) or a width effect of at least 8 standard errors (``z: 8``). The
runner first runs every encoder at the configured ``seeds``, then adds seeds one unit at a time:
to the encoder (contrast models included) whose next seed shrinks the standard error of the
furthest-from-its-goal target the most per unit-hour, until every target is met, ``max_seeds`` is
reached or the budget is spent.

Why stopping on precision does not bias the estimates the way stopping on significance would:
the rule looks at standard errors, which come from the seeds' sample variances, not at how large
or how significant an effect looks. For normally distributed seed results the sample mean is
independent of the sample variance, so a mean computed after a precision-based stop is still
unbiased and its t interval keeps its coverage. Stopping when an effect first *looks*
significant instead selects runs whose estimate happened to be far from zero, and inflates it.
One residue remains, said plainly: a ratio's delta-method SE depends on the current means through
its partial derivatives, so the allocation of seeds between encoders (not the stopping of a mean)
has a weak dependence on the estimates.

Every quantity works on per-encoder summaries ``(mean, sample std, n)`` so that "one more seed"
can be evaluated before it runs: the same std, n + 1.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

QUANTITIES = ("rel_contribution", "gap", "mean")
#: Fewest seeds per encoder a bootstrap interval is given for: two values resample into at most
#: three distinct means, an interval far narrower than the uncertainty it should show.
MIN_BOOTSTRAP_N = 3


@dataclass(frozen=True)
class Summary:
    """An encoder's seed results: mean, sample standard deviation (nan below 2 seeds) and n."""

    mean: float
    std: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> "Summary":
        if not values:
            return cls(math.nan, math.nan, 0)
        return cls(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else math.nan, len(values))

    def with_n(self, n: int) -> "Summary":
        return Summary(self.mean, self.std, n)

    @property
    def se(self) -> float:
        return self.std / math.sqrt(self.n) if self.n > 1 else math.inf


@dataclass(frozen=True)
class Quantity:
    """One estimated quantity: what it is, the encoders it reads (in formula order) and its goal."""

    kind: str  # one of QUANTITIES
    encoders: tuple[str, ...]  # rel_contribution: (model, upper, lower); gap: (upper, lower); mean: (model,)
    se_goal: float | None = None  # an absolute standard error to reach (metric units: 0.08 = 8 points)
    z_goal: float | None = None  # |value| / SE to reach

    @property
    def label(self) -> str:
        if self.kind == "rel_contribution":
            return f"rel. contribution of {self.encoders[0]} (between {self.encoders[2]} and {self.encoders[1]})"
        if self.kind == "gap":
            return f"{self.encoders[0]} - {self.encoders[1]}"
        return f"mean of {self.encoders[0]}"


def value_and_se(quantity: Quantity, summaries: Mapping[str, Summary]) -> tuple[float, float]:
    """The quantity's estimate and standard error from the encoders' summaries (SE inf below 2 seeds).

    rel_contribution (M - L) / (U - L): delta method on the three means' standard errors;
    gap U - L: sqrt(se_U^2 + se_L^2); mean: std / sqrt(n).
    """
    parts = [summaries.get(name, Summary(math.nan, math.nan, 0)) for name in quantity.encoders]
    if quantity.kind == "mean":
        return parts[0].mean, parts[0].se
    if quantity.kind == "gap":
        upper, lower = parts
        return upper.mean - lower.mean, math.hypot(upper.se, lower.se)
    model, upper, lower = parts
    width = upper.mean - lower.mean
    if width == 0 or math.isnan(width):
        return math.nan, math.inf
    value = (model.mean - lower.mean) / width
    partials = (1 / width, -(model.mean - lower.mean) / width**2, (model.mean - upper.mean) / width**2)
    terms = [p * s.se for p, s in zip(partials, (model, upper, lower))]
    return value, math.sqrt(sum(t * t for t in terms)) if all(math.isfinite(t) for t in terms) else math.inf


def goal_se(quantity: Quantity, value: float) -> float:
    """The standard error that meets the quantity's goal (the stricter of ``se`` and ``z``)."""
    goals = []
    if quantity.se_goal is not None:
        goals.append(quantity.se_goal)
    if quantity.z_goal is not None:
        goals.append(abs(value) / quantity.z_goal if math.isfinite(value) else 0.0)
    return min(goals) if goals else math.inf


def shortfall(quantity: Quantity, summaries: Mapping[str, Summary]) -> float:
    """SE / goal SE: above 1 while the goal is not met (inf while an encoder has fewer than 2 seeds)."""
    value, se = value_and_se(quantity, summaries)
    goal = goal_se(quantity, value)
    if goal == 0:
        return math.inf
    return se / goal


def next_encoder(quantities: Sequence[Quantity], summaries: Mapping[str, Summary], *, pending: Mapping[str, int],
                 cost: Callable[[str], float], max_seeds: int) -> str | None:
    """The encoder whose next seed helps the study most, or None when every goal is met or no
    encoder of an unmet goal may get another seed (``max_seeds`` counts finished and pending seeds).

    ``pending``: seeds already started per encoder (running elsewhere): counted as if finished
    with the same spread, so cooperating processes do not all add to the same encoder.
    ``cost``: unit-hours of one more seed of an encoder (its pretraining and its cell).
    The goal furthest from being met is served first; within it, the encoder whose extra seed
    lowers its SE most per unit-hour.
    """
    counted = {name: s.with_n(s.n + pending.get(name, 0)) for name, s in summaries.items()}
    unmet = sorted(((shortfall(q, counted), q) for q in quantities), key=lambda item: -item[0])
    for short, quantity in unmet:
        if short <= 1:
            break
        _, se_now = value_and_se(quantity, counted)
        best, best_gain = None, 0.0
        for name in dict.fromkeys(quantity.encoders):
            current = counted.get(name)
            if current is None or current.n >= max_seeds:
                continue
            trial = {**counted, name: current.with_n(current.n + 1)}
            _, se_next = value_and_se(quantity, trial)
            gain = (se_now - se_next) / max(cost(name), 1e-9)
            if gain > best_gain:
                best, best_gain = name, gain
        if best is not None:
            return best
    return None


@dataclass(frozen=True)
class Interval:
    """A 95 % confidence interval and how it was made."""

    low: float
    high: float
    method: str  # "t" (Student t on the seed means) or "bootstrap" (scipy, BCa or percentile)


def t_interval(quantity: Quantity, summaries: Mapping[str, Summary], level: float = 0.95) -> Interval:
    """Student t interval of a mean or a gap (Welch-Satterthwaite degrees of freedom)."""
    from scipy import stats

    value, se = value_and_se(quantity, summaries)
    parts = [summaries[name] for name in quantity.encoders]
    if not math.isfinite(se) or any(p.n < 2 for p in parts):
        return Interval(math.nan, math.nan, "t")
    if quantity.kind == "mean":
        df = parts[0].n - 1
    else:
        variances = [p.std**2 / p.n for p in parts]
        denominator = sum(v * v / (p.n - 1) for v, p in zip(variances, parts))
        df = sum(variances) ** 2 / denominator if denominator > 0 else sum(p.n - 1 for p in parts)
    half = stats.t.ppf(0.5 + level / 2, df) * se
    return Interval(float(value - half), float(value + half), "t")


def bootstrap_interval(quantity: Quantity, samples: Mapping[str, Sequence[float]], level: float = 0.95,
                       resamples: int = 9999, seed: int = 0) -> Interval:
    """Bootstrap interval of a relative contribution: seeds resampled within each encoder
    (``scipy.stats.bootstrap``, BCa, or percentile where BCa is undefined); none (nan) while an
    encoder has fewer than ``MIN_BOOTSTRAP_N`` seeds."""
    from scipy import stats

    data = [list(samples.get(name, [])) for name in quantity.encoders]
    if any(len(d) < MIN_BOOTSTRAP_N for d in data):
        return Interval(math.nan, math.nan, "bootstrap")

    def ratio(model, upper, lower, axis=-1):
        import numpy as np

        width = np.mean(upper, axis=axis) - np.mean(lower, axis=axis)
        with np.errstate(divide="ignore", invalid="ignore"):
            return (np.mean(model, axis=axis) - np.mean(lower, axis=axis)) / width

    for method in ("BCa", "percentile"):
        try:
            result = stats.bootstrap(data, ratio, paired=False, vectorized=True, confidence_level=level,
                                     n_resamples=resamples, method=method, rng=seed)
        except (ValueError, ZeroDivisionError):
            continue
        low, high = result.confidence_interval
        if math.isfinite(low) and math.isfinite(high):
            return Interval(float(low), float(high), f"bootstrap ({method})")
    return Interval(math.nan, math.nan, "bootstrap")


def interval(quantity: Quantity, samples: Mapping[str, Sequence[float]], level: float = 0.95) -> Interval:
    """The report's 95 % interval: bootstrap for a ratio, Student t for a mean or a gap."""
    if quantity.kind == "rel_contribution":
        return bootstrap_interval(quantity, samples, level)
    return t_interval(quantity, {name: Summary.of(samples.get(name, [])) for name in quantity.encoders}, level)


def quantities_of(targets: Sequence[Mapping], encoders: Sequence[str]) -> list[Quantity]:
    """The study config's ``targets`` as quantities, checked against its ``encoders``.

    ``{quantity: rel_contribution, encoders: [a, b], se: 0.08}`` is one quantity per encoder, read
    against its variant's contrast models (RepeatNet: dense of its width and dense 1x), which the
    study must run too; ``gap`` names (upper, lower); ``mean`` one encoder each. ``se`` is in
    metric units (0.08 = 8 points of mIoU), ``z`` a multiple of the SE the value must reach."""
    from ..config import ConfigError
    from ..variants import get_variant

    quantities = []
    for index, target in enumerate(targets):
        where = f"targets[{index}]"
        if not isinstance(target, Mapping) or set(target) - {"quantity", "encoders", "se", "z"}:
            raise ConfigError(f"{where}: expected {{quantity, encoders, se and/or z}}, got {target!r}")
        kind, names = target.get("quantity"), target.get("encoders")
        if kind not in QUANTITIES:
            raise ConfigError(f"{where}.quantity: {kind!r}, expected one of {', '.join(QUANTITIES)}")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise ConfigError(f"{where}.encoders: expected a list of encoder names, got {names!r}")
        se, z = target.get("se"), target.get("z")
        for key, value in (("se", se), ("z", z)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
                raise ConfigError(f"{where}.{key}: expected a positive number, got {value!r}")
        if se is None and z is None:
            raise ConfigError(f"{where}: give se (a standard error to reach) or z (a multiple of the SE), or both")
        if kind == "gap":
            if len(names) != 2:
                raise ConfigError(f"{where}: a gap names two encoders (upper, lower), got {names}")
            groups = [tuple(names)]
        elif kind == "mean":
            groups = [(name,) for name in names]
        else:
            groups = []
            for name in names:
                contrast = get_variant(name).contrast
                if contrast is None:
                    raise ConfigError(f"{where}: {name} is a dense model; it has no relative contribution")
                groups.append((name, *(v.name for v in contrast)))
        for group in groups:
            missing = [name for name in group if name not in encoders]
            if missing:
                raise ConfigError(f"{where}: {', '.join(missing)} must be among the study's encoders "
                                  f"(the target reads {', '.join(group)})")
            quantities.append(Quantity(kind, group, se_goal=se, z_goal=z))
    return quantities
