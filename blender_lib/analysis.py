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
