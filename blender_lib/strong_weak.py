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

from . import real_data as rd
from .data import DataError

STRONG, WEAK = "gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1"
MT_BENCH_JUDGMENTS = "mt_bench/model_judgment_routellm/gpt-4_single_gpt-4-1106-preview_mixtral-8x7b.jsonl"
MT_BENCH_ROUTER_JUDGMENTS = "mt_bench/model_judgment_routellm/gpt-4_single_martian_unify_routers.jsonl"
COMMERCIAL_ROUTERS = {"Martian": "martian", "Unify AI": "unify"}  # published name -> model name in the judgments


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
    weak_model: str = WEAK
    strong_model: str = STRONG
    # other models' quality on the same queries: comparisons a matrix-factorisation router also learns from
    others: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not (len(self.prompts) == len(self.weak) == len(self.strong)) or not self.prompts:
            raise DataError(f"{self.name}: {len(self.prompts)} prompts, {len(self.weak)} weak and {len(self.strong)} "
                            f"strong qualities: they must be equal and non-empty")
        for what, answers in (("weak", self.weak_answers), ("strong", self.strong_answers)):
            if answers is not None and len(answers) != len(self.prompts):
                raise DataError(f"{self.name}: {len(answers)} {what} answers for {len(self.prompts)} prompts")
        for model, quality in self.others.items():
            if model in (self.weak_model, self.strong_model):
                raise DataError(f"{self.name}: other model {model!r} is the weak or the strong model")
            if len(quality) != len(self.prompts):
                raise DataError(f"{self.name}: other model {model!r} has {len(quality)} qualities for {len(self.prompts)} prompts")

    def examples(self) -> list[dict[str, Any]]:
        """Each query as a two-candidate example (weak first, then strong; their answers where published)."""
        weak_answers = self.weak_answers or [""] * len(self.prompts)
        strong_answers = self.strong_answers or [""] * len(self.prompts)
        return [{"id": f"{self.name}-{n}", "instruction": p,
                 "candidates": [{"model": self.weak_model, "text": weak_answers[n], "scores": {"quality": float(w)}},
                                {"model": self.strong_model, "text": strong_answers[n], "scores": {"quality": float(s)}}]}
                for n, (p, w, s) in enumerate(zip(self.prompts, self.weak, self.strong))]

    def quality_matrix(self) -> tuple[list[str], np.ndarray]:
        """Every model's quality per query (weak, strong, then the others): the MF router's comparisons."""
        models = [self.weak_model, self.strong_model, *self.others]
        return models, np.column_stack([self.weak, self.strong, *self.others.values()])


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


UNPARSED = -1  # FastChat's score when the judge's verdict held no rating; its show_result leaves these out


def _single_scores(path: Path, models: Sequence[str], unparsed: list[tuple[int, str]] | None = None
                   ) -> dict[tuple[int, str], list[float]]:
    """FastChat single-answer judgments: (question id, model) -> the 1-10 score of each judged turn.
    A turn scored -1 (no rating in the verdict) is left out, as FastChat does, and listed in ``unparsed``."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing (RouteLLM's routellm/evals/mt_bench/judgements.jsonl and "
                                "benchmarks/mt-bench/gpt-4_single.jsonl)")
    scores: dict[tuple[int, str], list[float]] = {}
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            record = json.loads(line)
            if record.get("score") == UNPARSED and record.get("model") in models and unparsed is not None:
                unparsed.append((int(record["question_id"]), record["model"]))
                continue
            if record.get("model") not in models or not isinstance(record.get("score"), (int, float)) or record["score"] < 1:
                raise DataError(f"{path.name} line {line_number}: model {record.get('model')!r}, score {record.get('score')!r}")
            scores.setdefault((int(record["question_id"]), record["model"]), []).append(float(record["score"]))
    return scores


def load_mt_bench_scores(root: str | Path) -> StrongWeakData:
    """GPT-4's 1-10 scores of both models on MT-Bench, the mean of a question's two turns as its
    quality; the query is the first turn's text (``mt_bench/question.jsonl``, read by
    :func:`blender_lib.real_data.mt_bench_questions`)."""
    root = Path(root)
    path = root / MT_BENCH_JUDGMENTS
    scores = _single_scores(path, (WEAK, STRONG))
    questions = {int(qid): record.row["turns"][0] for qid, record in rd.mt_bench_questions(root).items()}
    ids = sorted({qid for qid, _ in scores})
    unscored = [qid for qid in ids if (qid, WEAK) not in scores or (qid, STRONG) not in scores or qid not in questions]
    if unscored:
        raise DataError(f"{path.name}: questions {unscored[:5]} lack a score of both models or a question text")
    return StrongWeakData("mt_bench", [questions[q] for q in ids], np.array([np.mean(scores[q, WEAK]) for q in ids]),
                          np.array([np.mean(scores[q, STRONG]) for q in ids]), "GPT-4 score (1-10, mean of two turns)")


def commercial_router_scores(root: str | Path) -> dict[str, dict[str, float]]:
    """The MT-Bench score of the two commercial routers RouteLLM benchmarked (martian, unify), computed
    from their published judgments as FastChat does: the mean over every turn the judge rated."""
    unparsed: list[tuple[int, str]] = []
    scores = _single_scores(Path(root) / MT_BENCH_ROUTER_JUDGMENTS, tuple(COMMERCIAL_ROUTERS.values()), unparsed)
    return {router: {"MT-Bench score": float(np.mean([v for (_, m), turns in scores.items() if m == router for v in turns])),
                     "rated turns": sum(len(turns) for (_, m), turns in scores.items() if m == router),
                     "unrated turns": sum(m == router for _, m in unparsed)}
            for router in COMMERCIAL_ROUTERS.values()}


def beside_commercial_routers(root: str | Path, curves: Mapping[str, Any], published: Any) -> Any:
    """RouteLLM's published MT-Bench scores of the commercial routers (``published``: the paper table,
    indexed by router), the same scores recomputed from their judgments, and each of our routers' MT-Bench
    score read off its curve (``curves``: router -> strong/weak curve) at that router's share of strong calls."""
    from . import routing_metrics as routing

    recomputed = commercial_router_scores(root)
    table = published[["MT-Bench score", "strong calls %", "weak model"]].rename(
        columns={"MT-Bench score": "published MT-Bench score"})
    table.insert(1, "recomputed from the judgments",
                 [recomputed[COMMERCIAL_ROUTERS[name]]["MT-Bench score"] for name in table.index])
    for router, curve in curves.items():
        table[f"{router} at that share"] = [routing.quality_at_share(curve, share / 100) for share in table["strong calls %"]]
    return table


def load_alpaca_eval_pair(root: str | Path, weak: str, strong: str, *, others: Sequence[str] = (),
                          annotator: str | None = None, skipped: list[tuple[str, str]] | None = None) -> StrongWeakData:
    """Two AlpacaEval models as a strong/weak pair: the quality of an answer is GPT-4's verdict against
    the reference answer (1 win, 0.5 draw, 0 loss), and both models' answers are kept (a cascade reads
    the weak one, the token count prices both). ``others`` add their verdicts on the same prompts for the
    MF router; only prompts where every named model has an answer and a verdict are kept (``skipped``
    collects the others with their reasons)."""
    skipped = [] if skipped is None else skipped
    examples = rd.load_alpaca_eval(root, [weak, strong, *others], annotator=annotator or rd.ALPACA_ANNOTATOR, skipped=skipped)
    quality = np.array([[c["scores"][rd.PREF_SCORE] for c in ex["candidates"]] for ex in examples])
    reference = examples[0]["meta"]["reference_model"]
    return StrongWeakData("alpaca_eval", [ex["instruction"] for ex in examples], quality[:, 0], quality[:, 1],
                          f"GPT-4 verdict against {reference} (win 1, draw 0.5, loss 0)",
                          weak_answers=[ex["candidates"][0]["text"] for ex in examples],
                          strong_answers=[ex["candidates"][1]["text"] for ex in examples],
                          weak_model=weak, strong_model=strong,
                          others={m: quality[:, 2 + k] for k, m in enumerate(others)})


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


def mf_router_scores(data: StrongWeakData, embeddings: Any, *, folds: int = 2, seed: int = 0, settings: Any = None,
                     ties: bool = True) -> np.ndarray:
    """RouteLLM's matrix-factorisation router (:func:`frozen_heads.cross_validate_mf_router`, folds by
    prompt), trained on every comparison among the weak, strong and other models: each query's held-out
    P(strong beats weak)."""
    from .frozen_heads import MF_SETTINGS, cross_validate_mf_router

    models, quality = data.quality_matrix()
    routed = cross_validate_mf_router(data.prompts, quality, models, embeddings, folds=folds, seed=seed, ties=ties,
                                      settings=settings or MF_SETTINGS)
    return routed.win_probability(data.strong_model, data.weak_model)


def cascade_confidence(data: StrongWeakData, score_answer: Callable[[str, str], float]) -> np.ndarray:
    """A scorer's reading of each weak answer (higher: keep it); a cascade defers the lowest."""
    if data.weak_answers is None:
        raise ValueError(f"{data.name} has no published weak answers: a cascade needs to read them")
    return np.array([score_answer(p, a) for p, a in zip(data.prompts, data.weak_answers)])


def held_out_cascade_confidence(data: StrongWeakData, prefs: Sequence[Any], embeddings: Any, *, folds: int = 2,
                                seed: int = 0, settings: Any = None) -> np.ndarray:
    """The reward model's held-out reading of each weak answer, for data whose prompts the preferences
    judge (AlpacaEval's): cross-validated by prompt (:func:`reward_model.cross_validate_reward_model`),
    so no query's answer is scored by a model trained on that query."""
    from .reward_model import TrainingSettings, cross_validate_reward_model

    if data.weak_answers is None:
        raise ValueError(f"{data.name} has no published weak answers: a cascade needs to read them")
    cv = cross_validate_reward_model(data.examples(), prefs, embeddings, folds=folds, seed=seed,
                                     settings=settings or TrainingSettings(seed=seed), score_key="quality", features="text")
    return np.array([scores[0] for scores in cv.scores])


def mean_answer_tokens(data: StrongWeakData, tokenizer: str = "smollm2-135m-instruct") -> dict[str, float]:
    """Each model's mean answer length in ``tokenizer``'s tokens (a proxy: each API bills in its own)."""
    from .models import token_lengths

    if data.weak_answers is None or data.strong_answers is None:
        raise ValueError(f"{data.name} has no published answers to count")
    return {model: float(np.mean(token_lengths(answers, tokenizer)))
            for model, answers in ((data.weak_model, data.weak_answers), (data.strong_model, data.strong_answers))}


def router_scores(data: StrongWeakData, routers: Mapping[str, Callable[[StrongWeakData], np.ndarray]]) -> dict[str, np.ndarray]:
    return {name: np.asarray(make(data), dtype=float) for name, make in routers.items()}


def exclude_prompts(prefs: Sequence[Any], prompts: Sequence[str]) -> list[Any]:
    """Preferences whose prompt is none of ``prompts`` (by :func:`preferences.prompt_key`): a reward
    model that scores these queries must not have trained on them (LLMBar reuses MT-Bench's)."""
    from .preferences import prompt_key

    held = {prompt_key(p) for p in prompts}
    return [p for p in prefs if p.prompt_key not in held]


@dataclass
class PricedRouting:
    """Routers and a cascade on one dataset in dollars: each one's (cost, quality) points, hulls and AIQ."""

    tokens: dict[str, float]  # mean answer tokens per model
    weak_cost: float  # US$ per 1,000 queries answered by the weak model alone
    strong_cost: float
    points: Any
    hulls: Any
    aiq: Any


def priced_routing(data: StrongWeakData, curves: Mapping[str, Any], prices_per_million_tokens: Mapping[str, float], *,
                   cascades: Sequence[str] = ()) -> PricedRouting:
    """Each router's curve priced per 1,000 queries from the models' mean answer tokens and a price table
    ($ per million output tokens); the ``cascades`` among them (their curves: deferring the least
    confident weak answers first) pay the weak call on every query and the strong one on those they
    defer. AIQ over [weak alone, strong alone]."""
    from . import routing_metrics as routing

    tokens = mean_answer_tokens(data)
    weak_cost, strong_cost = (routing.dollar_cost({m: 1000 * tokens[m]}, prices_per_million_tokens)
                              for m in (data.weak_model, data.strong_model))
    points = routing.cost_quality_points(curves, weak_cost=weak_cost, strong_cost=strong_cost, deferral=list(cascades))
    return PricedRouting(tokens, weak_cost, strong_cost, points, routing.hulls_by_router(points),
                         routing.aiq_table(points, (weak_cost, strong_cost)))


LEDGER_COLUMNS = ("LLM calls / query", "scorer passes / query", "generated tokens / query", "$ / 1k queries", "quality")


def ledger(data: StrongWeakData, curves: Mapping[str, Any], priced: PricedRouting, *, share: float,
           cascades: Sequence[str] = (), scorer_free: Sequence[str] = (), leave_out: Sequence[str] = ()) -> Any:
    """Each router at one share of strong calls (a cascade at that share of deferrals), and each model
    alone, in the units a user pays: LLM calls, scorer passes (the router or the cascade's reward
    model; none for ``scorer_free``, e.g. a random router), generated tokens and dollars per query,
    beside the quality reached (read off the curves, linearly interpolated). ``leave_out``: curves that
    are no method to pay for (an oracle that reads both qualities)."""
    import pandas as pd

    from . import routing_metrics as routing

    weak_tokens, strong_tokens = priced.tokens[data.weak_model], priced.tokens[data.strong_model]
    rows = {f"{data.weak_model.split('/')[-1]} alone": (1.0, 0.0, weak_tokens, priced.weak_cost, float(data.weak.mean())),
            f"{data.strong_model} alone": (1.0, 0.0, strong_tokens, priced.strong_cost, float(data.strong.mean()))}
    for name, curve in curves.items():
        if name in leave_out:
            continue
        quality = routing.quality_at_share(curve, share)
        scorer = 0.0 if name in scorer_free else 1.0
        if name in cascades:  # the weak model answers every query, the strong one the deferred share
            rows[f"{name}, {share:.0%} deferred"] = (1.0 + share, scorer, weak_tokens + share * strong_tokens,
                                                     priced.weak_cost + share * priced.strong_cost, quality)
        else:
            rows[f"{name}, {share:.0%} strong"] = (1.0, scorer, (1 - share) * weak_tokens + share * strong_tokens,
                                                   routing.router_cost(share, weak_cost=priced.weak_cost,
                                                                       strong_cost=priced.strong_cost), quality)
    return pd.DataFrame.from_dict(rows, orient="index", columns=list(LEDGER_COLUMNS)).rename_axis("method")
