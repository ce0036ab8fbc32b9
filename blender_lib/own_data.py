"""Bring your own data: multi-LLM answers and judgments in the layouts people have, as examples.

Two layouts load into the book's example schema (:mod:`blender_lib.data`), ready for every method:

- **FastChat / MT-Bench** (:func:`load_fastchat`): any folder holding ``question.jsonl`` and
  ``model_answer/<model>.jsonl``, optionally ``model_judgment/*.jsonl`` (single-answer scores and
  pairwise verdicts, told apart by their fields) and ``reference_answer/<name>.jsonl``.
- **Long tables** (:func:`load_long_table`): one row per (prompt, model) answer in CSV or JSONL, the
  columns named by the caller, any number of score columns.

Rules, the same in both:

- *One example per prompt and turn.* ``turn=1`` (default) takes each question's first user turn and
  the answers and judgments of that turn. ``turn=k`` takes the k-th user turn as the instruction and
  the earlier user turns as its input; the models' own earlier answers differ per model and are not
  included (the judge read them; the rankers here read one answer).
- *An empty answer is data.* It is kept, marked ``"empty": True`` on its candidate, scored as its judge
  scored it, and ranked by every method like any other answer (it loses where the judge scored it low).
- *Ragged candidate sets are allowed.* A model with no answer to a question is absent from that
  example; a candidate the judge did not score (or rated -1, FastChat's "no rating") has no score
  under the key. Nothing is dropped silently: each absence is listed in ``notes`` with its reason, and
  a prompt is skipped only when fewer than two answers remain.
- *Pairwise verdicts* (FastChat's ``g1_winner`` / ``g2_winner``, the second with the answers swapped):
  both agree -> that winner; they disagree -> a tie (FastChat's "inconsistent"); either ``error`` ->
  no verdict. A tie is stored as "Same good", which every method reads as a tie.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .data import EMPTY, DataError, make_example, validate_examples
from .preferences import TIE, Preference, outcome_label, prompt_key
from .scales import ScoreScale, scale_of

PUBLISHED = "published"  # decoding_method of answers the user brings: how they were decoded is not known
UNRATED = -1  # FastChat's single-answer score when the judge's verdict held no rating
Notes = list[tuple[str, str]]


# -- FastChat / MT-Bench layout ---------------------------------------------------------------------------

def _jsonl(path: Path) -> list[tuple[str, dict]]:
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path.name} line {number}: not JSON ({err.msg})") from err
            if not isinstance(row, dict):
                raise DataError(f"{path.name} line {number}: a JSON object was expected, got {type(row).__name__}")
            rows.append((f"{path.name} line {number}", row))
    return rows


def fastchat_folder(folder: str | Path) -> Path:
    """The folder that holds ``question.jsonl``: ``folder`` itself, or its one subfolder that does
    (FastChat keeps each benchmark in ``data/<bench>/``)."""
    folder = Path(folder)
    if (folder / "question.jsonl").is_file():
        return folder
    inner = sorted(p.parent for p in folder.glob("*/question.jsonl")) if folder.is_dir() else []
    if len(inner) == 1:
        return inner[0]
    found = f"; it has subfolders with one: {[p.name for p in inner]} (pass one of them)" if inner else ""
    raise FileNotFoundError(f"{folder} holds no question.jsonl (FastChat's layout: question.jsonl, model_answer/<model>.jsonl, "
                            f"optionally model_judgment/*.jsonl and reference_answer/<name>.jsonl){found}")


def _answer_turns(path: Path) -> dict[Any, list[str]]:
    out: dict[Any, list[str]] = {}
    for where, row in _jsonl(path):
        choices = row.get("choices")
        if "question_id" not in row or not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise DataError(f"{where}: an answer needs 'question_id' and 'choices': [{{'turns': [...]}}]")
        turns = choices[0].get("turns")
        if not isinstance(turns, list) or not all(isinstance(t, str) for t in turns):
            raise DataError(f"{where}: choices[0].turns must be a list of strings")
        if row["question_id"] in out:
            raise DataError(f"{where}: a second answer to question {row['question_id']!r}")
        out[row["question_id"]] = turns
    return out


def _pair_outcome(g1: Any, g2: Any) -> str | None:
    """'model_1', 'model_2' or 'tie' from FastChat's two verdicts (answers in both orders); None: error."""
    if "error" in (g1, g2) or g1 not in ("model_1", "model_2", "tie") or g2 not in ("model_1", "model_2", "tie"):
        return None
    return g1 if g1 == g2 else "tie"


def _read_judgments(folder: Path, turn: int, notes: Notes) -> tuple[dict[tuple[Any, str], float], dict[Any, dict[str, str]]]:
    """(question, model) -> single score of the turn; question -> {"a,b": cmp label} from pairwise files."""
    singles: dict[tuple[Any, str], float] = {}
    pairs: dict[Any, dict[str, str]] = {}
    labels = {"model_1": "A is better", "model_2": "B is better", "tie": "Same good"}
    for path in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
        for where, row in _jsonl(path):
            if int(row.get("turn", 1)) != turn:
                continue
            qid = row.get("question_id")
            if "score" in row and "model" in row:
                if row["score"] == UNRATED:
                    notes.append((f"{qid}", f"{row['model']}: the judge gave no rating ({where})"))
                    continue
                if isinstance(row["score"], bool) or not isinstance(row["score"], (int, float)) or not math.isfinite(row["score"]):
                    raise DataError(f"{where}: score must be a number, got {row['score']!r}")
                singles[(qid, row["model"])] = float(row["score"])
            elif {"model_1", "model_2", "g1_winner", "g2_winner"} <= set(row):
                outcome = _pair_outcome(row["g1_winner"], row["g2_winner"])
                if outcome is None:
                    notes.append((f"{qid}", f"{row['model_1']} vs {row['model_2']}: the judge erred ({where})"))
                    continue
                pairs.setdefault(qid, {})[f"{row['model_1']},{row['model_2']}"] = labels[outcome]
            else:
                raise DataError(f"{where}: neither a single-answer judgment (model, score) nor a pairwise one "
                                "(model_1, model_2, g1_winner, g2_winner)")
    return singles, pairs


def _reference_texts(folder: Path, reference: str | None, turn: int) -> dict[Any, str]:
    files = sorted(folder.glob("*.jsonl")) if folder.is_dir() else []
    if reference is None:
        return {}
    chosen = [p for p in files if p.stem == reference]
    if not chosen:
        raise FileNotFoundError(f"no reference answers {reference!r} in {folder} (has {[p.stem for p in files]})")
    return {qid: turns[turn - 1] for qid, turns in _answer_turns(chosen[0]).items() if len(turns) >= turn}


def _candidate(model: str, text: str, scores: Mapping[str, float]) -> dict[str, Any]:
    candidate: dict[str, Any] = {"model": model, "decoding_method": PUBLISHED, "text": text, "scores": dict(scores)}
    if not text.strip():
        candidate[EMPTY] = True
    return candidate


def _cmp_among(cmp: Mapping[str, str], present: set[str]) -> dict[str, str]:
    return {key: label for key, label in cmp.items() if set(key.split(",")) <= present}


def load_fastchat(folder: str | Path, *, turn: int = 1, score_key: str = "judge_score", scale: str | ScoreScale = "likert-10",
                  models: Sequence[str] | None = None, reference: str | None = None, source: str | None = None,
                  notes: Notes | None = None) -> list[dict]:
    """Examples from a FastChat-layout folder (see the module docstring for the rules). Single-answer
    scores go to each candidate's ``scores[score_key]`` (checked against ``scale``), pairwise verdicts
    to ``cmp_results``. ``models``: which answer files to read (default: all). ``reference``: the stem
    of a ``reference_answer/`` file to use as each example's reference. ``notes`` collects every
    absence and skip with its reason."""
    if isinstance(turn, bool) or not isinstance(turn, int) or turn < 1:
        raise ValueError(f"turn must be a positive integer, got {turn!r}")
    scale = scale_of(scale)
    root = fastchat_folder(folder)
    source = source or root.name
    answer_files = {p.stem: p for p in sorted((root / "model_answer").glob("*.jsonl"))}
    if not answer_files:
        raise FileNotFoundError(f"{root / 'model_answer'} holds no <model>.jsonl answer file")
    if models is not None:
        unknown = sorted(set(models) - set(answer_files))
        if unknown:
            raise DataError(f"no answer file for {unknown} in {root / 'model_answer'} (has {sorted(answer_files)})")
        answer_files = {m: answer_files[m] for m in models}
    found: Notes = []
    answers = {model: _answer_turns(path) for model, path in answer_files.items()}
    singles, pairs = _read_judgments(root / "model_judgment", turn, found)
    references = _reference_texts(root / "reference_answer", reference, turn)
    examples = []
    for where, question in _jsonl(root / "question.jsonl"):
        qid, turns = question.get("question_id"), question.get("turns")
        if qid is None or not isinstance(turns, list) or not all(isinstance(t, str) for t in turns):
            raise DataError(f"{where}: a question needs 'question_id' and 'turns' (a list of strings)")
        ex_id = f"{source}/{qid}" if turn == 1 else f"{source}/{qid}/turn{turn}"
        if len(turns) < turn:
            found.append((ex_id, f"the question has {len(turns)} turn(s), not {turn}: skipped"))
            continue
        candidates = []
        for model, by_question in answers.items():
            model_turns = by_question.get(qid)
            if model_turns is None or len(model_turns) < turn:
                found.append((ex_id, f"{model}: no answer to turn {turn} (absent from this example)"))
                continue
            score = singles.get((qid, model))
            if score is None:
                found.append((ex_id, f"{model}: no {score_key} (kept, unscored)"))
            if not model_turns[turn - 1].strip():
                found.append((ex_id, f"{model}: empty answer (kept, marked empty)"))
            scores = {} if score is None else {score_key: scale.check(score, f"{ex_id} {model}")}
            candidates.append(_candidate(model, model_turns[turn - 1], scores))
        if len(candidates) < 2:
            found.append((ex_id, f"{len(candidates)} answer(s): skipped (ranking needs two)"))
            continue
        ref = references.get(qid, "")
        category = question.get("category")
        examples.append(make_example(
            id=ex_id, instruction=turns[turn - 1], input="\n\n".join(turns[:turn - 1]), output=ref if ref.strip() else "",
            has_reference=bool(ref.strip()), source=source, tags=[category] if isinstance(category, str) else [],
            candidates=candidates, cmp_results=_cmp_among(pairs.get(qid, {}), {c["model"] for c in candidates}),
            meta={"question_id": qid, "turn": turn, "score_scale": scale.name}))
    if notes is not None:
        notes.extend(found)
    if not examples:
        raise DataError(f"{root}: no question has two answers to turn {turn}")
    return validate_examples(examples)


def write_fastchat(examples: Sequence[Mapping[str, Any]], folder: str | Path, *, score_key: str, judge: str,
                   extra_answers: Mapping[str, Mapping[str, str]] | None = None) -> Path:
    """Examples written in FastChat's layout (one turn each; question ids 1..n in order, the example id
    kept as ``source_id``): ``question.jsonl``, ``model_answer/<model>.jsonl``,
    ``model_judgment/<judge>_single.jsonl`` with each scored candidate's ``score_key``, and
    ``reference_answer/reference.jsonl`` where examples have one. ``extra_answers`` (model -> example id
    -> answer) adds unjudged models' answers. The folder is written afresh; what it held is replaced."""
    folder = Path(folder)
    answers: dict[str, list[dict]] = {}
    questions, judgments, references = [], [], []
    for qid, ex in enumerate(examples, start=1):
        questions.append({"question_id": qid, "category": ex["tags"][0] if ex.get("tags") else "general",
                          "turns": [ex["instruction"]], "source_id": ex["id"]})
        texts = {c["model"]: c["text"] for c in ex["candidates"]}
        for model, by_id in (extra_answers or {}).items():
            if ex["id"] in by_id:
                texts.setdefault(model, by_id[ex["id"]])
        for model, text in texts.items():
            answers.setdefault(model, []).append({"question_id": qid, "model_id": model, "choices": [{"index": 0, "turns": [text]}]})
        judgments += [{"question_id": qid, "model": c["model"], "judge": [judge, "single"], "turn": 1,
                       "score": c["scores"][score_key]} for c in ex["candidates"] if score_key in c["scores"]]
        if ex.get("has_reference", True) and ex["output"].strip():
            references.append({"question_id": qid, "choices": [{"index": 0, "turns": [ex["output"]]}]})
    files = {folder / "question.jsonl": questions, folder / "model_judgment" / f"{judge}_single.jsonl": judgments,
             **{folder / "model_answer" / f"{m}.jsonl": rows for m, rows in answers.items()}}
    if references:
        files[folder / "reference_answer" / "reference.jsonl"] = references
    for stale in folder.glob("**/*.jsonl") if folder.is_dir() else []:
        stale.unlink()
    for path, rows in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return folder


# -- long tables ------------------------------------------------------------------------------------------

def _read_table(path: Path) -> pd.DataFrame:
    if path.suffix == ".csv":
        return pd.read_csv(path, keep_default_na=False, na_values=[""], dtype=object)
    if path.suffix in (".jsonl", ".json"):
        return pd.DataFrame([row for _, row in _jsonl(path)], dtype=object)
    raise DataError(f"{path.name}: a long table must be .csv or .jsonl")


def _number(value: Any, where: str) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or (isinstance(value, str) and not value.strip()):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError) as err:
        raise DataError(f"{where}: score {value!r} is not a number") from err
    if not math.isfinite(number):
        raise DataError(f"{where}: score {value!r} is not finite")
    return number


def load_long_table(path: str | Path, *, prompt: str = "prompt", model: str = "model", answer: str = "answer",
                    scores: Mapping[str, str] | None = None, scale: str | ScoreScale = "float", id: str | None = None,
                    reference: str | None = None, source: str | None = None, notes: Notes | None = None) -> list[dict]:
    """Examples from a table with one row per answer (CSV or JSONL). ``scores`` maps a score key to its
    column (e.g. ``{"gpt4_score": "score"}``); an empty cell is a missing score. Rows are grouped by
    ``id`` (a column) or else by the prompt text; a model answering one prompt twice is an error."""
    path = Path(path)
    table = _read_table(path)
    scale = scale_of(scale)
    scores = dict(scores or {})
    needed = [c for c in (prompt, model, answer, id, reference, *scores.values()) if c is not None]
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise DataError(f"{path.name}: no column {missing} (has {list(table.columns)})")
    found: Notes = []
    source = source or path.stem
    examples = []
    group = id or prompt
    for key, rows in table.groupby(group, sort=False, dropna=False):
        ex_id = f"{source}/{key}" if id else f"{source}/{prompt_key(str(key))[:12]}"
        prompts = rows[prompt].fillna("").astype(str).unique()
        if len(prompts) != 1:
            raise DataError(f"{path.name}: id {key!r} has {len(prompts)} different prompts")
        seen = rows[model].astype(str)
        if seen.duplicated().any():
            raise DataError(f"{path.name}: {sorted(set(seen[seen.duplicated()]))} answer {ex_id} more than once")
        candidates = []
        for row_number, row in rows.iterrows():
            where = f"{path.name} row {row_number + 2 if path.suffix == '.csv' else row_number + 1}"
            text = "" if row[answer] is None or (isinstance(row[answer], float) and math.isnan(row[answer])) else str(row[answer])
            values = {k: _number(row[c], where) for k, c in scores.items()}
            for k, v in values.items():
                if v is None:
                    found.append((ex_id, f"{row[model]}: no {k} (kept, unscored)"))
            if not text.strip():
                found.append((ex_id, f"{row[model]}: empty answer (kept, marked empty)"))
            candidates.append(_candidate(str(row[model]), text,
                                         {k: scale.check(v, where) for k, v in values.items() if v is not None}))
        if len(candidates) < 2:
            found.append((ex_id, f"{len(candidates)} answer(s): skipped (ranking needs two)"))
            continue
        ref = str(rows[reference].iloc[0]) if reference and isinstance(rows[reference].iloc[0], str) else ""
        examples.append(make_example(id=ex_id, instruction=str(prompts[0]), output=ref, has_reference=bool(ref.strip()),
                                     source=source, candidates=candidates, meta={"score_scale": scale.name}))
    if notes is not None:
        notes.extend(found)
    if not examples:
        raise DataError(f"{path.name}: no prompt has two answers")
    return validate_examples(examples)


# -- what the methods read --------------------------------------------------------------------------------

def notes_table(notes: Notes) -> pd.DataFrame:
    """How many absences and skips of each kind, from ``notes`` (the reason without its model name)."""
    kinds = [reason.split(": ", 1)[-1].split(" (")[0] if ": " in reason else reason for _, reason in notes]
    return pd.Series(kinds, dtype=object).value_counts().rename_axis("what").to_frame("count")


def models_in(examples: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every model that answers some example, in order of first appearance."""
    seen: dict[str, None] = {}
    for ex in examples:
        for c in ex["candidates"]:
            seen.setdefault(c["model"], None)
    return list(seen)


def score_matrix(examples: Sequence[Mapping[str, Any]], key: str, models: Sequence[str] | None = None) -> np.ndarray:
    """Examples x models: each model's score, NaN where it did not answer or was not scored (the router's
    rewards on a ragged pool)."""
    models = list(models or models_in(examples))
    column = {m: k for k, m in enumerate(models)}
    out = np.full((len(examples), len(models)), np.nan)
    for n, ex in enumerate(examples):
        for c in ex["candidates"]:
            if key in c["scores"] and c["model"] in column:
                out[n, column[c["model"]]] = c["scores"][key]
    return out


def preferences_from_examples(examples: Sequence[Mapping[str, Any]], key: str, *, source: str | None = None,
                              use_cmp_results: bool = True) -> list[Preference]:
    """Training pairs for the rankers: every two scored candidates of an example (the better one by
    ``key``, or a tie), plus its pairwise verdicts (``cmp_results``) where it has them. Unscored
    candidates make pairs only through a verdict."""
    cmp_label = {"A is better": 1.0, "B is better": 0.0, "Same good": TIE, "Same bad": TIE}
    prefs = []
    for ex in examples:
        key_of, prompt = prompt_key(ex["instruction"]), ex["instruction"]  # what the embedding cache and the folds key on
        by_model = {c["model"]: c for c in ex["candidates"]}
        scored = [c for c in ex["candidates"] if key in c["scores"]]
        for i, a in enumerate(scored):
            for b in scored[i + 1:]:
                prefs.append(Preference(source or ex["source"], f"{ex['id']}:{a['model']}|{b['model']}", key_of, prompt,
                                        a["text"], b["text"], a["model"], b["model"],
                                        outcome_label(a["scores"][key], b["scores"][key])))
        if use_cmp_results:
            for pair, label in ex.get("cmp_results", {}).items():
                first, second = (by_model[m] for m in pair.split(","))
                prefs.append(Preference(source or ex["source"], f"{ex['id']}:{pair}:verdict", key_of, prompt,
                                        first["text"], second["text"], first["model"], second["model"], cmp_label[label]))
    return prefs


def model_table(examples: Sequence[Mapping[str, Any]], key: str, scale: str | ScoreScale) -> pd.DataFrame:
    """Per model: how many prompts it answered, how many of those answers are empty, how many the judge
    scored, and its mean score over them in the scale's unit."""
    from .analysis import candidate_win_rates

    models = models_in(examples)
    rows = {m: {"answers": 0, "empty answers": 0, "scored": 0} for m in models}
    for ex in examples:
        for c in ex["candidates"]:
            row = rows[c["model"]]
            row["answers"] += 1
            row["empty answers"] += int(c.get(EMPTY, False))
            row["scored"] += int(key in c["scores"])
    table = pd.DataFrame.from_dict(rows, orient="index").rename_axis("model")
    table[scale_of(scale).unit(key)] = candidate_win_rates(examples, key=key, scale=scale)
    return table


def compare_selectors(examples: Sequence[Mapping[str, Any]], selections: Mapping[str, Sequence[int]], *, key: str,
                      scale: str | ScoreScale, folds: int, seed: int, n_boot: int = 2000) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``selections`` (held-out picks of trained methods) beside the best single model chosen on the other
    folds (the heads' folds by prompt), a seeded random pick and the oracle, on the same prompts: the
    score table with paired gaps to the best single model (:func:`analysis.win_rate_table`), and the
    share of each method's picks that went to each model (picks of an unscored model count in no mean)."""
    from .analysis import oracle_selections, selections_from_scores, win_rate_table
    from .cross_validation import best_single_selections
    from .selectors import random_scores
    from .reward_model import example_fold

    fold_of = {ex["id"]: example_fold(ex, folds, seed) for ex in examples}
    best, _ = best_single_selections(examples, fold_of, key=key)
    everyone = {"Best single on training folds": best, **selections,
                "Random": selections_from_scores(random_scores(examples, seed)), "Oracle": oracle_selections(examples, key=key)}
    table = win_rate_table(examples, everyone, key=key, scale=scale, against="Best single on training folds", n_boot=n_boot,
                           seed=seed)
    picks = pd.DataFrame({name: pd.Series([ex["candidates"][k]["model"] for ex, k in zip(examples, chosen)]).value_counts()
                          for name, chosen in everyone.items()}).reindex(models_in(examples)).fillna(0).astype(int)
    return table, picks.rename_axis("picks of")


def write_alpaca_eval_sample(root: str | Path, folder: str | Path, *, judged: Sequence[str], unscored: str, n: int,
                             seed: int = 0, skipped: Notes | None = None) -> Path:
    """A public sample in FastChat's layout (:func:`write_fastchat`), for trying the loaders offline:
    ``n`` seeded AlpacaEval prompts where every ``judged`` model has an answer and a verdict, GPT-4's
    verdicts against the reference as single-answer scores (the ``probability`` scale, key
    ``gpt4_pref``), and the answers of ``unscored``, a model with outputs but no verdicts."""
    from . import real_data as rd

    sample = rd.prompt_subset(rd.load_alpaca_eval(root, judged, skipped=[] if skipped is None else skipped), n, seed)
    outputs = rd.alpaca_eval_outputs(root, [unscored])[unscored]
    extra = {unscored: {ex["id"]: outputs[ex["meta"]["alpaca_eval_id"]] for ex in sample
                        if ex["meta"]["alpaca_eval_id"] in outputs}}
    return write_fastchat(sample, folder, score_key=rd.PREF_SCORE, judge="alpaca_eval_gpt4", extra_answers=extra)
