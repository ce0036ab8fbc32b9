"""Routing metrics on small cases computed by hand (blender_lib.routing_metrics)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from blender_lib import routing_metrics as RMX

SHARES = (0.0, 0.25, 0.5, 0.75, 1.0)
WEAK, STRONG = [0, 0, 1, 1], [1, 1, 1, 0]  # means 0.5 and 0.75
SCORES = [0.9, 0.8, 0.1, 0.2]


def test_the_strong_weak_curve_pgr_apgr_and_cpt():
    curve = RMX.strong_weak_curve(SCORES, WEAK, STRONG, shares=SHARES)
    # top-1 by score (query 0) to strong: [1, 0, 1, 1]; top-2: all right; top-3 adds query 3, which strong gets wrong
    assert curve["quality"].tolist() == [0.5, 0.75, 1.0, 0.75, 0.75]
    assert curve["PGR"].tolist() == [0.0, 1.0, 2.0, 1.0, 1.0]
    assert RMX.apgr(curve) == pytest.approx(1.125)  # trapezoids: .125 + .375 + .375 + .25
    assert RMX.cpt(curve, 0.5) == pytest.approx(0.125) and RMX.cpt(curve, 0.8) == pytest.approx(0.2)
    assert math.isnan(RMX.cpt(curve, 2.5))
    # quality reaches 0.95 halfway between shares 0.25 (0.75) and 0.5 (1.0): at 0.45
    assert RMX.share_for_quality(curve, 0.95) == pytest.approx(0.45) and math.isnan(RMX.share_for_quality(curve, 1.1))
    assert RMX.quality_at_share(curve, 0.375) == pytest.approx(0.875) and RMX.quality_at_share(curve, 1.0) == 0.75
    summary = RMX.routing_summary({"r": curve})
    assert summary.loc["r", "CPT(50%) %"] == pytest.approx(12.5) and summary.loc["r", "APGR"] == pytest.approx(1.125)


def test_a_random_router_recovers_about_half_the_gap():
    rng = np.random.default_rng(0)
    weak, strong = rng.random(4000) < 0.5, rng.random(4000) < 0.8
    assert RMX.apgr(RMX.strong_weak_curve(rng.random(4000), weak, strong)) == pytest.approx(0.5, abs=0.05)


def test_shares_are_exact_and_ties_go_to_the_earlier_query():
    assert RMX.strong_by_share([1.0, 1.0, 0.0, 1.0], 0.5).tolist() == [True, True, False, False]
    with pytest.raises(ValueError, match=r"share must be in \[0, 1\]"):
        RMX.strong_by_share([1.0], 1.5)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="two equal, non-empty"):
        RMX.strong_weak_curve([1, 2], [1, 0], [1])
    with pytest.raises(ValueError, match=r"one router score per query \(2\)"):
        RMX.strong_weak_curve([1, 2, 3], [1, 0], [0, 1])
    with pytest.raises(ValueError, match="PGR is undefined"):
        RMX.pgr(0.5, 0.7, 0.7)
    with pytest.raises(ValueError, match="no price for \\['b'\\]"):
        RMX.dollar_cost({"a": 1, "b": 2}, {"a": 1.0})


def test_quantile_calibration_sends_the_target_share():
    threshold = RMX.calibrate_threshold(np.arange(1, 11), 0.3)
    assert threshold == 8.0 and RMX.route_by_threshold(np.arange(1, 11), threshold).mean() == pytest.approx(0.3)


def test_the_nondecreasing_hull_and_aiq():
    points = pd.DataFrame({"cost": [1, 2, 3, 4, 2.5], "quality": [0.5, 0.6, 0.9, 0.85, 0.6]})
    hull = RMX.nondecreasing_hull(points)
    assert hull.values.tolist() == [[1.0, 0.5], [3.0, 0.9]]  # (2, .6) is under the chord; (4, .85) and (2.5, .6) are dominated
    assert RMX.aiq(points, (1, 4)) == pytest.approx((1.4 + 0.9) / 3)  # a trapezoid to cost 3, then flat
    assert RMX.aiq(points, (0, 1)) == pytest.approx(0.5)  # flat to the left of the cheapest point
    with pytest.raises(ValueError, match="high > low"):
        RMX.aiq(points, (2, 2))


def test_the_cascade_defers_the_least_confident_answers():
    curve = RMX.deferral_curve([0.9, 0.1, 0.5, 0.3], [1, 0, 1, 0], [1, 1, 0, 1], weak_cost=1, strong_cost=10, shares=(0.0, 0.5, 1.0))
    assert curve["quality"].tolist() == [0.5, 1.0, 0.75]
    assert curve["cost"].tolist() == [1.0, 6.0, 11.0]  # the weak call is paid on every query
    assert RMX.router_cost(0.5, weak_cost=1, strong_cost=10) == 5.5
    assert RMX.dollar_cost({"a": 2e6, "b": 1e6}, {"a": 1.0, "b": 3.0}) == pytest.approx(5.0)


def test_the_apgr_interval_brackets_the_estimate_and_is_seeded():
    rng = np.random.default_rng(1)
    weak, strong = rng.random(300) < 0.4, rng.random(300) < 0.8
    scores = strong.astype(float) - weak + rng.normal(scale=0.8, size=300)  # a noisy but informative router
    estimate, low, high = RMX.apgr_interval(scores, weak, strong, n_boot=200)
    assert estimate == pytest.approx(RMX.apgr(RMX.strong_weak_curve(scores, weak, strong)))
    assert low < estimate < high and estimate > 0.5
    assert RMX.apgr_interval(scores, weak, strong, n_boot=200) == (estimate, low, high)
