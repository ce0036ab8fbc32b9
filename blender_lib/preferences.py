"""Every pairwise preference the real data implies, in one table, split into folds by prompt.

A :class:`Preference` is two answers to one instruction and which is better: ``label`` is the
probability that the first is better (1 or 0 for a verdict, 0.5 for a tie: ties are kept as ties,
and :func:`decisive` leaves them out). Sources:

- ``alpaca_eval``: GPT-4 compared each model's answer with the reference's (text_davinci_003 for
  AlpacaEval 1): one judged pair per (model, prompt);
- ``alpaca_eval:implied``: two models' answers to the same prompt, ordered through the reference
  (one beat it, the other lost; both won or both lost is a tie). Not judged directly: weight
  ``implied_weight``;
- ``vicuna_bench``: GPT-4's pairwise reviews of the original Vicuna evaluation (two 1-10 scores);
- ``llmbar:<subset>``: LLMBar's gold labels, checked by people.

The fold of a pair is a function of its *prompt* alone (:func:`prompt_key`, the instruction with
whitespace collapsed and case folded), hashed with the seed: the same instruction in two sources
lands in the same fold, and adding a source never moves a prompt to another fold. Evaluating on one
fold and training on the others therefore never trains on an evaluated prompt.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import pandas as pd

from . import real_data as rd
from .data import DataError, read_jsonl

TIE = 0.5


@dataclass(frozen=True)
class Preference:
    """Two answers to one instruction and P(the first is better)."""

    source: str
    pair_id: str
    prompt_key: str
    instruction: str
    first: str
    second: str
    first_model: str
    second_model: str
    label: float
    weight: float = 1.0

    def __post_init__(self) -> None:
        if self.label not in (0.0, TIE, 1.0):
            raise DataError(f"{self.pair_id}: label must be 1 (first better), 0 or 0.5 (a tie), got {self.label!r}")
        if not self.weight > 0:
            raise DataError(f"{self.pair_id}: weight must be positive, got {self.weight!r}")
        if not self.instruction.strip():  # an empty *answer* is data (it usually loses); an empty prompt is not
            raise DataError(f"{self.pair_id}: empty instruction")


def prompt_key(instruction: str) -> str:
    """The fold key of a prompt: a hash of the instruction with whitespace collapsed and case folded."""
    normal = " ".join(instruction.split()).casefold()
    if not normal:
        raise DataError("an empty instruction has no prompt key")
    return hashlib.sha1(normal.encode("utf-8")).hexdigest()[:16]


def outcome_label(a: float, b: float) -> float:
    """The label of a pair from the two answers' scores: 1 first better, 0 second better, 0.5 a tie."""
    return TIE if a == b else float(a > b)


# -- sources ------------------------------------------------------------------------------------------

def alpaca_eval_preferences(root: str | Path | None = None, models: Sequence[str] | None = None, *,
                            annotator: str = rd.ALPACA_ANNOTATOR, implied: bool = True,
                            implied_weight: float = 0.5) -> list[Preference]:
    """AlpacaEval's judged pairs (each model against the reference) and, with ``implied``, every two
    models' answers ordered through the reference. ``models``: None = every model with outputs and
    verdicts; a prompt contributes the models that have a non-empty answer and a verdict there (a
    draw with the reference, 0.5, counts as neither win nor loss and is left out of implied pairs)."""
    examples = []
    skipped: list[tuple[str, str]] = []
    if models is None:
        board = rd.alpaca_eval_models(root, annotator=annotator)
        models = list(board.index[board["has_outputs"] & (board["n_usable"] > 0)])
    chosen = list(models)
    for model in chosen:  # one model at a time: a prompt lacking one model's answer keeps the others'
        examples.append({ex["id"]: ex for ex in rd.load_alpaca_eval(root, [model], annotator=annotator,
                                                                     derive_cmp=False, skipped=skipped)})
    prefs: list[Preference] = []
    ids = sorted({i for per_model in examples for i in per_model}, key=lambda i: int(i.split("/")[1]))
    for ex_id in ids:
        present = [(m, per_model[ex_id]) for m, per_model in zip(chosen, examples) if ex_id in per_model]
        first = present[0][1]
        key, reference = prompt_key(first["instruction"]), first["meta"]["reference_model"]
        answers = []
        for model, ex in present:
            cand = ex["candidates"][0]
            prob = float(cand["scores"][rd.PREF_SCORE])
            answers.append((model, cand["text"], prob))
            if prob in (0.0, 1.0):
                prefs.append(Preference("alpaca_eval", f"{ex_id}/{model}", key, ex["instruction"], cand["text"],
                                        ex["output"], model, reference, prob))
        if implied:
            for (ma, ta, pa), (mb, tb, pb) in combinations([a for a in answers if a[2] in (0.0, 1.0)], 2):
                prefs.append(Preference("alpaca_eval:implied", f"{ex_id}/{ma}/{mb}", key, first["instruction"],
                                        ta, tb, ma, mb, outcome_label(pa, pb), implied_weight))
    return prefs


def llmbar_preferences(root: str | Path | None = None, subsets: Sequence[str] | None = None) -> list[Preference]:
    """LLMBar's gold-labelled pairs (people checked the label), source ``llmbar:<subset>``."""
    prefs = []
    for ex in rd.load_llmbar(root, subsets, skipped=[]):
        first, second = (c["text"] for c in ex["candidates"])
        prefs.append(Preference(f"llmbar:{ex['source']}", ex["id"], prompt_key(ex["instruction"]), ex["instruction"],
                                first, second, "output_1", "output_2", 1.0 if ex["meta"]["label"] == 1 else 0.0))
    return prefs


def vicuna_bench_preferences(root: str | Path | None = None) -> list[Preference]:
    """GPT-4's pairwise reviews of the original Vicuna evaluation (``vicuna_bench/original_eval_table``):
    each review scores two answers 1-10; the higher wins, equal scores are a tie. GPT-3.5's reviews
    (``gpt-3.5-turbo_review_*``) are left out."""
    folder = rd.data_root(root) / "vicuna_bench" / "original_eval_table"
    if not folder.is_dir():
        raise rd.RealDataNotFound(f"{folder} is missing: the original Vicuna evaluation table of lm-sys/FastChat "
                                  f"(fastchat/eval/table/, 2023-05)")
    questions = {q["question_id"]: q["text"] for q in read_jsonl(folder / "question.jsonl")[0]}
    answers = {a["answer_id"]: a for path in sorted((folder / "answer").glob("*.jsonl")) for a in read_jsonl(path)[0]}
    prefs = []
    for path in sorted((folder / "review").rglob("review_*.jsonl")):
        for review in read_jsonl(path)[0]:
            a, b = answers.get(review["answer1_id"]), answers.get(review["answer2_id"])
            scores = review.get("score")
            if a is None or b is None:
                raise DataError(f"{path}: review {review['review_id']} names an answer that no answer file holds")
            if not (isinstance(scores, list) and len(scores) == 2) or -1 in scores:
                continue  # the reviewer's reply could not be parsed upstream (score [-1, -1])
            instruction = questions[review["question_id"]]
            if not a["text"].strip() or not b["text"].strip():
                continue
            prefs.append(Preference("vicuna_bench", f"vicuna_bench/{review['review_id']}", prompt_key(instruction),
                                    instruction, a["text"], b["text"], a["model_id"], b["model_id"],
                                    outcome_label(float(scores[0]), float(scores[1]))))
    return prefs


def all_preferences(root: str | Path | None = None, *, alpaca_models: Sequence[str] | None = None,
                    implied: bool = True) -> list[Preference]:
    """Every source above that the real-data folder holds (a missing dataset is left out, not an error)."""
    prefs: list[Preference] = []
    loaders = {"alpaca_eval": lambda: alpaca_eval_preferences(root, alpaca_models, implied=implied),
               "vicuna_bench": lambda: vicuna_bench_preferences(root),
               "llmbar": lambda: llmbar_preferences(root)}
    for loader in loaders.values():
        try:
            prefs.extend(loader())
        except rd.RealDataNotFound:
            continue
    return prefs


# -- folds by prompt ----------------------------------------------------------------------------------

def prompt_fold(key: str, folds: int, seed: int = 0) -> int:
    """The fold of one prompt key: a seeded hash, stable whatever else is loaded."""
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ValueError(f"folds must be an integer >= 2, got {folds!r}")
    return int(hashlib.sha256(f"{seed}/{key}".encode()).hexdigest(), 16) % folds


def split_by_prompt(prefs: Iterable[Preference], test_fold: int, folds: int, seed: int = 0,
                    ) -> tuple[list[Preference], list[Preference]]:
    """(training pairs, test pairs): the test pairs are those whose prompt falls in ``test_fold``."""
    if not 0 <= test_fold < folds:
        raise ValueError(f"test_fold must be in 0..{folds - 1}, got {test_fold}")
    train, test = [], []
    for pref in prefs:
        (test if prompt_fold(pref.prompt_key, folds, seed) == test_fold else train).append(pref)
    return train, test


def decisive(prefs: Iterable[Preference]) -> list[Preference]:
    """The pairs with a winner (ties left out)."""
    return [p for p in prefs if p.label != TIE]


def length_agreement(prefs: Iterable[Preference]) -> float:
    """How often the longer answer (in words) is the preferred one, over the decisive pairs whose two
    answers differ in length: the baseline a learned ranker must beat."""
    agree = [(len(p.first.split()) > len(p.second.split())) == (p.label == 1.0) for p in decisive(prefs)
             if len(p.first.split()) != len(p.second.split())]
    return float(sum(agree) / len(agree)) if agree else float("nan")


def summary(prefs: Sequence[Preference]) -> pd.DataFrame:
    """Per source: prompts, pairs, decisive pairs, ties, the share of pairs the first answer wins."""
    rows: dict[str, dict[str, float]] = {}
    for source in sorted({p.source for p in prefs}):
        some = [p for p in prefs if p.source == source]
        won = decisive(some)
        rows[source] = {"prompts": len({p.prompt_key for p in some}), "pairs": len(some), "decisive": len(won),
                        "ties": len(some) - len(won),
                        "first wins %": round(100 * sum(p.label for p in won) / len(won), 1) if won else float("nan")}
    return pd.DataFrame.from_dict(rows, orient="index")


def fold_table(prefs: Sequence[Preference], folds: int, seed: int = 0) -> pd.DataFrame:
    """Prompts and pairs per fold and source: shows that each source is spread over every fold."""
    counts: dict[tuple[str, int], int] = {}
    for pref in prefs:
        fold = prompt_fold(pref.prompt_key, folds, seed)
        counts[(pref.source, fold)] = counts.get((pref.source, fold), 0) + 1
    table = pd.Series(counts).unstack(fill_value=0)
    table.columns = [f"fold {c}" for c in table.columns]
    return table


def shared_prompts(prefs: Sequence[Preference]) -> Mapping[str, set[str]]:
    """prompt key -> the sources that hold it (prompts shared by two or more sources)."""
    sources: dict[str, set[str]] = {}
    for pref in prefs:
        sources.setdefault(pref.prompt_key, set()).add(pref.source.split(":")[0])
    return {k: v for k, v in sources.items() if len(v) > 1}
