"""The MixInstruct example: how every module reads one (source, candidate texts, scores, models).

An example is a dict with ``id``, ``instruction``, ``input``, ``output`` (the reference) and
``candidates``: one ``{"model", "text", "scores"}`` per LLM, plus ``cmp_results`` (the judge's
pairwise verdicts) on judged splits. :mod:`blender_lib.data` builds and validates whole splits;
this module is what the methods read through, so they all accept and refuse the same inputs:

- :func:`source_text`: what a ranker or router reads (instruction, then input);
- :func:`check_examples` / :func:`check_text_inputs`: the checked (sources, candidate texts);
- :func:`score_table`: the one score reader, [N candidates, n metrics], higher = better
  (``"gpt_rank"`` reads the judge's verdicts); :func:`metric_quality` makes it scale-free;
- :func:`training_inputs`: the deduplicated, non-empty inputs every trained selector learns from.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import rankdata

from .judge import gpt_rank_scores, ranks_from_scores

GPT_RANK = "gpt_rank"  # the score name that reads the judge's verdicts instead of a stored metric
Scores = list[np.ndarray]  # one float per candidate and example, higher = better


# --------------------------------------------------------------------------------------------
# texts


def source_text(example: Mapping[str, Any]) -> str:
    """The source the ranker reads: instruction, then the input on its own line when present."""
    instruction = (example.get("instruction") or "").strip()
    extra = (example.get("input") or "").strip()
    return f"{instruction}\n{extra}" if extra else instruction


def candidate_text_of(example: Mapping[str, Any], k: int, cand: Any) -> str:
    """A candidate's text; a missing ``text`` field or a non-string is an error naming it (an empty
    string is returned: training drops and counts those, selectors refuse them)."""
    if not isinstance(cand, Mapping) or "text" not in cand:
        fields_ = sorted(cand) if isinstance(cand, Mapping) else type(cand).__name__
        raise ValueError(f"example {example.get('id')!r}, candidate {k} has no 'text' field (it has {fields_})")
    if not isinstance(cand["text"], str):
        raise ValueError(f"example {example.get('id')!r}, candidate {k} ({cand.get('model')}): text must be a "
                         f"string, got {type(cand['text']).__name__}")
    return cand["text"]


def candidate_texts(example: Mapping[str, Any], n: int = 0) -> list[str]:
    """The candidate texts of example ``n``, every one non-empty; an error naming the example otherwise."""
    if not isinstance(example, Mapping):
        raise ValueError(f"example {n} must be a dict, got {type(example).__name__}")
    where = f"example {example.get('id', n)!r}"
    if "candidates" not in example:
        raise ValueError(f"{where} has no 'candidates' field (it has {sorted(example)})")
    candidates = example.get("candidates")
    if not isinstance(candidates, Sequence) or isinstance(candidates, str) or not candidates:
        raise ValueError(f"{where} has no candidates to score")
    texts = []
    for k, cand in enumerate(candidates):
        if not isinstance(cand, Mapping) or "text" not in cand:
            fields_ = sorted(cand) if isinstance(cand, Mapping) else type(cand).__name__
            raise ValueError(f"{where}: candidate {k} has no 'text' field (it has {fields_})")
        text = cand.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"{where}: candidate {k} ({cand.get('model')}) is empty")
        texts.append(text)
    return texts


def check_examples(examples: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """(sources, candidate texts) of valid examples; a clear error naming the example otherwise.

    Every selector calls this, so all of them accept and refuse the same inputs."""
    if isinstance(examples, Mapping):
        raise ValueError("pass a list of examples, not one example")
    sources, candidate_lists = [], []
    for n, ex in enumerate(examples):
        texts = candidate_texts(ex, n)
        source = source_text(ex)
        if not source.strip():
            raise ValueError(f"example {ex.get('id', n)!r}: the instruction is empty (and so is its input)")
        sources.append(source)
        candidate_lists.append(texts)
    return sources, candidate_lists


def check_text_inputs(sources: Sequence[str], candidate_lists: Sequence[Sequence[str]]) -> None:
    """The text-level inputs of a scorer (one source and one non-empty candidate list per input)."""
    for name, value in (("instructions", sources), ("candidate lists", candidate_lists)):
        if isinstance(value, (str, Mapping)) or not isinstance(value, Sequence):
            raise ValueError(f"pass a list of {name}, got a {type(value).__name__}")
    if len(sources) != len(candidate_lists):
        raise ValueError(f"got {len(sources)} instructions but {len(candidate_lists)} candidate lists")
    for n, (source, candidates) in enumerate(zip(sources, candidate_lists)):
        if not isinstance(source, str) or not source.strip():
            raise ValueError(f"instruction {n} is empty")
        if isinstance(candidates, str) or not isinstance(candidates, Sequence) or len(candidates) == 0:
            raise ValueError(f"input {n} needs a list of at least one candidate, got {candidates!r}")
        for k, text in enumerate(candidates):
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"candidate {k} of input {n} is empty")


def example_models(examples: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    """The candidates' model names, the same for every example, or a ValueError naming the first
    example whose order differs: a column of a reward or label array must mean one model."""
    if isinstance(examples, Mapping):
        raise ValueError("pass a list of examples, not one example")
    if not examples:
        raise ValueError("no examples: rewards need at least one query")
    check_examples(examples)
    first = tuple(str(c.get("model")) for c in examples[0]["candidates"])
    if len(set(first)) != len(first):
        raise ValueError(f"example {examples[0].get('id', 0)!r} has repeated model names {list(first)}: a router "
                         f"chooses among distinct models")
    for n, ex in enumerate(examples):
        models = tuple(str(c.get("model")) for c in ex["candidates"])
        if models != first:
            raise ValueError(f"example {ex.get('id', n)!r} lists its candidates' models as {list(models)}, but "
                             f"example {examples[0].get('id', 0)!r} as {list(first)}: every example needs the same "
                             f"models in the same order")
    return first


def data_key(examples: Sequence[Mapping[str, Any]]) -> str:
    """A short hash of what a method reads from examples: ids, sources, references, candidate texts
    and scores (caches of trained models and rewards are keyed by it)."""
    blob = json.dumps([[ex.get("id"), source_text(ex), ex.get("output"),
                        [[c.get("text"), c.get("scores")] for c in ex.get("candidates") or []]] for ex in examples],
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------
# scores: one reader


def _stored_scores(example: Mapping[str, Any], metric: str) -> np.ndarray:
    """One stored metric per candidate; an error naming the candidate whose score is missing or bad."""
    known = sorted({k for c in example.get("candidates") or [] for k in (c.get("scores") or {})})
    if metric not in known:
        raise ValueError(f"unknown metric {metric!r}: the candidates of example {example.get('id')!r} carry "
                         f"{known} (and '{GPT_RANK}' where judged)")
    values = []
    for k, cand in enumerate(example["candidates"]):
        value = (cand.get("scores") or {}).get(metric)
        if value is None:
            raise ValueError(f"example {example.get('id')!r}, candidate {k} ({cand.get('model')}) has no score for "
                             f"{[metric]}; score the candidates first (blender_lib.mixinstruct.score_with_cache)")
        if not math.isfinite(float(value)):
            raise ValueError(f"example {example.get('id')!r}, candidate {k} has a non-finite metric score "
                             f"{metric}={value}")
        values.append(float(value))
    return np.array(values, dtype=float)


def metric_values(example: Mapping[str, Any], metric: str) -> np.ndarray:
    """One value per candidate, higher = better: a stored metric score, or for ``"gpt_rank"`` the
    negative GPT-Rank from the example's judge verdicts (ties share the better rank)."""
    if metric != GPT_RANK:
        return _stored_scores(example, metric)
    cmp_results = example.get("cmp_results")
    if not cmp_results:
        raise ValueError(f"example {example.get('id')!r} has no judge verdicts (cmp_results): '{GPT_RANK}' needs "
                         f"judged examples (the test split)")
    models = [c["model"] for c in example["candidates"]]
    return -ranks_from_scores(gpt_rank_scores(cmp_results, models)).astype(float)


def score_table(example: Mapping[str, Any], metrics: Sequence[str]) -> np.ndarray:
    """[N, n_metrics] of :func:`metric_values`: the one way every module reads an example's scores."""
    if isinstance(metrics, str) or not metrics:
        raise ValueError(f"metrics must be a non-empty list of names, got {metrics!r}")
    return np.column_stack([metric_values(example, m) for m in metrics]).reshape(len(example["candidates"]),
                                                                                 len(metrics))


def quality_from_table(table: np.ndarray) -> np.ndarray:
    """The mean over metric columns of each candidate's normalised rank, (rank - 1) / (N - 1), rank 1
    = worst and ties averaged: in [0, 1], higher = better, whatever each metric's scale."""
    if len(table) == 1:
        return np.ones(1)
    ranks = np.column_stack([rankdata(table[:, k], method="average") for k in range(table.shape[1])])
    return ((ranks - 1) / (len(table) - 1)).mean(axis=1)


def metric_quality(example: Mapping[str, Any], metrics: Sequence[str]) -> np.ndarray:
    """A scale-free quality per candidate (:func:`quality_from_table` of :func:`score_table`): BLEU
    (0-100) and BERTScore (0-1) weigh the same. One candidate gets 1."""
    return quality_from_table(score_table(example, metrics))


def check_scores(examples: Sequence[Mapping[str, Any]], scores: Sequence[np.ndarray]) -> None:
    """A selector's scores: one finite value per candidate of every example."""
    if len(scores) != len(examples):
        raise ValueError(f"got scores for {len(scores)} examples but {len(examples)} examples")
    for n, (ex, s) in enumerate(zip(examples, scores)):
        if np.shape(s) != (len(ex["candidates"]),):
            raise ValueError(f"example {ex.get('id', n)!r} has {len(ex['candidates'])} candidates but its scores "
                             f"have shape {np.shape(s)}")
        if not np.all(np.isfinite(s)):
            raise ValueError(f"example {ex.get('id', n)!r} has non-finite scores {np.asarray(s).tolist()}")


# --------------------------------------------------------------------------------------------
# training inputs: what every trained selector learns from


@dataclass
class TrainingInput:
    """One training input: its source, its distinct non-empty candidate texts, their scores
    ([n texts, n metrics]) and the reference (None when the example has none)."""

    source: str
    texts: list[str]
    scores: np.ndarray
    reference: str | None


def _reference(example: Mapping[str, Any]) -> str | None:
    reference = example.get("output") if example.get("has_reference", True) else None
    return reference if isinstance(reference, str) and reference.strip() else None


def training_inputs(examples: Sequence[Mapping[str, Any]], metrics: Sequence[str], *,
                    what: str) -> tuple[list[TrainingInput], int]:
    """Training inputs and the number skipped. Identical candidate texts are merged (their scores
    differ by nothing: no signal), empty ones dropped, and inputs left with fewer than two candidates
    or with an empty instruction are skipped; one warning, headed by ``what``, counts and names them."""
    inputs, reasons, empty = [], [], 0
    for ex in examples:
        table = score_table(ex, metrics)
        first: dict[str, int] = {}
        for k, cand in enumerate(ex["candidates"]):
            text = candidate_text_of(ex, k, cand)
            if text.strip():
                first.setdefault(text, k)
            else:
                empty += 1
        source = source_text(ex)
        if len(first) < 2 or not source.strip():
            reasons.append(f"{ex.get('id')!r} " + ("has an empty instruction" if not source.strip() else
                                                   f"has {len(first)} distinct non-empty candidate(s)"))
            continue
        inputs.append(TrainingInput(source, list(first), table[list(first.values())], _reference(ex)))
    if not inputs:
        raise ValueError("no training input has two distinct non-empty candidates: nothing to learn from")
    if reasons:
        shown = "; ".join(reasons[:5]) + (f"; ... and {len(reasons) - 5} more" if len(reasons) > 5 else "")
        warnings.warn(f"{what}: skipped {len(reasons)} training input(s): {shown}", stacklevel=3)
    if empty:
        warnings.warn(f"{what}: dropped {empty} empty candidate text(s) from training", stacklevel=3)
    return inputs, len(reasons)
