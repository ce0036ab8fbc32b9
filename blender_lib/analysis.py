"""Analyses of a judged MixInstruct: GPT-Rank per model, win rates, top-1 shares, oracles, agreement.

All functions take examples in the MixInstruct schema and return pandas objects, so notebooks
only display them. Tie rule everywhere: GPT-Rank is a competition ranking, so tied candidates
share the better rank; "rank 1" therefore counts every candidate tied for the top.
"""

from __future__ import annotations

import itertools
from typing import Sequence

import numpy as np
import pandas as pd

from .judge import gpt_ranks, ranks_from_scores

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
