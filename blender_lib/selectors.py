"""The selectors that read no text, and the one way every selector is evaluated.

A selector turns a list of MixInstruct examples into ``list[np.ndarray]``: one float per
candidate, **higher = better**; ``argmax`` (first of equals) is the selection and the whole vector
the ranking. :func:`evaluate_selection` scores any selector's choices; the trained and model-based
selectors live in :mod:`blender_lib.rerankers` (SimCLS, SummaReranker, LM and reward scorers) and
:mod:`blender_lib.rankers` (PairRanker).

============================  ============================================================
selector                      what it is
============================  ============================================================
:func:`random_scores`         seeded uniform noise (per example id, so a subset keeps its draws)
:func:`single_model_scores`   one-hot on one model; :func:`best_single_model` picks that model
                              on *validation* by the mean of a metric (or GPT-Rank)
:func:`oracle_scores`         the metric itself (it reads the reference), or ``"gpt_rank"``
                              (negative GPT-Rank: reads the judge). An upper bound, not a method
============================  ============================================================

Every selector has a stable **id** beside the label a table shows: results files and chapter 7 key
rows by id, while labels may carry parameters (the model picked, beta, a scorer's model). An id
is ``family`` or ``family:parameter``:

=============================  ==========================================================
id                             selector
=============================  ==========================================================
``random``, ``best_single``    random; the best single model on validation
``oracle:<metric>``            the oracle by a metric or ``gpt_rank``
``reference:<metric>``         a metric's own ranking (Table 3's reference rows)
``lm_scoring``,                MLM/LM-scoring; the pointwise reward (reward model or LM
``reward_model``               stand-in); SimCLS-style; SummaReranker-style
``simcls``, ``summareranker``
``pairranker:<aggregation>``   PairRanker by ``max_logits``, ``max_wins`` or ``bubble``
``pairrm``                     the published PairRM checkpoint
``llm_blender``,               PairRanker top-K + our GenFuser; + a released fuser;
``llm_blender:released``,      the K ablation's fusers (``genfuser:top3``, ``genfuser:random3``)
``genfuser:<inputs>``
``router``, ``rmr``            the ZOOTER router; reward-model ranking
=============================  ==========================================================
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .examples import GPT_RANK, Scores, check_examples, check_scores, metric_values, score_table
from .judge import ranks_from_scores


def evaluate_selection(examples: Sequence[Mapping[str, Any]], scores: Sequence[np.ndarray],
                       metrics: Sequence[str] = ("bertscore",)) -> dict[str, float]:
    """Quality of each example's top-1 (argmax, first of equals) under each metric.

    ``top1_<metric>``: the mean metric score of the chosen candidates; for ``"gpt_rank"`` the mean
    GPT-Rank (positive, lower = better, as the paper reports it). ``top1_mean_metric_rank``: the
    chosen candidate's rank among the N (1 = best, ties share), averaged over metrics and examples."""
    if isinstance(metrics, str) or not metrics:
        raise ValueError(f"metrics must be a non-empty list of names, got {metrics!r}")
    check_scores(examples, scores)
    chosen, ranks = [], []
    for ex, s in zip(examples, scores):
        table = score_table(ex, metrics)
        best = int(np.argmax(s))
        chosen.append(table[best])
        ranks.append(np.mean([ranks_from_scores(table[:, k])[best] for k in range(len(metrics))]))
    result = {"examples": float(len(examples)),
              "top1_mean_metric_rank": float(np.mean(ranks)) if ranks else float("nan")}
    for k, name in enumerate(metrics):
        values = [row[k] for row in chosen]
        mean = float(np.mean(values)) if values else float("nan")
        result[f"top1_{name}"] = -mean if name == GPT_RANK else mean
    return result


# --------------------------------------------------------------------------------------------
# selectors that read no text: random, best single model, oracles


def _example_seed(seed: int, ex_id: Any) -> list[int]:
    digest = hashlib.sha256(str(ex_id).encode()).hexdigest()
    return [int(seed), int(digest[:8], 16)]


def random_scores(examples: Sequence[Mapping[str, Any]], seed: int = 0) -> Scores:
    """Uniform random scores, seeded by (seed, example id): the same example gets the same draw
    whatever else is in the list (examples without an id fall back to their position)."""
    check_examples(examples)
    return [np.random.default_rng(_example_seed(seed, ex.get("id", n))).random(len(ex["candidates"]))
            for n, ex in enumerate(examples)]


def model_means(examples: Sequence[Mapping[str, Any]], by: str = "bertscore") -> dict[str, float]:
    """Each model's mean of a metric over the examples; for ``"gpt_rank"`` its mean GPT-Rank (lower
    = better). Models in first-seen order."""
    sums: dict[str, list[float]] = {}
    for ex in examples:
        values = metric_values(ex, by)
        for cand, value in zip(ex["candidates"], values):
            sums.setdefault(cand["model"], []).append(-value if by == GPT_RANK else value)
    return {model: float(np.mean(v)) for model, v in sums.items()}


def best_single_model(val_examples: Sequence[Mapping[str, Any]], *, by: str) -> str:
    """The model with the best mean ``by`` (a score key, named: there is no default metric) on the
    examples given: pass the *validation* split, never the test split the selection is evaluated on.
    GPT-Rank: the lowest mean rank. Ties: first seen."""
    if not val_examples:
        raise ValueError("best_single_model needs validation examples to choose on")
    check_examples(val_examples)
    means = model_means(val_examples, by)
    sign = -1.0 if by == GPT_RANK else 1.0
    return max(means, key=lambda m: sign * means[m])  # max keeps the first of equals


def single_model_scores(examples: Sequence[Mapping[str, Any]], model: str) -> Scores:
    """One-hot scores that always select ``model`` (its first candidate where it appears twice)."""
    check_examples(examples)
    scores = []
    for n, ex in enumerate(examples):
        models = [c.get("model") for c in ex["candidates"]]
        if model not in models:
            raise ValueError(f"example {ex.get('id', n)!r} has no candidate of model {model!r} (it has {models})")
        s = np.zeros(len(models))
        s[models.index(model)] = 1.0
        scores.append(s)
    return scores


def oracle_scores(examples: Sequence[Mapping[str, Any]], metric: str) -> Scores:
    """The metric itself as the score (it reads the reference): the oracle selection of Table 2.
    ``"gpt_rank"`` scores by negative GPT-Rank (it reads the judge's verdicts)."""
    check_examples(examples)
    return [metric_values(ex, metric) for ex in examples]



# --------------------------------------------------------------------------------------------
# ids and labels

FAMILY_GROUPS: dict[str, str] = {"oracle": "oracle", "reference": "oracle", "pairranker": "PairRanker",
                                 "pairrm": "PairRanker"}  # every other family is a "baseline"
POINTWISE: tuple[str, ...] = ("lm_scoring", "reward_model", "simcls", "summareranker")  # read one candidate at a time


def selector_family(selector_id: str) -> str:
    """The part of an id before its parameter: ``"oracle:bertscore"`` -> ``"oracle"``."""
    if not isinstance(selector_id, str) or not selector_id or selector_id != selector_id.strip():
        raise ValueError(f"a selector id is a non-empty name like 'random' or 'oracle:bertscore', got {selector_id!r}")
    return selector_id.split(":", 1)[0]


def selector_group(selector_id: str) -> str:
    """How Table 2 groups a selector: ``"oracle"``, ``"PairRanker"`` or ``"baseline"``."""
    return FAMILY_GROUPS.get(selector_family(selector_id), "baseline")


def labelled(table: pd.DataFrame, labels: Mapping[str, str]) -> pd.DataFrame:
    """A table indexed by selector ids, shown by their labels; an id without a label is an error."""
    missing = [i for i in table.index if i not in labels]
    if missing:
        raise KeyError(f"no label for selector id(s) {missing}; labels know {list(labels)}")
    return table.rename(index=dict(labels))
