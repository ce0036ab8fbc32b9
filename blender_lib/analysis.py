"""Analyses of a judged MixInstruct: GPT-Rank per model, win rates, top-1 shares, oracles, agreement.

All functions take examples in the MixInstruct schema and return pandas objects, so notebooks
only display them. Tie rule everywhere: GPT-Rank is a competition ranking, so tied candidates
share the better rank; "rank 1" therefore counts every candidate tied for the top.

The last section serves the real-LLM chapters (pure numpy and pandas): :func:`preference_agreement`
(does a method order candidate pairs as GPT-4 / the gold label does) with :func:`agreement_table`
(Wilson intervals) and :func:`paired_agreement_gap`; :func:`win_rate_vs_reference` (the AlpacaEval win
rate of a selector that picks one candidate per prompt), :func:`candidate_win_rates`,
:func:`oracle_selections` and :func:`word_counts`; :func:`win_rate_table` and :func:`paired_gap`
(bootstrap intervals over prompts); :func:`claim` for a chapter's claims table.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections import defaultdict
from collections.abc import Mapping
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .data import DataError
from .judge import gpt_ranks, ranks_from_scores
from .real_data import PREF_SCORE
from .scales import ScoreScale, scale_of

HIGHER_IS_BETTER = True  # every metric we store (BLEU, ROUGE, BERTScore, log-likelihood) grows with quality


def judged(examples: Sequence[dict]) -> list[dict]:
    """The examples that carry judge verdicts."""
    return [ex for ex in examples if ex.get("cmp_results")]


def candidate_table(examples: Sequence[dict]) -> pd.DataFrame:
    """One row per (example, candidate): metric scores, GPT-Rank (if judged), length."""
    rows = []
    for ex in examples:
        ranks = gpt_ranks(ex) if ex.get("cmp_results") else {}
        for c in ex["candidates"]:
            rows.append(
                {
                    "id": ex["id"],
                    "tag": (ex.get("tags") or [""])[0],
                    "model": c["model"],
                    "words": len(c["text"].split()),
                    **c["scores"],
                    "gpt_rank": ranks.get(c["model"], np.nan),
                }
            )
    return pd.DataFrame(rows)


def model_summary(examples: Sequence[dict], metrics: Sequence[str]) -> pd.DataFrame:
    """Mean metrics and mean GPT-Rank per model (lower GPT-Rank is better), best rank first."""
    table = candidate_table(examples)
    summary = table.groupby("model")[[*metrics, "gpt_rank", "words"]].mean()
    return summary.sort_values("gpt_rank")


def win_rates(examples: Sequence[dict]) -> pd.DataFrame:
    """W[row, col] = share of judged pairs where the row model beats the column model (ties = 0.5)."""
    models = [c["model"] for c in examples[0]["candidates"]]
    wins = pd.DataFrame(0.0, index=models, columns=models)
    games = pd.DataFrame(0.0, index=models, columns=models)
    points = {"A is better": (1.0, 0.0), "B is better": (0.0, 1.0), "Same good": (0.5, 0.5), "Same bad": (0.5, 0.5)}
    for ex in judged(examples):
        for key, label in ex["cmp_results"].items():
            a, b = key.split(",")
            pa, pb = points[label]
            wins.loc[a, b] += pa
            wins.loc[b, a] += pb
            games.loc[a, b] += 1
            games.loc[b, a] += 1
    rates = wins / games.replace(0, np.nan)
    order = rates.mean(axis=1).sort_values(ascending=False).index
    return rates.loc[order, order]


def quality_ranks(example: dict, by: str = "gpt_rank") -> dict[str, int]:
    """Ranks of an example's candidates by GPT-Rank or by one reference metric (1 = best, ties share)."""
    if by == "gpt_rank":
        return gpt_ranks(example)
    scores = np.array([c["scores"][by] for c in example["candidates"]])
    return {c["model"]: int(r) for c, r in zip(example["candidates"], ranks_from_scores(scores))}


def top1_shares(examples: Sequence[dict], by: str = "gpt_rank") -> pd.Series:
    """Share of examples where each model is ranked first (ties for the top all count)."""
    examples = judged(examples) if by == "gpt_rank" else list(examples)
    counts: dict[str, int] = {}
    for ex in examples:
        for model, rank in quality_ranks(ex, by).items():
            counts[model] = counts.get(model, 0) + (rank == 1)
    return (pd.Series(counts) / len(examples)).sort_values(ascending=False).rename(f"ranked first by {by}")


def at_least_as_good_as_top(examples: Sequence[dict], top_model: str, by: str = "gpt_rank") -> pd.Series:
    """Share of examples where each model ranks at least as well as ``top_model`` (by GPT-Rank or a metric)."""
    examples = judged(examples) if by == "gpt_rank" else list(examples)
    shares: dict[str, float] = {}
    for ex in examples:
        ranks = quality_ranks(ex, by)
        for model, rank in ranks.items():
            shares[model] = shares.get(model, 0.0) + (rank <= ranks[top_model])
    return (pd.Series(shares) / len(examples)).sort_values(ascending=False).rename(f">= {top_model} by {by}")


def oracle_selection(examples: Sequence[dict], metrics: Sequence[str]) -> pd.DataFrame:
    """Pick, per example, the candidate best by each metric (or by GPT-Rank); report what it scores.

    The oracle sees the reference (metrics) or the judge (GPT-Rank): an upper bound for a selector.
    """
    examples = judged(examples)
    rows = []
    selectors = [*metrics, "gpt_rank"]
    for selector in selectors:
        picked = []
        for ex in examples:
            ranks = gpt_ranks(ex)
            if selector == "gpt_rank":
                best = min(ex["candidates"], key=lambda c: ranks[c["model"]])
            else:
                best = max(ex["candidates"], key=lambda c: c["scores"][selector])
            picked.append({**{m: best["scores"][m] for m in metrics}, "gpt_rank": ranks[best["model"]]})
        rows.append(pd.DataFrame(picked).mean().rename(f"oracle by {selector}"))
    return pd.DataFrame(rows)


def judge_metric_agreement(examples: Sequence[dict], metrics: Sequence[str]) -> pd.DataFrame:
    """How often a metric prefers the same candidate as a decisive judge verdict, and how often
    the judge is decisive at all. Chance agreement is 0.5."""
    rows = []
    for metric in metrics:
        agree = total = 0
        for ex in judged(examples):
            scores = {c["model"]: c["scores"][metric] for c in ex["candidates"]}
            for key, label in ex["cmp_results"].items():
                if label not in ("A is better", "B is better"):
                    continue
                a, b = key.split(",")
                if scores[a] == scores[b]:
                    continue
                metric_prefers_a = scores[a] > scores[b]
                agree += metric_prefers_a == (label == "A is better")
                total += 1
        rows.append({"metric": metric, "agreement": agree / total if total else np.nan, "decisive pairs": total})
    return pd.DataFrame(rows).set_index("metric")


def metric_agreement_matrix(examples: Sequence[dict], metrics: Sequence[str]) -> pd.DataFrame:
    """Pairwise agreement between metrics on which of two candidates is better (all pairs)."""
    names = list(metrics)
    table = pd.DataFrame(np.nan, index=names, columns=names)
    for m1, m2 in itertools.product(names, names):
        agree = total = 0
        for ex in examples:
            for c1, c2 in itertools.combinations(ex["candidates"], 2):
                d1 = c1["scores"][m1] - c2["scores"][m1]
                d2 = c1["scores"][m2] - c2["scores"][m2]
                if d1 == 0 or d2 == 0:
                    continue
                agree += (d1 > 0) == (d2 > 0)
                total += 1
        table.loc[m1, m2] = agree / total if total else np.nan
    return table


def verdict_distribution(examples: Sequence[dict]) -> pd.DataFrame:
    """Counts of combined and raw (per-order) verdicts, including unparseable raw ones."""
    combined, raw = {}, {}
    for ex in judged(examples):
        for label in ex["cmp_results"].values():
            combined[label] = combined.get(label, 0) + 1
        for label in (ex.get("cmp_results_raw") or {}).values():
            key = label or "unparseable"
            raw[key] = raw.get(key, 0) + 1
    return pd.DataFrame({"combined (both orders)": pd.Series(combined), "raw (one order)": pd.Series(raw)}).fillna(0).astype(int)


def top_model_summary(shares: pd.DataFrame, top_model: str, metric: str) -> str:
    """One sentence: how often the model that is best on average is ranked first by ``metric``."""
    column = f"ranked first by {metric}"
    best_share = shares.loc[top_model, column]
    others = shares[column].drop(top_model)
    return (f"{top_model} has the best mean {metric}, yet it is ranked first on only {best_share:.0%} of the "
            f"examples; the other models together take the top spot on the rest "
            f"(the best of them, {others.idxmax()}, on {others.max():.0%}).")


# --------------------------------------------------------------------------------------------
# selectors compared as in LLM-Blender's Tables 2 and 3
#
# A *selector* gives every candidate of every example a score (higher = better): a ranker, a
# baseline, a metric oracle. Its selection is the argmax (first index on a tie); its ranking is the
# competition ranking of the scores.


def selections_from_scores(scores: Sequence[np.ndarray]) -> list[int]:
    """The chosen candidate of each example: the highest score, the first one on a tie."""
    return [int(np.argmax(np.asarray(s, dtype=float))) for s in scores]


def _rank_of(example: dict, by: str) -> np.ndarray:
    ranks = quality_ranks(example, by)
    return np.array([ranks[c["model"]] for c in example["candidates"]])


def selection_table(examples: Sequence[dict], selections: dict[str, Sequence[int]], metrics: Sequence[str],
                    top_models: dict[str, str], rank_by: Sequence[str] = ("gpt_rank",)) -> pd.DataFrame:
    """Table 2 of the paper for our selectors: mean metrics and mean GPT-Rank of the chosen
    candidates; ">= top" = share of examples where the choice ranks at least as well as the top
    model's candidate (ties count as wins, the paper's rule); top-1/top-3 = share where the choice
    is ranked first / among the first three (ties share the better rank). ``top_models`` maps each
    entry of ``rank_by`` to the model that is best on average by it."""
    rows = {}
    ranks = {by: [_rank_of(ex, by) for ex in examples] for by in rank_by}
    for name, chosen in selections.items():
        if len(chosen) != len(examples):
            raise ValueError(f"selector {name!r} chose for {len(chosen)} examples, expected {len(examples)}")
        row = {m: float(np.mean([ex["candidates"][k]["scores"][m] for ex, k in zip(examples, chosen)])) for m in metrics}
        for by in rank_by:
            top = top_models[by]
            picked = np.array([r[k] for r, k in zip(ranks[by], chosen)])
            top_ranks = np.array([r[[c["model"] for c in ex["candidates"]].index(top)]
                                  for ex, r in zip(examples, ranks[by])])
            label = "GPT-Rank" if by == "gpt_rank" else by
            row[f"{label} (mean rank)"] = float(picked.mean())
            row[f">= {top} by {label} %"] = 100 * float((picked <= top_ranks).mean())
            row[f"top-1 by {label} %"] = 100 * float((picked == 1).mean())
            row[f"top-3 by {label} %"] = 100 * float((picked <= 3).mean())
        rows[name] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def _safe_corr(fn, x: np.ndarray, y: np.ndarray) -> float:
    """A correlation, NaN (not a warning) where either side is constant."""
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(fn(x, y)[0])


def _mean_defined(values: Sequence[float]) -> float:
    """Mean of the finite values; NaN when there are none."""
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def rank_correlations(examples: Sequence[dict], scores: Sequence[np.ndarray], by: str = "gpt_rank") -> dict[str, float]:
    """Correlation of a selector's ranking with the ranking by ``by`` (GPT-Rank or a metric), two ways.

    *Official* (LLM-Blender's evaluation code, Table 3): for each candidate slot, Pearson and Spearman
    of the two rank columns across examples, averaged over slots; Spearman's footrule = the sum over
    candidates of |rank difference|, averaged over examples. *Per example*: Pearson and Spearman of
    the two rankings within each example, averaged over the examples where both vary. The footrule
    of a random ranking is (N^2 - 1) / 3 for N candidates (47.7 for the paper's 12, 11.7 for 6)."""
    from scipy.stats import pearsonr, spearmanr

    if len(scores) != len(examples):
        raise ValueError(f"got scores for {len(scores)} examples, expected {len(examples)}")
    predicted = np.array([ranks_from_scores(s) for s in scores], dtype=float)
    target = np.array([_rank_of(ex, by) for ex in examples], dtype=float)
    if predicted.shape != target.shape:
        raise ValueError(f"scores have shape {predicted.shape} but the examples have {target.shape} candidates")
    columns = range(target.shape[1])
    per_example = [(_safe_corr(pearsonr, p, t), _safe_corr(spearmanr, p, t)) for p, t in zip(predicted, target)]
    n = target.shape[1]
    return {
        "pearson (official)": _mean_defined([_safe_corr(pearsonr, predicted[:, c], target[:, c]) for c in columns]),
        "spearman (official)": _mean_defined([_safe_corr(spearmanr, predicted[:, c], target[:, c]) for c in columns]),
        "footrule (official)": float(np.abs(predicted - target).sum(axis=1).mean()),
        "footrule / random": float(np.abs(predicted - target).sum(axis=1).mean() / ((n * n - 1) / 3)),
        "pearson (per example)": _mean_defined([p for p, _ in per_example]),
        "spearman (per example)": _mean_defined([s for _, s in per_example]),
        "examples with a defined per-example correlation": float(sum(np.isfinite(s) for _, s in per_example)),
    }


def correlation_table(examples: Sequence[dict], scores: dict[str, Sequence[np.ndarray]],
                      by: str = "gpt_rank") -> pd.DataFrame:
    """Table 3 for our selectors: one row of :func:`rank_correlations` per selector."""
    return pd.DataFrame.from_dict({name: rank_correlations(examples, s, by) for name, s in scores.items()},
                                  orient="index")


def _argmax_random_tie(scores: np.ndarray, rng: np.random.Generator) -> int:
    """Argmax with ties broken at random: with few comparisons many candidates tie, and taking the
    first would favour whichever model happens to sit in slot 0."""
    best = np.flatnonzero(scores == np.max(scores))
    return int(rng.choice(best))


def comparison_budget_curve(matrices: Sequence[np.ndarray], quality: Sequence[np.ndarray], budgets: Sequence[int],
                            *, repeats: int = 20, seed: int = 0) -> pd.DataFrame:
    """Top-1 quality against the number of comparisons, from full comparison matrices.

    For a budget of b candidate pairs, each aggregation sees only b random pairs (both orders,
    so 2b model passes) and picks its winner from them; unseen pairs count as 0. Bubble always
    uses N - 1 pairs: one pass over the candidates in a random order. ``quality[n][i]`` is the
    reference quality of candidate i of example n (e.g. BERTScore); "top-1 %" counts the examples
    whose pick has the best quality. Averaged over ``repeats`` random draws."""
    from .rankers import bubble_winner, max_logits, max_wins

    rng = np.random.default_rng(seed)
    rows = []

    def record(aggregation: str, pairs: int, picks: list[int]) -> None:
        chosen = np.array([q[k] for q, k in zip(quality, picks)])
        best = np.array([q[k] >= np.max(q) for q, k in zip(quality, picks)])
        rows.append({"aggregation": aggregation, "pairs": pairs, "model passes": 2 * pairs,
                     "quality": float(chosen.mean()), "top-1 %": 100 * float(best.mean())})

    n = len(matrices[0])
    if any(len(m) != n for m in matrices):
        raise ValueError("every example needs the same number of candidates for a common comparison budget")
    all_pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    for _ in range(repeats):
        for b in budgets:
            if not 1 <= b <= len(all_pairs):
                raise ValueError(f"a budget must be between 1 and {len(all_pairs)} pairs, got {b}")
            picks = {"max_logits": [], "max_wins": []}
            for m in matrices:
                seen = np.zeros_like(m, dtype=bool)
                for p in rng.choice(len(all_pairs), size=b, replace=False):
                    i, j = all_pairs[p]
                    seen[i, j] = seen[j, i] = True
                partial = np.where(seen, m, 0.0)
                picks["max_logits"].append(_argmax_random_tie(max_logits(partial), rng))
                partial_wins = max_wins(np.where(seen, m, np.nan))  # an unseen pair is neither a win nor a loss
                picks["max_wins"].append(_argmax_random_tie(partial_wins, rng))
            for aggregation, chosen in picks.items():
                record(aggregation, b, chosen)
        bubble_picks = []
        for m in matrices:
            order = rng.permutation(n)
            bubble_picks.append(int(order[bubble_winner(m[np.ix_(order, order)])]))
        record("bubble", n - 1, bubble_picks)
    return pd.DataFrame(rows).groupby(["aggregation", "pairs", "model passes"], as_index=False).mean()


# --------------------------------------------------------------------------------------------
# real LLMs judged by GPT-4 or people (chapter 6 on): agreement with the gold order, win rates
# against the reference, bootstrap and Wilson intervals, and the claims they support


def _check_scores(examples: Sequence[Mapping[str, Any]], scores: Sequence[Any]) -> list[np.ndarray]:
    """Per example, a vector (one score per candidate, higher is better) or a pairwise model's N x N
    matrix (M[i, j] > M[j, i]: i preferred to j); see :func:`_prefers`."""
    if len(scores) != len(examples):
        raise ValueError(f"got scores for {len(scores)} examples but {len(examples)} examples")
    out = []
    for n, (ex, s) in enumerate(zip(examples, scores)):
        s = np.asarray(s, dtype=float)
        size = len(ex["candidates"])
        if s.shape not in ((size,), (size, size)):
            raise ValueError(f"example {ex.get('id', n)!r}: {s.shape} scores for {size} candidates "
                             f"(one per candidate, or a pair matrix of {size} x {size})")
        if not np.isfinite(s).all():
            raise ValueError(f"example {ex.get('id', n)!r}: scores must be finite, got {s.tolist()}")
        out.append(s)
    return out


def candidate_scores(ex: Mapping[str, Any], key: str = PREF_SCORE) -> np.ndarray:
    """One stored score of every candidate of an example, or a :class:`DataError` naming what lacks it."""
    values = []
    for c in ex["candidates"]:
        if key not in c.get("scores", {}):
            raise DataError(f"example {ex.get('id')!r}: candidate {c.get('model')!r} has no score {key!r} "
                            f"(has {sorted(c.get('scores', {}))})")
        values.append(float(c["scores"][key]))
    return np.array(values)


def _gold_pairs(ex: Mapping[str, Any], gold: str) -> list[tuple[int, int, int]]:
    """(i, j, +1 if i is better / -1 if j is / 0 a tie) for each gold-labelled candidate pair."""
    if gold == "cmp_results":
        index = {c["model"]: k for k, c in enumerate(ex["candidates"])}
        sign = {"A is better": 1, "B is better": -1, "Same good": 0, "Same bad": 0}
        pairs = []
        for key, label in ex.get("cmp_results", {}).items():
            a, b = key.split(",")
            pairs.append((index[a], index[b], sign[label]))
        return pairs
    values = candidate_scores(ex, gold)
    return [(i, j, int(np.sign(values[i] - values[j])))
            for i, j in itertools.combinations(range(len(values)), 2)]


def _prefers(scores: np.ndarray, i: int, j: int) -> float:
    """How much a method prefers candidate i to j: s[i] - s[j] for per-candidate scores, M[i, j] - M[j, i]
    for a pair matrix (a pairwise model's own verdict on that pair, not an aggregate)."""
    return float(scores[i] - scores[j]) if scores.ndim == 1 else float(scores[i, j] - scores[j, i])


def preference_agreement(examples: Sequence[Mapping[str, Any]], scorer_scores: Sequence[Any], *,
                         gold: str = "cmp_results") -> dict[str, float]:
    """How often a method orders a candidate pair as the gold label does.

    ``scorer_scores[k]`` gives one score per candidate of example k (higher = better: a metric, our
    judge's or PairRanker's scores), or a pairwise model's N x N matrix of example k. ``gold="cmp_results"`` reads the examples' pairwise labels (LLMBar's
    gold label, AlpacaEval's derived ones); any other value names a per-candidate score whose order is
    the gold one (``"gpt4_pref"``: a pair counts where GPT-4 judged the two differently against the
    reference). Gold ties ("Same good/bad", equal scores) and method ties (equal scores) are left out
    and counted. Returns ``agreement`` (share of decisive pairs agreed on; chance is 0.5; NaN without
    any), ``n_pairs``, ``n_agree``, ``n_gold_ties``, ``n_method_ties``.
    """
    scores = _check_scores(examples, scorer_scores)
    agree = decisive = gold_ties = method_ties = 0
    for ex, s in zip(examples, scores):
        for i, j, sign in _gold_pairs(ex, gold):
            if sign == 0:
                gold_ties += 1
            elif _prefers(s, i, j) == 0:
                method_ties += 1
            else:
                decisive += 1
                agree += int(np.sign(_prefers(s, i, j))) == sign
    return {"agreement": agree / decisive if decisive else float("nan"), "n_pairs": decisive, "n_agree": agree,
            "n_gold_ties": gold_ties, "n_method_ties": method_ties}


def paired_agreement_gap(examples: Sequence[Mapping[str, Any]], scores_a: Sequence[Any], scores_b: Sequence[Any], *,
                         gold: str = "cmp_results", n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """(gap, CI low, CI high) in points between two methods' agreement with the gold order, on the *same*
    decisive gold pairs: a method's tie counts half (so neither method drops pairs the other keeps), and
    the 95% interval is a percentile bootstrap over examples (prompts), paired."""
    a_scores, b_scores = _check_scores(examples, scores_a), _check_scores(examples, scores_b)
    per_example = []
    for ex, a, b in zip(examples, a_scores, b_scores):
        credit = [tuple(0.5 if _prefers(s, i, j) == 0 else float(np.sign(_prefers(s, i, j)) == sign) for s in (a, b))
                  for i, j, sign in _gold_pairs(ex, gold) if sign != 0]
        per_example.append(np.array(credit).reshape(-1, 2))
    counts = np.array([len(c) for c in per_example], dtype=float)
    diffs = np.array([(c[:, 0] - c[:, 1]).sum() for c in per_example])
    if counts.sum() == 0:
        return float("nan"), float("nan"), float("nan")
    resample = np.random.default_rng(seed).integers(0, len(examples), size=(n_boot, len(examples)))
    boot = 100 * diffs[resample].sum(axis=1) / np.maximum(counts[resample].sum(axis=1), 1)
    return float(100 * diffs.sum() / counts.sum()), float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95% by default); (NaN, NaN) without trials."""
    if trials <= 0:
        return float("nan"), float("nan")
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return centre - half, centre + half


def agreement_table(examples: Sequence[Mapping[str, Any]], methods: Mapping[str, Sequence[Any]], *,
                    gold: str = "cmp_results") -> pd.DataFrame:
    """:func:`preference_agreement` of each method (name -> scores per example) as one table: agreement
    in percent, decisive pairs compared, and the pairs the method could not order (its ties)."""
    rows = {}
    for name, scores in methods.items():
        found = preference_agreement(examples, scores, gold=gold)
        low, high = wilson_interval(found["n_agree"], found["n_pairs"])
        rows[name] = {"agreement %": 100 * found["agreement"], "CI low": 100 * low, "CI high": 100 * high,
                      "pairs": found["n_pairs"], "method ties": found["n_method_ties"]}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "method"
    return table


def _picked_scores(examples: Sequence[Mapping[str, Any]], selections: Sequence[int], key: str) -> np.ndarray:
    """The ``key`` score of each selected candidate, NaN where that candidate has none (an unscored
    model's answer: its quality is unknown, so it counts in no mean)."""
    if len(selections) != len(examples):
        raise ValueError(f"got {len(selections)} selections for {len(examples)} examples")
    if not examples:
        raise ValueError("no examples")
    picked = []
    for n, (ex, k) in enumerate(zip(examples, selections)):
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k < len(ex["candidates"]):
            raise ValueError(f"example {ex.get('id', n)!r}: selection {k!r} is not a candidate index "
                             f"(0..{len(ex['candidates']) - 1})")
        picked.append(float(ex["candidates"][k]["scores"].get(key, np.nan)))
    return np.array(picked)


def win_rate_vs_reference(examples: Sequence[Mapping[str, Any]], selections: Sequence[int], *,
                          key: str = PREF_SCORE, scale: str | ScoreScale = "probability") -> float:
    """The mean ``key`` score of the selected candidates, in ``scale``'s unit: for AlpacaEval's
    ``gpt4_pref`` (a share) the win rate in percent, draws counting half as on the leaderboard; for a
    1-10 score the mean score. Picks of unscored candidates count in neither the sum nor the count."""
    picked = _picked_scores(examples, selections, key)
    if np.isnan(picked).all():
        raise DataError(f"none of the {len(picked)} selected candidates has a score {key!r}")
    return float(scale_of(scale).display(np.nanmean(picked)))


def oracle_selections(examples: Sequence[Mapping[str, Any]], *, key: str = PREF_SCORE) -> list[int]:
    """The candidate with the highest ``key`` score per example (the first on a tie; unscored candidates
    are never chosen unless none is scored): an upper bound that has read the judgments."""
    return [int(np.argmax([c["scores"].get(key, -np.inf) for c in ex["candidates"]])) for ex in examples]


def candidate_win_rates(examples: Sequence[Mapping[str, Any]], *, key: str = PREF_SCORE,
                        scale: str | ScoreScale = "probability") -> pd.Series:
    """Each candidate model's mean ``key`` score on exactly these examples (a win rate in percent for a
    share), best first: the single-model rows beside an ensemble's :func:`win_rate_vs_reference`. A
    model's unscored answers and the examples it does not answer count in none of its means."""
    totals: dict[str, list[float]] = defaultdict(list)
    for ex in examples:
        for c in ex["candidates"]:
            if key in c["scores"]:
                totals[c["model"]].append(float(c["scores"][key]))
    shown = scale_of(scale)
    rates = pd.Series({m: float(shown.display(np.mean(v))) for m, v in totals.items()}, name="win_rate", dtype=float)
    return rates.sort_values(ascending=False, kind="stable")


def word_counts(examples: Sequence[Mapping[str, Any]]) -> list[np.ndarray]:
    """Each candidate's length in words: the selector "longest answer" and a preference baseline
    (GPT-4 and people both tend to prefer the longer of two answers)."""
    return [np.array([len(c["text"].split()) for c in ex["candidates"]], dtype=float) for ex in examples]


def _nanmean_rows(values: np.ndarray) -> np.ndarray:
    """Each resample's mean over its scored picks; NaN for a resample with none (percentiles skip it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values, axis=1)


def win_rate_table(examples: Sequence[Mapping[str, Any]], selections: Mapping[str, Sequence[int]], *,
                   against: str | None = None, n_boot: int = 2000, seed: int = 0,
                   key: str = PREF_SCORE, scale: str | ScoreScale = "probability") -> pd.DataFrame:
    """Each selector's mean ``key`` score in ``scale``'s unit (the AlpacaEval win rate in percent by
    default; a 1-10 score as it is) with a 95% percentile-bootstrap interval over prompts; with
    ``against`` (a selector's name), each one's gap to it, bootstrapped on the same resampled prompts (a
    paired interval: it excludes 0 only when the gap is more than prompt-sampling noise). A pick of an
    unscored candidate counts in no mean (nor its prompt in that gap); a column then says how many."""
    if not selections:
        raise ValueError("no selections")
    if against is not None and against not in selections:
        raise ValueError(f"against={against!r} is not one of the selectors {list(selections)}")
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    shown = scale_of(scale)
    picked = {name: shown.display(_picked_scores(examples, chosen, key)) for name, chosen in selections.items()}
    resample = np.random.default_rng(seed).integers(0, len(examples), size=(n_boot, len(examples)))
    rows = {}
    for name, values in picked.items():
        if np.isnan(values).all():
            raise DataError(f"selector {name!r}: none of its picks has a score {key!r}")
        boot = _nanmean_rows(values[resample])
        row = {shown.unit(key): float(np.nanmean(values)), "CI low": float(np.nanpercentile(boot, 2.5)),
               "CI high": float(np.nanpercentile(boot, 97.5))}
        if against is not None:
            gap = values - picked[against]
            gaps = _nanmean_rows(gap[resample])
            row.update({f"gap to {against} ({shown.gap_unit()})": float(np.nanmean(gap)),
                        "gap CI low": float(np.nanpercentile(gaps, 2.5)), "gap CI high": float(np.nanpercentile(gaps, 97.5))})
        unscored = int(np.isnan(values).sum())
        if unscored:
            row["picks without a score"] = unscored
        rows[name] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "selector"
    table.attrs["prompts"] = len(examples)
    return table


def paired_gap(examples: Sequence[Mapping[str, Any]], selections: Sequence[int], baseline: Sequence[int], *,
               n_boot: int = 2000, seed: int = 0, key: str = PREF_SCORE) -> tuple[float, float, float]:
    """(gap, CI low, CI high) in points of win rate between two selectors on the same prompts, with a
    paired percentile-bootstrap 95% interval (the rows of :func:`win_rate_table`'s gap columns)."""
    table = win_rate_table(examples, {"a": selections, "b": baseline}, against="b", n_boot=n_boot, seed=seed, key=key)
    row = table.loc["a"]
    return float(row["gap to b (pts)"]), float(row["gap CI low"]), float(row["gap CI high"])


def claim(text: str, estimate: float, low: float, high: float, *, threshold: float = 0.0,
          unit: str = "pts") -> dict[str, Any]:
    """One row of a chapter's claims table: the claim holds when ``estimate > threshold``; it holds
    beyond sampling noise when the whole 95% interval does (and fails beyond noise when the whole
    interval is at or below the threshold)."""
    values = (estimate, low, high)
    if any(isinstance(v, float) and math.isnan(v) for v in values):
        verdict = "not measured"
    elif low > threshold:
        verdict = "holds"
    elif high <= threshold:
        verdict = "fails"
    else:
        verdict = "within noise"
    return {"claim": text, "estimate": f"{estimate:+.1f} {unit}" if unit == "pts" else f"{estimate:.1f} {unit}",
            "95% interval": f"[{low:.1f}, {high:.1f}]", "holds (estimate)": bool(estimate > threshold),
            "verdict": verdict}
