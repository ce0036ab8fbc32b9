"""Routing as the routing literature measures it: strong/weak curves, PGR, APGR, CPT, AIQ and cascades.

Two models, a *weak* (cheap) and a *strong* (expensive) one, each with a per-query quality (a GPT-4
score, correctness, a win against a reference). A router gives each query a score: how much it
wants the strong model. Sending the top-k queries by score to the strong model, for every k, traces
the router's **strong/weak curve**: quality against the share of strong-model calls.

- **PGR** (performance gap recovered, RouteLLM): (quality - weak) / (strong - weak), where weak and
  strong are the two models' mean qualities. 0 is the weak model's quality, 1 the strong model's.
- **APGR**: the area under PGR over the share of strong calls, divided by that share's range (over
  the full range [0, 1] it is the mean PGR). A random router scores about 0.5.
- **CPT(x%)** (call-performance threshold): the smallest share of strong calls at which PGR reaches
  x%, linearly interpolated between the curve's points (NaN if the curve never reaches it).
- **Quantile calibration**: a threshold chosen on a calibration split so that a target share of
  its queries goes to the strong model. On new queries the share is only approximately that.
- **AIQ** (RouterBench): points of (cost, quality), one per router setting. Their non-decreasing
  convex hull is the best quality reachable at each cost by mixing settings. AIQ is the area under
  that hull over a cost range [c_min, c_max], divided by (c_max - c_min): a mean quality over the
  range. Normalisation: the hull is extended flat to the left of its cheapest point and to the right
  of its dearest (`numpy.interp`), so routers whose points span different costs compare over one range.
- **Cascade** (FrugalGPT, Hybrid LLM): the weak model always answers; a scorer reads its answer and
  the query is escalated to the strong model when the score is low. Deferring the k lowest-scored
  answers, for every k, gives the **deferral curve**. The weak call is paid on every query.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

DEFAULT_SHARES = tuple(np.round(np.linspace(0.0, 1.0, 11), 2))


def _check_pair(weak: Sequence[float], strong: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    weak_q, strong_q = np.asarray(weak, dtype=float), np.asarray(strong, dtype=float)
    if weak_q.ndim != 1 or weak_q.shape != strong_q.shape or not len(weak_q):
        raise ValueError(f"weak and strong qualities must be two equal, non-empty 1-D lists; got shapes "
                         f"{weak_q.shape} and {strong_q.shape}")
    if not (np.isfinite(weak_q).all() and np.isfinite(strong_q).all()):
        raise ValueError("qualities must be finite numbers")
    return weak_q, strong_q


def _check_scores(scores: Sequence[float], n: int) -> np.ndarray:
    values = np.asarray(scores, dtype=float)
    if values.shape != (n,):
        raise ValueError(f"need one router score per query ({n}), got shape {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError("router scores must be finite numbers")
    return values


def pgr(quality: float, weak_quality: float, strong_quality: float) -> float:
    """(quality - weak) / (strong - weak); a ValueError when the two models are equally good."""
    if strong_quality == weak_quality:
        raise ValueError(f"the strong and weak models have the same quality ({strong_quality}): PGR is undefined")
    return (quality - weak_quality) / (strong_quality - weak_quality)


def strong_by_share(scores: Sequence[float], share: float) -> np.ndarray:
    """Which queries go to the strong model when the top ``share`` of them by score do (ties broken by
    position, earlier first, so the share is exact: round(share * n) queries)."""
    values = np.asarray(scores, dtype=float)
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must be in [0, 1], got {share!r}")
    k = int(round(share * len(values)))
    order = np.argsort(-values, kind="stable")
    chosen = np.zeros(len(values), dtype=bool)
    chosen[order[:k]] = True
    return chosen


def _curve_arrays(values: np.ndarray, weak_q: np.ndarray, strong_q: np.ndarray,
                  shares: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(strong share, quality, PGR) at each share: the top round(share * n) queries by score go strong."""
    order = np.argsort(-values, kind="stable")
    gain = (strong_q - weak_q)[order]
    taken = np.concatenate([[0.0], np.cumsum(gain)])  # quality gained by sending the top k to the strong model
    ks = np.array([int(round(share * len(values))) for share in shares])
    quality = weak_q.mean() + taken[ks] / len(values)
    return ks / len(values), quality, np.array([pgr(q, float(weak_q.mean()), float(strong_q.mean())) for q in quality])


def strong_weak_curve(scores: Sequence[float], weak: Sequence[float], strong: Sequence[float], *,
                      shares: Sequence[float] = DEFAULT_SHARES) -> pd.DataFrame:
    """Quality and PGR of a router at each share of strong-model calls (a row per share)."""
    weak_q, strong_q = _check_pair(weak, strong)
    values = _check_scores(scores, len(weak_q))
    if any(not 0.0 <= s <= 1.0 for s in shares):
        raise ValueError(f"shares must be in [0, 1], got {list(shares)}")
    share, quality, gap = _curve_arrays(values, weak_q, strong_q, shares)
    return pd.DataFrame({"strong share": share, "quality": quality, "PGR": gap})


def _area(x: np.ndarray, y: np.ndarray) -> float:
    if x[-1] == x[0]:
        raise ValueError("the curve needs at least two different strong shares")
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2) / (x[-1] - x[0]))


def apgr(curve: pd.DataFrame) -> float:
    """Area under PGR over the strong share (trapezoids), divided by the share's range."""
    ordered = curve.sort_values("strong share")
    return _area(ordered["strong share"].to_numpy(), ordered["PGR"].to_numpy())


def apgr_interval(scores: Sequence[float], weak: Sequence[float], strong: Sequence[float], *, n_boot: int = 1000,
                  seed: int = 0, shares: Sequence[float] = DEFAULT_SHARES) -> tuple[float, float, float]:
    """APGR with a 95% percentile-bootstrap interval over queries (a resample where the two models tie
    on average, so PGR is undefined, is drawn again)."""
    weak_q, strong_q = _check_pair(weak, strong)
    values = _check_scores(scores, len(weak_q))
    estimate = _area(*_curve_arrays(values, weak_q, strong_q, shares)[::2])
    rng, boot = np.random.default_rng(seed), []
    while len(boot) < n_boot:
        rows = rng.integers(0, len(values), size=len(values))
        if weak_q[rows].mean() != strong_q[rows].mean():
            boot.append(_area(*_curve_arrays(values[rows], weak_q[rows], strong_q[rows], shares)[::2]))
    return estimate, float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))


def _first_share_reaching(curve: pd.DataFrame, column: str, target: float) -> float:
    ordered = curve.sort_values("strong share")
    x, y = ordered["strong share"].to_numpy(), ordered[column].to_numpy()
    if y[0] >= target:
        return float(x[0])
    for k in range(1, len(x)):
        if y[k] >= target:
            return float(x[k - 1] + (x[k] - x[k - 1]) * (target - y[k - 1]) / (y[k] - y[k - 1]))
    return float("nan")


def cpt(curve: pd.DataFrame, target_pgr: float) -> float:
    """The smallest strong share at which the curve's PGR reaches ``target_pgr`` (0.5 for CPT(50%)),
    interpolated linearly inside the first segment that crosses it; NaN if it never does."""
    return _first_share_reaching(curve, "PGR", target_pgr)


def share_for_quality(curve: pd.DataFrame, quality: float) -> float:
    """The smallest strong share at which the curve's quality reaches ``quality`` (e.g. 95% of the strong
    model's: RouteLLM's "95% of GPT-4's performance"), interpolated as :func:`cpt`; NaN if never."""
    return _first_share_reaching(curve, "quality", quality)


def quality_at_share(curve: pd.DataFrame, share: float) -> float:
    """The curve's quality at a strong share, linearly interpolated between its points."""
    ordered = curve.sort_values("strong share")
    return float(np.interp(share, ordered["strong share"].to_numpy(), ordered["quality"].to_numpy()))


def routing_summary(curves: Mapping[str, pd.DataFrame], *, cpt_targets: Sequence[float] = (0.5, 0.8)) -> pd.DataFrame:
    """APGR and CPT(x%) of each router's curve, one row per router (CPT as a percentage of calls)."""
    rows = {name: {"APGR": apgr(curve), **{f"CPT({round(100 * t)}%) %": 100 * cpt(curve, t) for t in cpt_targets}}
            for name, curve in curves.items()}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "router"
    return table


def calibrate_threshold(calibration_scores: Sequence[float], target_share: float) -> float:
    """The score threshold that sends ``target_share`` of the calibration queries to the strong model
    (route to strong when score >= threshold): the (1 - share) quantile of their scores."""
    values = np.asarray(calibration_scores, dtype=float)
    if not len(values):
        raise ValueError("no calibration scores")
    if not 0.0 < target_share <= 1.0:
        raise ValueError(f"target_share must be in (0, 1], got {target_share!r}")
    return float(np.quantile(values, 1.0 - target_share, method="higher"))


def route_by_threshold(scores: Sequence[float], threshold: float) -> np.ndarray:
    """True where a query goes to the strong model (its score is at least the threshold)."""
    return np.asarray(scores, dtype=float) >= threshold


# -- cost-quality plane ------------------------------------------------------------------------------

def nondecreasing_hull(points: pd.DataFrame, *, cost: str = "cost", quality: str = "quality") -> pd.DataFrame:
    """The non-decreasing upper convex hull of (cost, quality) points: the settings worth using, sorted
    by cost. A point costlier and no better than another, or under the segment joining two others,
    is left out (mixing those two settings query by query does at least as well)."""
    if points.empty:
        raise ValueError("no points")
    ordered = points.sort_values([cost, quality], ascending=[True, False]).drop_duplicates(cost)
    hull: list[tuple[float, float]] = []
    for c, q in zip(ordered[cost].to_numpy(dtype=float), ordered[quality].to_numpy(dtype=float)):
        if hull and q <= hull[-1][1]:
            continue  # dearer and not better: dominated
        while len(hull) >= 2:
            (c1, q1), (c2, q2) = hull[-2], hull[-1]
            if (q2 - q1) * (c - c1) <= (q - q1) * (c2 - c1):  # the middle point is on or under the new chord
                hull.pop()
            else:
                break
        hull.append((c, q))
    return pd.DataFrame(hull, columns=[cost, quality])


def aiq(points: pd.DataFrame, cost_range: tuple[float, float], *, cost: str = "cost", quality: str = "quality") -> float:
    """RouterBench's average improvement in quality: the mean of the hull's quality over ``cost_range``
    (area over range; the hull is extended flat beyond its first and last points)."""
    low, high = cost_range
    if not high > low:
        raise ValueError(f"cost_range must be (low, high) with high > low, got {cost_range!r}")
    hull = nondecreasing_hull(points, cost=cost, quality=quality)
    knots = np.unique(np.concatenate([[low, high], hull[cost].clip(low, high).to_numpy()]))
    values = np.interp(knots, hull[cost].to_numpy(), hull[quality].to_numpy())
    return float(np.sum((knots[1:] - knots[:-1]) * (values[1:] + values[:-1]) / 2) / (high - low))


# -- cascades ------------------------------------------------------------------------------------------

def deferral_curve(confidence: Sequence[float], weak: Sequence[float], strong: Sequence[float], *,
                   weak_cost: float, strong_cost: float, shares: Sequence[float] = DEFAULT_SHARES) -> pd.DataFrame:
    """A cascade at each share of deferred queries: the weak model answers every query, and the
    ``share`` with the lowest ``confidence`` (a scorer's reading of the weak answer) are sent on to
    the strong model. Cost per query = weak_cost + share x strong_cost."""
    # deferring the least confident answers is routing them to the strong model by -confidence
    curve = strong_weak_curve(-_check_scores(confidence, len(weak)), weak, strong, shares=shares)
    curve = curve.rename(columns={"strong share": "deferred share"})
    curve.insert(2, "cost", weak_cost + curve["deferred share"] * strong_cost)
    return curve


def router_cost(strong_share: float, *, weak_cost: float, strong_cost: float) -> float:
    """Cost per query of a router that sends ``strong_share`` of queries to the strong model and the
    rest to the weak one (one call each; a cascade pays the weak call on every query instead)."""
    return strong_share * strong_cost + (1.0 - strong_share) * weak_cost


def dollar_cost(tokens: Mapping[str, float], prices_per_million: Mapping[str, float]) -> float:
    """Dollars for generated tokens per model at user-given prices ($ per million output tokens); a
    model without a price is an error naming it, not a free call."""
    missing = sorted(set(tokens) - set(prices_per_million))
    if missing:
        raise ValueError(f"no price for {missing}: add them to the price table (dollars per million tokens)")
    return float(sum(n * prices_per_million[m] / 1e6 for m, n in tokens.items()))


# -- tables the chapter shows --------------------------------------------------------------------------

def summary_with_intervals(scores: Mapping[str, Sequence[float]], weak: Sequence[float], strong: Sequence[float], *,
                           n_boot: int = 1000, seed: int = 0, cpt_targets: Sequence[float] = (0.5, 0.8)) -> pd.DataFrame:
    """Per router: APGR with its bootstrap interval, and CPT(x%) as a percentage of strong calls."""
    table = routing_summary(curves_by_router(scores, weak, strong), cpt_targets=cpt_targets)
    intervals = [apgr_interval(values, weak, strong, n_boot=n_boot, seed=seed)[1:] for values in scores.values()]
    table.insert(1, "CI low", [low for low, _ in intervals])
    table.insert(2, "CI high", [high for _, high in intervals])
    return table


def curves_by_router(scores: Mapping[str, Sequence[float]], weak: Sequence[float], strong: Sequence[float], *,
                     shares: Sequence[float] = DEFAULT_SHARES) -> dict[str, pd.DataFrame]:
    """Each router's :func:`strong_weak_curve` on the same queries."""
    return {name: strong_weak_curve(values, weak, strong, shares=shares) for name, values in scores.items()}


def calibration_check(scores: Sequence[float], weak: Sequence[float], strong: Sequence[float],
                      calibration: Sequence[bool], target_share: float) -> dict[str, float]:
    """Calibrate a threshold on the ``calibration`` queries for ``target_share`` strong calls, then
    route the other queries with it: the share of strong calls it actually makes there, and its PGR."""
    weak_q, strong_q = _check_pair(weak, strong)
    values = _check_scores(scores, len(weak_q))
    on = np.asarray(calibration, dtype=bool)
    if on.shape != values.shape or on.all() or not on.any():
        raise ValueError("calibration must mark some, but not all, of the queries")
    threshold = calibrate_threshold(values[on], target_share)
    to_strong = route_by_threshold(values[~on], threshold)
    quality = float(np.where(to_strong, strong_q[~on], weak_q[~on]).mean())
    return {"threshold": threshold, "target strong share %": 100 * target_share,
            "strong share on new queries %": 100 * float(to_strong.mean()), "quality": quality,
            "PGR": pgr(quality, float(weak_q[~on].mean()), float(strong_q[~on].mean()))}


def cost_quality_points(curves: Mapping[str, pd.DataFrame], *, weak_cost: float, strong_cost: float,
                        deferral: Sequence[str] = ()) -> pd.DataFrame:
    """Each router's curve as (cost per query, quality) points: a router pays one call per query, a
    cascade (named in ``deferral``; its curve from :func:`deferral_curve`, or the router curve of its
    negated confidence, which is the same) the weak call on every one."""
    rows = []
    for name, curve in curves.items():
        share = curve["deferred share"] if "deferred share" in curve else curve["strong share"]
        cost = weak_cost + share * strong_cost if name in deferral else share * strong_cost + (1 - share) * weak_cost
        rows += [{"router": name, "cost": float(c), "quality": float(q)} for c, q in zip(cost, curve["quality"])]
    return pd.DataFrame(rows)


def hulls_by_router(points: pd.DataFrame) -> pd.DataFrame:
    """Each router's :func:`nondecreasing_hull` of its points, with a ``router`` column (for plotting)."""
    return pd.concat({name: nondecreasing_hull(group) for name, group in points.groupby("router", sort=False)},
                     names=["router"]).reset_index(level=0)


def aiq_table(points: pd.DataFrame, cost_range: tuple[float, float]) -> pd.DataFrame:
    """AIQ of each router's points over one cost range (see the module docstring for the normalisation)."""
    return pd.DataFrame({"AIQ": {name: aiq(group, cost_range) for name, group in points.groupby("router", sort=False)}}
                        ).rename_axis("router")
