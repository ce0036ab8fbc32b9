"""What chapters 3 to 5 share before their method runs: the built splits, the judged split every
method is evaluated on, and the selectors every method is compared with (best single, random, oracles).

One call, :func:`load_evaluation`, replaces the prelude each method chapter used to repeat, so the
three chapters evaluate on the same examples against the same baselines by construction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import selectors
from .analysis import judged, model_summary, selections_from_scores
from .examples import GPT_RANK, Scores, example_models
from .mixinstruct import load_build


@dataclass(frozen=True)
class Evaluation:
    """A loaded build and what every method chapter compares against, keyed by selector id.

    ``test`` is the *judged* part of the evaluation split; ``best_model`` was chosen on ``val``;
    ``top_models`` is the best model on ``test`` by GPT-Rank and by the quality metric (the
    "≥ top model" columns of Table 2); ``baseline_scores`` holds ``best_single``, ``random`` and
    ``oracle:<metric>`` in that order, with their display labels in ``baseline_labels``."""

    splits: dict[str, list[dict]]
    record: dict[str, Any]
    eval_split: str
    test: list[dict]
    models: list[str]
    best_model: str
    top_models: dict[str, str]
    baseline_scores: dict[str, Scores]
    baseline_labels: dict[str, str]

    @property
    def train(self) -> list[dict]:
        return self.splits["train"]

    @property
    def val(self) -> list[dict]:
        return self.splits["val"]

    def baseline_selections(self) -> dict[str, list[int]]:
        """Each baseline's pick per test example (argmax, first of equals), keyed by id."""
        return {name: selections_from_scores(scores) for name, scores in self.baseline_scores.items()}


def top_models(examples: Sequence[dict], quality_metric: str) -> dict[str, str]:
    """The model with the best mean GPT-Rank and the one with the best mean ``quality_metric`` on
    judged examples (ties: the better GPT-Rank first)."""
    summary = model_summary(examples, [quality_metric])
    return {GPT_RANK: str(summary[GPT_RANK].idxmin()), quality_metric: str(summary[quality_metric].idxmax())}


def load_evaluation(eval_split: str = "test", *, seed: int, quality_metric: str,
                    oracle_metrics: Sequence[str] | None = None, out_dir: Path | None = None) -> Evaluation:
    """Load the build (:func:`blender_lib.mixinstruct.load_build`), keep the judged examples of
    ``eval_split``, and score the baselines on them: the best single model chosen on validation by
    ``quality_metric``, seeded random, and one oracle per ``oracle_metrics`` (default: the quality
    metric; a metric name or ``"gpt_rank"``)."""
    splits, record = load_build(out_dir)
    for name in ("train", "val", eval_split):
        if name not in splits:
            raise ValueError(f"the build has no {name!r} split (it has {sorted(splits)})")
    test = judged(splits[eval_split])
    if not test:
        raise ValueError(f"the {eval_split!r} split has no judged examples: evaluate on the split chapter 1 judged "
                         f"(its judge_splits)")
    if isinstance(oracle_metrics, str) or (oracle_metrics is not None and not oracle_metrics):
        raise ValueError(f"oracle_metrics must be a non-empty list of metric names, got {oracle_metrics!r}")
    oracle_metrics = [quality_metric] if oracle_metrics is None else list(oracle_metrics)
    best_model = selectors.best_single_model(splits["val"], by=quality_metric)
    scores: dict[str, Scores] = {"best_single": selectors.single_model_scores(test, best_model),
                                 "random": selectors.random_scores(test, seed)}
    labels = {"best_single": f"Best single on val ({best_model})", "random": "Random"}
    for metric in oracle_metrics:
        scores[f"oracle:{metric}"] = selectors.oracle_scores(test, metric)
        labels[f"oracle:{metric}"] = f"Oracle ({metric})"
    return Evaluation(splits=splits, record=record, eval_split=eval_split, test=test, models=list(example_models(test)),
                      best_model=best_model, top_models=top_models(test, quality_metric),
                      baseline_scores=scores, baseline_labels=labels)
