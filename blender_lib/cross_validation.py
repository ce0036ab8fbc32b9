"""Chapter 6's protocol on real LLMs: cross-validated PairRanker and router, and judged candidate pairs.

Folds are over prompts (:func:`assign_folds`; a subset of the examples keeps its folds, so methods
evaluated on a subset and on all prompts use the same split). :func:`cross_validate_pairranker` trains
a PairRanker per fold with GPT-4's verdict as its Q-metric and picks each held-out prompt's answer by
a seeded-order :func:`bubble_selections` pass (pair logits cached by :func:`ranker_pair_logits`);
:func:`cross_validate_router` distils ZOOTER's labels from the verdicts into a router per fold
(tag-enhanced within the training folds); :func:`best_single_selections` is the best single model
chosen on the training folds. :func:`decisive_pairs` and :func:`pair_examples` make the two-candidate
examples that :func:`pair_margins` (a pairwise model), :func:`judge_pair_examples` (our judge) and
:func:`score_reference_metrics` (cached BLEU / ROUGE / BERTScore) score, for
:func:`blender_lib.analysis.agreement_table` to compare with GPT-4 and with LLMBar's people.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import paths, rankers, zooter
from .analysis import candidate_win_rates
from .data import DataError
from .examples import source_text
from .io import JsonlCache
from .judge import judge_examples, judge_prompt, verdict_key
from .metrics import MetricSettings, score_with_cache
from .real_data import PREF_SCORE


# --------------------------------------------------------------------------------------------
# folds over prompts, and the best single model chosen on the training folds


def _example_rng(seed: int, ex_id: Any) -> np.random.Generator:
    """A generator seeded by (seed, example id): an example gets the same draw whatever the list."""
    digest = hashlib.sha256(str(ex_id).encode()).hexdigest()
    return np.random.default_rng([int(seed), int(digest[:8], 16)])


def assign_folds(examples: Sequence[Mapping[str, Any]], folds: int, seed: int = 0) -> dict[str, int]:
    """Cross-validation over prompts: example id -> fold (0 .. folds - 1). A seeded permutation dealt
    round-robin, so fold sizes differ by at most one. A subset of the examples keeps its folds, so
    methods evaluated on a subset and on all prompts use the same training/test split."""
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ValueError(f"folds must be an integer >= 2, got {folds!r}")
    if len(examples) < folds:
        raise ValueError(f"{len(examples)} examples cannot fill {folds} folds")
    ids = [str(ex["id"]) for ex in examples]
    if len(set(ids)) != len(ids):
        raise ValueError("example ids must be unique to assign folds")
    order = np.random.default_rng(seed).permutation(len(ids))
    return {ids[int(k)]: pos % folds for pos, k in enumerate(order)}


def fold_indices(examples: Sequence[Mapping[str, Any]], fold_of: Mapping[str, int]) -> dict[int, list[int]]:
    """Fold -> positions of its examples in ``examples`` (the test positions of that fold); an example
    without a fold is an error naming it."""
    out: dict[int, list[int]] = defaultdict(list)
    for n, ex in enumerate(examples):
        if str(ex["id"]) not in fold_of:
            raise ValueError(f"example {ex['id']!r} has no fold (assign_folds over a list that contains it)")
        out[fold_of[str(ex["id"])]].append(n)
    if len(out) < 2:
        raise ValueError(f"the examples fall in {len(out)} fold(s); cross-validation needs at least 2")
    return dict(sorted(out.items()))


def best_single_selections(examples: Sequence[Mapping[str, Any]], fold_of: Mapping[str, int], *,
                           key: str = PREF_SCORE) -> tuple[list[int], dict[int, str]]:
    """Per example, the candidate of the model with the best mean ``key`` on the *other* folds (the
    best single model as a method: chosen on training prompts only; unscored answers count in no mean);
    also the model per fold. Where that model did not answer an example (a ragged pool), the next
    model by the same ranking that did."""
    folds = fold_indices(examples, fold_of)
    picks = [0] * len(examples)
    chosen: dict[int, str] = {}
    for fold, test in folds.items():
        held_out = set(test)
        ranking = list(candidate_win_rates([ex for n, ex in enumerate(examples) if n not in held_out], key=key).index)
        chosen[fold] = ranking[0]
        for n in test:
            answered = {c["model"]: k for k, c in enumerate(examples[n]["candidates"])}
            model = next((m for m in ranking if m in answered), None)
            if model is None:
                raise DataError(f"example {examples[n].get('id')!r}: none of its models has a {key!r} score on the training folds")
            picks[n] = answered[model]
    return picks, chosen


# --------------------------------------------------------------------------------------------
# cross-validated PairRanker and ZOOTER router


def _candidate_order(seed: int, ex: Mapping[str, Any]) -> np.ndarray:
    return _example_rng(seed, ex.get("id")).permutation(len(ex["candidates"]))


def bubble_selections(examples: Sequence[Mapping[str, Any]], pair_logits: rankers.PairLogits, *,
                      seed: int = 0) -> tuple[list[int], list[int]]:
    """PairRanker's bubble aggregation run for real on each example: one pass over the candidates in a
    seeded random order (per example id), the challenger replacing the incumbent when
    logit(challenger, incumbent) - logit(incumbent, challenger) > 0. N - 1 comparisons, each in both
    orders, so 2(N - 1) model passes per example, against N(N - 1) for max-logits.

    The order is shuffled because a pool listed strongest first would hand the strongest model the
    incumbent's seat: a tie-keeps-incumbent pass would then favour it for free. ``pair_logits``
    maps (source, a, b) triples to the logit that a beats b (:func:`ranker_pair_logits`). Returns the
    winners as indices into each example's own candidate order, and the comparisons used."""
    orders = [_candidate_order(seed, ex) for ex in examples]
    texts = [[ex["candidates"][int(k)]["text"] for k in order] for ex, order in zip(examples, orders)]
    winners, used = rankers.bubble_passes([source_text(ex) for ex in examples], texts, pair_logits)
    return [int(order[w]) for order, w in zip(orders, winners)], used


def ranker_pair_logits(ranker: Any, cache_path: str | Path | None = None, *,
                       batch_size: int = 32) -> rankers.PairLogits:
    """``triples -> logits`` of a PairRanker (:func:`blender_lib.rankers.score_pairs`), kept in a JSONL
    cache when ``cache_path`` is given: keep it inside the ranker's run folder, so it goes with the
    ranker it was computed by."""
    cache = JsonlCache.open(cache_path) if cache_path is not None else None

    def logits(triples: Sequence[tuple[str, str, str]]) -> np.ndarray:
        if cache is None:
            return rankers.score_pairs(ranker, triples, batch_size=batch_size)
        keys = [hashlib.sha256(json.dumps(list(t), ensure_ascii=False).encode()).hexdigest() for t in triples]
        missing = list(dict.fromkeys(k for k in keys if cache.get(k) is None))
        if missing:
            where = {k: t for k, t in zip(keys, triples)}
            fresh = rankers.score_pairs(ranker, [where[k] for k in missing], batch_size=batch_size)
            cache.add_batch([{"key": k, "logit": float(v)} for k, v in zip(missing, fresh)])
        return np.array([cache.get(k)["logit"] for k in keys], dtype=float)  # type: ignore[index]

    return logits


def pair_margins(examples: Sequence[Mapping[str, Any]], pair_logits: rankers.PairLogits) -> list[np.ndarray]:
    """Scores of two-candidate examples (:func:`pair_examples`) from a pairwise model, both orders:
    [m / 2, -m / 2] with m = logit(a, b) - logit(b, a), so
    :func:`blender_lib.analysis.preference_agreement` reads its sign."""
    triples = []
    for ex in examples:
        if len(ex["candidates"]) != 2:
            raise ValueError(f"example {ex.get('id')!r} has {len(ex['candidates'])} candidates; pair margins need 2")
        a, b = (c["text"] for c in ex["candidates"])
        triples += [(source_text(ex), a, b), (source_text(ex), b, a)]
    logits = np.asarray(pair_logits(triples), dtype=float) if triples else np.zeros(0)
    return [np.array([m / 2, -m / 2]) for m in logits[0::2] - logits[1::2]]


@dataclass
class PairRankerCV:
    """Cross-validated PairRanker: every example ranked by the ranker of the folds it was not in."""

    selections: list[int]  # per example: the bubble winner, an index into its candidates
    comparisons: list[int]  # per example: comparisons made (each in both orders)
    pair_scores: list[np.ndarray]  # per requested pair example: pair_margins by its held-out ranker
    reports: dict[int, Any]  # fold -> training.TrainReport
    train_seconds: float  # training or loading, all folds
    rank_seconds: float  # bubble passes and pair margins, all folds (cached logits make reruns fast)


def cross_validate_pairranker(examples: Sequence[Mapping[str, Any]], fold_of: Mapping[str, int], config: Any, *,
                              pairs: Sequence[Mapping[str, Any]] = (), seed: int = 0,
                              root: str | Path | None = None, progress: bool = False) -> PairRankerCV:
    """For each fold: train a PairRanker on the other folds' examples (``rankers.train_or_load``: cached
    by config and data; no validation split, so the last epoch is kept), then pick each held-out
    example's answer by a bubble pass (:func:`bubble_selections`) and score the held-out ``pairs``
    (two-candidate examples from :func:`pair_examples`, matched to their fold by
    ``meta["source_id"]``). Pair logits are cached in each ranker's run folder."""
    folds = fold_indices(examples, fold_of)
    pair_folds = []
    for ex in pairs:
        source_id = (ex.get("meta") or {}).get("source_id")
        if source_id not in fold_of:
            raise ValueError(f"pair {ex.get('id')!r} has no fold: its meta['source_id'] {source_id!r} is not a "
                             f"fold example")
        pair_folds.append(fold_of[source_id])
    selections, comparisons = [0] * len(examples), [0] * len(examples)
    pair_scores: list[np.ndarray] = [np.zeros(2)] * len(pairs)
    reports: dict[int, Any] = {}
    train_seconds = rank_seconds = 0.0
    for fold, test in folds.items():
        held_out = set(test)
        start = time.perf_counter()
        train = [ex for n, ex in enumerate(examples) if n not in held_out]
        ranker, report = rankers.train_or_load(train, [], config, root=root, progress=progress)
        reports[fold] = report
        train_seconds += time.perf_counter() - start
        start = time.perf_counter()
        logits = ranker_pair_logits(ranker, Path(report.out_dir) / f"pair_logits-epoch{report.best_epoch}.jsonl",
                                    batch_size=config.eval_batch_size)
        winners, used = bubble_selections([examples[n] for n in test], logits, seed=seed)
        for n, w, u in zip(test, winners, used):
            selections[n], comparisons[n] = w, u
        mine = [k for k, f in enumerate(pair_folds) if f == fold]
        for k, s in zip(mine, pair_margins([pairs[k] for k in mine], logits)):
            pair_scores[k] = s
        rank_seconds += time.perf_counter() - start
        del ranker
    return PairRankerCV(selections, comparisons, pair_scores, reports, train_seconds, rank_seconds)


@dataclass
class RouterCV:
    """Cross-validated ZOOTER router: every example routed by the router of the folds it was not in."""

    choices: list[int]  # per example: the candidate of the model routed to
    routed_to: list[str]  # per example: that model
    reports: dict[int, Any]  # fold -> training.TrainReport
    seconds: float


def cross_validate_router(examples: Sequence[Mapping[str, Any]], fold_of: Mapping[str, int], rewards: np.ndarray,
                          config: Any, *, temperature: float = 1.0, tags: Sequence[Any] | None = None,
                          beta: float = 0.0, progress: bool = False) -> RouterCV:
    """For each fold: ZOOTER's labels (``zooter.reward_labels`` of ``rewards``, [n, N]) of the other
    folds' queries, tag-enhanced with ``beta`` among those queries only (``zooter.enhance_labels``),
    distilled into a router (``zooter.train_router``, cached; no validation split, so the last epoch
    is kept), which then routes the held-out queries."""
    rewards = np.asarray(rewards, dtype=float)
    if rewards.shape[0] != len(examples):
        raise ValueError(f"got rewards for {rewards.shape[0]} examples but {len(examples)} examples")
    if beta and tags is None:
        raise ValueError("beta > 0 needs tags: enhancement mixes in the mean label of the queries sharing a tag")
    labels = zooter.reward_labels(rewards, temperature)
    choices, routed = [0] * len(examples), [""] * len(examples)
    reports: dict[int, Any] = {}
    start = time.perf_counter()
    for fold, test in fold_indices(examples, fold_of).items():
        held_out = set(test)
        train_idx = [n for n in range(len(examples)) if n not in held_out]
        train_labels = labels[train_idx]
        if beta:
            train_labels = zooter.enhance_labels(train_labels, [tags[n] for n in train_idx], beta)  # type: ignore[index]
        report = zooter.train_router([examples[n] for n in train_idx], [], train_labels, None, config,
                                     progress=progress)
        reports[fold] = report
        router = zooter.RouterModel.from_pretrained(report.best_dir, device=config.device)
        test_examples = [examples[n] for n in test]
        for n, k in zip(test, zooter.routed_choices(router, test_examples)):
            choices[n], routed[n] = k, examples[n]["candidates"][k]["model"]
        del router
    return RouterCV(choices, routed, reports, time.perf_counter() - start)


# --------------------------------------------------------------------------------------------
# candidate pairs with a decisive gold label, judged by our judge or scored by reference metrics


DECISIVE = ("A is better", "B is better")


def decisive_pairs(examples: Sequence[Mapping[str, Any]], n: int | None = None, seed: int = 0) -> list[tuple[int, str, str]]:
    """``(example position, model a, model b)`` of the pairs whose gold label is decisive ("A/B is
    better" in ``cmp_results``: for AlpacaEval, one candidate beat the reference and the other lost),
    in a seeded random order; the first ``n`` of them (None: all)."""
    found = [(k, *key.split(",")) for k, ex in enumerate(examples)
             for key, label in sorted(ex.get("cmp_results", {}).items()) if label in DECISIVE]
    order = np.random.default_rng(seed).permutation(len(found))
    chosen = [found[int(k)] for k in order]
    return chosen if n is None else chosen[:n]  # type: ignore[return-value]


def pair_examples(examples: Sequence[Mapping[str, Any]], pairs: Sequence[tuple[int, str, str]]) -> list[dict]:
    """Two-candidate copies of the examples, one per pair (candidates ``a`` then ``b``, their scores
    kept, ``cmp_results`` = that pair's gold label, ``meta["source_id"]`` = the example's id): what a
    judge or a pairwise model scores, and :func:`blender_lib.analysis.preference_agreement` compares
    with the gold label."""
    out = []
    for k, a, b in pairs:
        ex = examples[k]
        by_model = {c["model"]: c for c in ex["candidates"]}
        missing = [m for m in (a, b) if m not in by_model]
        if missing:
            raise ValueError(f"example {ex.get('id')!r} has no candidate of {missing}")
        label = ex.get("cmp_results", {}).get(f"{a},{b}")
        if label is None:
            raise ValueError(f"example {ex.get('id')!r} has no gold label for the pair {a},{b}")
        out.append({**{f: ex[f] for f in ("instruction", "input", "output", "source", "tags") if f in ex},
                    "id": f"{ex['id']}|{a}|{b}",
                    "candidates": [{**by_model[m], "scores": dict(by_model[m].get("scores", {}))} for m in (a, b)],
                    "cmp_results": {f"{a},{b}": label},
                    "meta": {"source_id": str(ex["id"])},
                    **({"has_reference": ex["has_reference"]} if "has_reference" in ex else {})})
    return out


def verdict_scores(judged: Sequence[Mapping[str, Any]]) -> list[np.ndarray]:
    """A judge's combined verdict on each two-candidate example as scores: "A is better" [1, 0], "B is
    better" [0, 1], a tie ("Same good/bad") or no verdict [0, 0] (a method tie for the agreement)."""
    out = []
    for ex in judged:
        if len(ex["candidates"]) != 2:
            raise ValueError(f"example {ex.get('id')!r} has {len(ex['candidates'])} candidates; verdict scores need 2")
        a, b = (c["model"] for c in ex["candidates"])
        label = ex.get("cmp_results", {}).get(f"{a},{b}")
        out.append(np.array([1.0, 0.0]) if label == "A is better" else np.array([0.0, 1.0]) if label == "B is better"
                   else np.zeros(2))
    return out


@dataclass
class JudgedPairs:
    """Our judge on two-candidate examples: its combined verdicts as scores (:func:`verdict_scores`;
    a tie is a method tie), and where the judge reports option log-probabilities
    (:class:`~blender_lib.judge.LogProbJudge`) a margin that never ties: the log-probability of "A is
    better" minus "B is better", for the first candidate, summed over the two orders (None for a judge
    that answers in text)."""

    verdicts: list[np.ndarray]
    margins: list[np.ndarray] | None
    stats: Any  # judge.JudgeStats: position consistency, seconds spent, cache hits


def _option_logprobs(raw: Any) -> list[float] | None:
    try:
        values = json.loads(raw)["option_logprobs"] if isinstance(raw, str) else None
    except (ValueError, KeyError, TypeError):
        return None
    return [float(v) for v in values] if isinstance(values, list) and len(values) == 4 else None


def judge_pair_examples(examples: Sequence[Mapping[str, Any]], judge: Any, cache_path: str | Path) -> JudgedPairs:
    """Our judge on two-candidate examples, every pair in both orders (``judge.judge_examples`` on
    copies, so the gold labels stay untouched; verdicts cached in ``cache_path``)."""
    copies = [{**ex, "candidates": [dict(c) for c in ex["candidates"]], "cmp_results": {}} for ex in examples]
    for ex in copies:
        if len(ex["candidates"]) != 2:
            raise ValueError(f"example {ex.get('id')!r} has {len(ex['candidates'])} candidates; pairs need 2")
    cache = JsonlCache.open(cache_path)
    # Judged shortest first: the judge batches prompts, and a batch pads to its longest one.
    order = sorted(range(len(copies)), key=lambda k: sum(len(c["text"]) for c in copies[k]["candidates"]))
    stats = judge_examples([copies[k] for k in order], judge, cache, both_orders=True, progress=False)
    margins: list[np.ndarray] | None = []
    for ex in copies:
        a, b = (c["text"] for c in ex["candidates"])
        rows = [cache.get(verdict_key(judge.name, judge_prompt(ex["instruction"], ex.get("input", ""), x, y)))
                for x, y in ((a, b), (b, a))]
        forward, backward = (_option_logprobs(r.get("raw")) if r else None for r in rows)
        if forward is None or backward is None:
            margins = None
            break
        m = (forward[0] - forward[1]) + (backward[1] - backward[0])
        margins.append(np.array([m / 2, -m / 2]))
    return JudgedPairs(verdict_scores(copies), margins, stats)


def score_reference_metrics(examples: Sequence[dict], metrics: Sequence[str] = ("bleu", "rougeL", "bertscore"), *,
                            cache_path: str | Path | None = None, encoder: str = "minilm-l6") -> tuple[int, float]:
    """Fill the candidates' reference-metric scores against each example's ``output`` (BERTScore on
    ``encoder``), computing only what the JSONL cache lacks (default: the user cache's
    ``real_data/scores.jsonl``). Returns (pairs computed, seconds)."""
    path = Path(cache_path) if cache_path is not None else paths.cache_dir() / "real_data" / "scores.jsonl"
    return score_with_cache(examples, MetricSettings(metrics=tuple(metrics), encoder=encoder), JsonlCache.open(path))
