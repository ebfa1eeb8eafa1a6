import math

import pytest

from repeatseg.study.precision import Quantity, Summary, interval, next_encoder, shortfall, value_and_se

SEEDS = {"f4": [0.26, 0.30, 0.22], "d4": [0.35, 0.33, 0.37], "d1": [0.22, 0.19, 0.25]}
RC = Quantity("rel_contribution", ("f4", "d4", "d1"), se_goal=0.08)
GAP = Quantity("gap", ("d4", "d1"), z_goal=8)


def summaries(samples=SEEDS):
    return {name: Summary.of(values) for name, values in samples.items()}


def test_relative_contribution_and_its_delta_method_se():
    value, se = value_and_se(RC, summaries())
    d4, d1, f4 = (sum(SEEDS[k]) / 3 for k in ("d4", "d1", "f4"))
    assert value == pytest.approx((f4 - d1) / (d4 - d1))
    # finite differences of the ratio against the analytic partials
    s = summaries()
    eps = 1e-6
    terms = []
    for name in ("f4", "d4", "d1"):
        bumped = {**s, name: Summary(s[name].mean + eps, s[name].std, s[name].n)}
        partial = (value_and_se(RC, bumped)[0] - value) / eps
        terms.append(partial * s[name].se)
    assert se == pytest.approx(math.sqrt(sum(t * t for t in terms)), rel=1e-4)


def test_a_single_seed_has_no_standard_error():
    one = summaries({"f4": [0.3], "d4": [0.35, 0.33], "d1": [0.2, 0.22]})
    assert value_and_se(RC, one)[1] == math.inf
    assert shortfall(RC, one) == math.inf


def test_z_goal_is_met_when_the_gap_is_far_enough_from_zero():
    tight = {"d4": [0.350, 0.351, 0.349], "d1": [0.200, 0.201, 0.199]}
    loose = {"d4": [0.40, 0.30, 0.35], "d1": [0.25, 0.15, 0.20]}
    assert shortfall(GAP, summaries(tight)) < 1
    assert shortfall(GAP, summaries(loose)) > 1


def test_next_seed_goes_where_it_lowers_the_largest_shortfall_most():
    noisy_model = {**SEEDS, "f4": [0.10, 0.40, 0.25]}
    choice = next_encoder([RC], summaries(noisy_model), pending={}, cost=lambda name: 1.0, max_seeds=10)
    assert choice == "f4"
    noisy_base = {**SEEDS, "d1": [0.10, 0.35, 0.20]}
    assert next_encoder([RC], summaries(noisy_base), pending={}, cost=lambda name: 1.0, max_seeds=10) == "d1"


def test_cost_and_pending_seeds_steer_the_choice():
    equal = {"f4": [0.2, 0.3], "d4": [0.30, 0.40], "d1": [0.10, 0.20]}
    rc = Quantity("rel_contribution", ("f4", "d4", "d1"), se_goal=0.001)
    costly_d1 = next_encoder([rc], summaries(equal), pending={}, cost=lambda n: 100.0 if n == "d1" else 1.0,
                             max_seeds=10)
    assert costly_d1 != "d1"
    # seeds running elsewhere count as already there: others are served first
    crowded = next_encoder([rc], summaries(equal), pending={"f4": 6}, cost=lambda n: 1.0, max_seeds=10)
    assert crowded != "f4"


def test_nothing_to_add_when_goals_are_met_or_seeds_are_exhausted():
    assert next_encoder([Quantity("mean", ("d1",), se_goal=1.0)], summaries(), pending={}, cost=lambda n: 1.0,
                        max_seeds=10) is None
    strict = Quantity("mean", ("d1",), se_goal=1e-9)
    assert next_encoder([strict], summaries(), pending={}, cost=lambda n: 1.0, max_seeds=3) is None
    assert next_encoder([strict], summaries(), pending={}, cost=lambda n: 1.0, max_seeds=4) == "d1"


def test_intervals_cover_the_estimate():
    rc_interval = interval(RC, SEEDS)
    value, _ = value_and_se(RC, summaries())
    assert rc_interval.method.startswith("bootstrap") and rc_interval.low < value < rc_interval.high
    gap_interval = interval(GAP, SEEDS)
    gap_value, gap_se = value_and_se(GAP, summaries())
    assert gap_interval.method == "t" and gap_interval.low < gap_value < gap_interval.high
    # Student t with few degrees of freedom is wider than the normal +-1.96 SE
    assert gap_interval.high - gap_value > 1.96 * gap_se


def test_no_bootstrap_interval_from_two_seeds():
    two = {"f4": [0.26, 0.30], "d4": [0.35, 0.33, 0.37], "d1": [0.22, 0.19, 0.25]}
    assert math.isnan(interval(RC, two).low)
    assert not math.isnan(interval(RC, SEEDS).low)
