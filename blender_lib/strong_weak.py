"""Strong/weak routing data (RouteLLM's) and the routers that score its queries.

RouteLLM published, for a strong model (gpt-4-1106-preview) and a weak one (Mixtral-8x7B-Instruct),
each model's correctness on GSM8K and MMLU and GPT-4's 1-10 scores of both on MT-Bench. Each loader
returns a :class:`StrongWeakData`: the queries, each model's quality per query, the weak model's
answers where they were published (GSM8K), and the unit of the quality. The routers of
:func:`router_scores` give every query a score (higher: send it to the strong model), which
:mod:`blender_lib.routing_metrics` turns into curves, APGR, CPT and AIQ.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .data import DataError

STRONG, WEAK = "gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1"
MT_BENCH_JUDGMENTS = "mt_bench/model_judgment_routellm/gpt-4_single_gpt-4-1106-preview_mixtral-8x7b.jsonl"


@dataclass
class StrongWeakData:
    name: str
    prompts: list[str]
    weak: np.ndarray  # quality of the weak model's answer, per query
    strong: np.ndarray
    unit: str  # what a quality value means
    weak_answers: list[str] | None = None
    strong_answers: list[str] | None = None
    tags: list[str] = field(default_factory=list)  # e.g. the MMLU subject of each query

    def __post_init__(self) -> None:
        if not (len(self.prompts) == len(self.weak) == len(self.strong)) or not self.prompts:
            raise DataError(f"{self.name}: {len(self.prompts)} prompts, {len(self.weak)} weak and {len(self.strong)} "
                            f"strong qualities: they must be equal and non-empty")
        if self.weak_answers is not None and len(self.weak_answers) != len(self.prompts):
            raise DataError(f"{self.name}: {len(self.weak_answers)} weak answers for {len(self.prompts)} prompts")

    def examples(self) -> list[dict[str, Any]]:
        """Each query as a two-candidate example (weak first, then strong) for the router head."""
        return [{"id": f"{self.name}-{n}", "instruction": p,
                 "candidates": [{"model": WEAK, "text": "", "scores": {"quality": float(w)}},
                                {"model": STRONG, "text": "", "scores": {"quality": float(s)}}]}
                for n, (p, w, s) in enumerate(zip(self.prompts, self.weak, self.strong))]


def _boolean(value: str, where: str) -> float:
    if value not in ("True", "False"):
        raise DataError(f"{where}: expected True or False, got {value!r}")
    return float(value == "True")


def _read_correctness(path: Path, *, with_answers: bool) -> tuple[list[str], list[float], list[float], list[tuple[str, str]]]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing (RouteLLM's routellm/evals data: lm-sys/RouteLLM on GitHub)")
    prompts, weak, strong, answers = [], [], [], []
    with path.open(newline="", encoding="utf-8") as handle:
        for row_number, row in enumerate(csv.DictReader(handle), start=2):
            where = f"{path.name} row {row_number}"
            missing = [c for c in ("prompt", WEAK, STRONG) + ((f"{WEAK}_response", f"{STRONG}_response") if with_answers else ())
                       if c not in row]
            if missing:
                raise DataError(f"{where}: no column {missing}")
            prompts.append(row["prompt"])
            weak.append(_boolean(row[WEAK], where))
            strong.append(_boolean(row[STRONG], where))
            if with_answers:
                answers.append((row[f"{WEAK}_response"], row[f"{STRONG}_response"]))
    return prompts, weak, strong, answers


def load_gsm8k(root: str | Path) -> StrongWeakData:
    prompts, weak, strong, answers = _read_correctness(Path(root) / "routellm" / "gsm8k_responses.csv", with_answers=True)
    return StrongWeakData("gsm8k", prompts, np.array(weak), np.array(strong), "correct (share)",
                          weak_answers=[w for w, _ in answers], strong_answers=[s for _, s in answers])


def load_mmlu(root: str | Path, n: int | None = None, seed: int = 0) -> StrongWeakData:
    """Every MMLU subject's questions (or a seeded sample of ``n`` of them), the subject as the tag."""
    files = sorted((Path(root) / "routellm" / "mmlu_responses").glob("mmlu_*.csv"))
    if not files:
        raise FileNotFoundError(f"{Path(root) / 'routellm' / 'mmlu_responses'} holds no mmlu_<subject>.csv")
    prompts, weak, strong, tags = [], [], [], []
    for path in files:
        p, w, s, _ = _read_correctness(path, with_answers=False)
        prompts += p
        weak += w
        strong += s
        tags += [path.stem.removeprefix("mmlu_")] * len(p)
    keep = np.arange(len(prompts))
    if n is not None and n < len(prompts):
        keep = np.sort(np.random.default_rng(seed).choice(len(prompts), size=n, replace=False))
    return StrongWeakData("mmlu", [prompts[k] for k in keep], np.array(weak)[keep], np.array(strong)[keep], "correct (share)",
                          tags=[tags[k] for k in keep])


def load_mt_bench_scores(root: str | Path) -> StrongWeakData:
    """GPT-4's 1-10 scores of both models on MT-Bench, the mean of a question's two turns as its
    quality; the query is the first turn's text (``mt_bench/question.jsonl``)."""
    root = Path(root)
    path = root / MT_BENCH_JUDGMENTS
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing (RouteLLM's routellm/evals/mt_bench/judgements.jsonl)")
    scores: dict[tuple[int, str], list[float]] = {}
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            record = json.loads(line)
            if record.get("model") not in (WEAK, STRONG) or not isinstance(record.get("score"), (int, float)) or record["score"] < 1:
                raise DataError(f"{path.name} line {line_number}: model {record.get('model')!r}, score {record.get('score')!r}")
            scores.setdefault((int(record["question_id"]), record["model"]), []).append(float(record["score"]))
    questions = {}
    with (root / "mt_bench" / "question.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            q = json.loads(line)
            questions[int(q["question_id"])] = q["turns"][0]
    ids = sorted({qid for qid, _ in scores})
    unscored = [qid for qid in ids if (qid, WEAK) not in scores or (qid, STRONG) not in scores or qid not in questions]
    if unscored:
        raise DataError(f"{path.name}: questions {unscored[:5]} lack a score of both models or a question text")
    return StrongWeakData("mt_bench", [questions[q] for q in ids], np.array([np.mean(scores[q, WEAK]) for q in ids]),
                          np.array([np.mean(scores[q, STRONG]) for q in ids]), "GPT-4 score (1-10, mean of two turns)")


# -- routers that score queries ------------------------------------------------------------------------

def random_router(data: StrongWeakData, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(len(data.prompts))


def oracle_router(data: StrongWeakData) -> np.ndarray:
    """The gain of the strong model on each query: a ceiling, since it reads both qualities."""
    return data.strong - data.weak


def router_head_scores(data: StrongWeakData, embeddings: Any, *, folds: int = 2, seed: int = 0,
                       settings: Any = None, temperature: float = 1.0) -> np.ndarray:
    """ZOOTER's router on the two models (:func:`frozen_heads.cross_validate_router_head`, folds by
    prompt): each query's held-out probability of the strong model."""
    from .frozen_heads import ROUTER_SETTINGS, cross_validate_router_head

    routed = cross_validate_router_head(data.examples(), np.stack([data.weak, data.strong], axis=1), embeddings, folds=folds,
                                        seed=seed, temperature=temperature, settings=settings or ROUTER_SETTINGS)
    return routed.probabilities[:, 1]


def cascade_confidence(data: StrongWeakData, score_answer: Callable[[str, str], float]) -> np.ndarray:
    """A scorer's reading of each weak answer (higher: keep it); a cascade defers the lowest."""
    if data.weak_answers is None:
        raise ValueError(f"{data.name} has no published weak answers: a cascade needs to read them")
    return np.array([score_answer(p, a) for p, a in zip(data.prompts, data.weak_answers)])


def mean_answer_tokens(data: StrongWeakData, tokenizer: str = "smollm2-135m-instruct") -> dict[str, float]:
    """Each model's mean answer length in ``tokenizer``'s tokens (a proxy: each API bills in its own)."""
    from .models import token_lengths

    if data.weak_answers is None or data.strong_answers is None:
        raise ValueError(f"{data.name} has no published answers to count")
    return {model: float(np.mean(token_lengths(answers, tokenizer)))
            for model, answers in ((WEAK, data.weak_answers), (STRONG, data.strong_answers))}


def router_scores(data: StrongWeakData, routers: Mapping[str, Callable[[StrongWeakData], np.ndarray]]) -> dict[str, np.ndarray]:
    return {name: np.asarray(make(data), dtype=float) for name, make in routers.items()}


def exclude_prompts(prefs: Sequence[Any], prompts: Sequence[str]) -> list[Any]:
    """Preferences whose prompt is none of ``prompts`` (by :func:`preferences.prompt_key`): a reward
    model that scores these queries must not have trained on them (LLMBar reuses MT-Bench's)."""
    from .preferences import prompt_key

    held = {prompt_key(p) for p in prompts}
    return [p for p in prefs if p.prompt_key not in held]
