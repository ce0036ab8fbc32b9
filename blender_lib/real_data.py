"""Loading the real-LLM datasets (AlpacaEval, MT-Bench, FLASK, LLMBar) as MixInstruct examples: loaders only.

The "real" profile measures our rankers, judges and routers on answers that real LLMs wrote and that
GPT-4 (AlpacaEval) or people (LLMBar) judged. The data is public but third-party, so it is never
copied into this repository: the loaders read a local folder laid out like ``../shared/data`` (see
:func:`data_root`)::

    alpaca_eval/model_outputs_wide_57models.jsonl   805 prompts x 57 models' outputs
    alpaca_eval/annotations_compact.jsonl           GPT-4 preferences of each model vs a reference
    alpaca_eval/leaderboards/*__<annotator>_leaderboard.csv   the published win rates
    mt_bench/question.jsonl, model_answer/<model>.jsonl, reference_answer/gpt-4.jsonl
    flask/evaluation_set/flask_evaluation.jsonl (and flask_hard_evaluation.jsonl), model_output/<model>.jsonl
    llmbar/<subset>.json                            pairs with a gold label 1 or 2

=================================  ================================================================
loader                             examples
=================================  ================================================================
:func:`load_alpaca_eval`           one per prompt; candidates = the chosen models, ``output`` = the
                                   reference model's output; ``scores["gpt4_pref"]`` = P(model beats
                                   the reference) from GPT-4; ``cmp_results`` derived from the two
                                   outcomes against the reference
:func:`load_mt_bench`              one per question (one turn); candidates = the models' answers;
                                   reference = GPT-4's reference answer where there is one
:func:`load_flask`                 one per instruction; tags ``skill:<name>``, ``domain:<name>``,
                                   ``difficulty:<level>`` (ZOOTER's tag enhancement reads them)
:func:`load_llmbar`                one per pair; candidates ``output_1``/``output_2``; ``cmp_results``
                                   from the gold label; no reference
=================================  ================================================================

Skips are never silent: a prompt that cannot become a valid example (a chosen model without output or
judgment, an empty text) is left out with its reason, collected in the ``skipped`` list the caller
passes, or else reported in one warning with the count per reason. Every example that comes back
passes :func:`blender_lib.data.validate_example`.

:func:`alpaca_eval_models` and :func:`suggested_alpaca_pool` choose a pool of AlpacaEval models;
:func:`mt_bench_questions` is the one reader of MT-Bench's questions (:mod:`blender_lib.strong_weak`
reads them too); :func:`prompt_subset` and :func:`llmbar_sample` draw seeded samples. What is computed
on the loaded examples lives elsewhere: win rates, agreement and intervals in
:mod:`blender_lib.analysis`, chapter 6's cross-validation protocol in :mod:`blender_lib.cross_validation`.
"""

from __future__ import annotations

import functools
import itertools
import math
import os
import warnings
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import paths
from .data import DataError, Record, make_example, read_records, seeded_rows, validate_examples

SHARED_DATA_ENV_VAR = paths.SHARED_DATA_ENV_VAR
PREF_SCORE = "gpt4_pref"  # candidate score: P(candidate beats the reference) by the GPT-4 annotator
PUBLISHED = "published"  # decoding_method of outputs taken from a published benchmark

# AlpacaEval 1: GPT-4 (gpt-4-0314) judges each model against text_davinci_003, one discrete verdict per
# prompt. 42,665 annotations of 52 models; 24 of them have their outputs in the wide file, win rates
# from 15% (text_davinci_001) to 98% (gpt4_1106_preview): a wide spread of strength. AlpacaEval 2
# ("weighted_alpaca_eval_gpt4_turbo" vs gpt4_1106_preview, 46,680 rows, 29 models in the wide file)
# gives logprob-weighted preferences but squeezes the same models into 2%-17%.
ALPACA_ANNOTATOR = "alpaca_eval_gpt4"
ALPACA_WIDE_FILE = "model_outputs_wide_57models.jsonl"
ALPACA_ANNOTATIONS_FILE = "annotations_compact.jsonl"

HOW_TO_GET = {
    "alpaca_eval": "AlpacaEval: tatsu-lab/alpaca_eval on GitHub (results/<model>/model_outputs.json and "
                   "results/<model>/<annotator>/annotations.json) or the tatsu-lab/alpaca_eval dataset on the "
                   "Hugging Face hub",
    "mt_bench": "MT-Bench: lm-sys/FastChat on GitHub, fastchat/llm_judge/data/mt_bench/ (question.jsonl, "
                "model_answer/, reference_answer/)",
    "flask": "FLASK: kaistAI/FLASK on GitHub (evaluation_set/, model_output/outputs/)",
    "llmbar": "LLMBar: princeton-nlp/LLMBar on GitHub (Dataset/**/dataset.json)",
}


class RealDataNotFound(FileNotFoundError):
    """The real-data folder (or a file in it) is absent; the message says where to get the data."""


FETCH_COMMAND = ".venv/bin/blender-book fetch-data"


def _how_to_get(*datasets: str) -> str:
    names = datasets or tuple(HOW_TO_GET)
    sources = "\n  ".join(HOW_TO_GET[name] for name in names)
    return (f"Where there is a network, `{FETCH_COMMAND}` downloads it into {paths.fetched_data_dir()} (found "
            f"there from then on); or set ${SHARED_DATA_ENV_VAR} (or the chapter's data_root parameter) to a folder "
            f"laid out like ../shared/data (alpaca_eval/, mt_bench/, flask/, llmbar/). The data is public:\n  {sources}")


# --------------------------------------------------------------------------------------------
# where the data lives, and reading it once


def find_data_root() -> Path | None:
    """The real-data folder found without being named: ``$BLENDER_BOOK_SHARED_DATA`` (None when it is not a
    folder), else ``../shared/data``, else what ``blender-book fetch-data`` downloaded into the user cache."""
    shared = paths.shared_data_dir()
    if shared is not None or os.environ.get(SHARED_DATA_ENV_VAR):
        return shared  # a variable that names no folder is not quietly replaced by the fetched copy
    fetched = paths.fetched_data_dir()
    return fetched if (fetched / paths.FETCH_MANIFEST).is_file() else None


def data_root(path: str | Path | None = None) -> Path:
    """The real-data folder: ``path`` if given, else ``$BLENDER_BOOK_SHARED_DATA``, else ``../shared/data``,
    else the copy ``blender-book fetch-data`` downloaded (:func:`find_data_root`).

    A folder that was asked for but does not exist is an error rather than a fallback, so a typo in a
    parameter never silently reads other data.
    """
    if path is not None:
        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise RealDataNotFound(f"real-data folder not found: {folder}. {_how_to_get()}")
        return folder
    configured = os.environ.get(SHARED_DATA_ENV_VAR)
    folder = find_data_root()
    if folder is None and configured:
        raise RealDataNotFound(f"${SHARED_DATA_ENV_VAR}={configured} is not a folder. {_how_to_get()}")
    if folder is None:
        raise RealDataNotFound(f"no real-data folder: ../shared/data is absent, ${SHARED_DATA_ENV_VAR} is unset and "
                               f"nothing was fetched. {_how_to_get()}")
    return folder


def _dataset_dir(root: str | Path | None, name: str) -> Path:
    folder = data_root(root) / name
    if not folder.is_dir():
        raise RealDataNotFound(f"{folder} is missing. {_how_to_get(name)}")
    return folder


def _data_file(folder: Path, name: str, dataset: str) -> Path:
    path = folder / name
    if not path.is_file():
        raise RealDataNotFound(f"{path} is missing. {_how_to_get(dataset)}")
    return path


@functools.lru_cache(maxsize=16)
def _cached_records(path: str, mtime_ns: int, size: int) -> tuple[Record, ...]:
    # Keyed by modification time and size, so an edited file is read again.
    records, _ = read_records(path, "raise")
    return tuple(records)


def _records(path: Path) -> tuple[Record, ...]:
    """The rows of a JSON/JSONL file with their locations, parsed once per process (the AlpacaEval files
    are 58 MB and 24 MB). Callers must not modify the rows."""
    stat = path.stat()
    return _cached_records(str(path), stat.st_mtime_ns, stat.st_size)


def _need(record: Record, key: str, kind: type | tuple[type, ...]) -> Any:
    """``record.row[key]``, or a :class:`DataError` naming the file:line and the field."""
    if key not in record.row:
        raise DataError(f"{record.location}: missing field {key!r} (the row has {sorted(record.row)})")
    value = record.row[key]
    if isinstance(value, bool) or not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise DataError(f"{record.location}: field {key!r} must be a {names}, got {type(value).__name__}")
    return value


def _unique_keys(records: Sequence[Record], key: str, path: Path) -> dict[Any, Record]:
    """Rows by their id field; a repeated id is an error (it would corrupt every join by id)."""
    out: dict[Any, Record] = {}
    for record in records:
        value = _need(record, key, (int, str))
        if value in out:
            raise DataError(f"{path}: duplicate {key} {value!r} ({out[value].location} and {record.location})")
        out[value] = record
    return out


def _choose(requested: Sequence[str] | None, available: Sequence[str], what: str, where: str) -> list[str]:
    """The requested names (all available ones if None), each checked: unknown or repeated is an error."""
    if requested is None:
        return list(available)
    if isinstance(requested, str):
        raise DataError(f"{what} must be a list of names, not the string {requested!r}")
    chosen = list(requested)
    if not chosen:
        raise DataError(f"no {what} chosen; available in {where}: {sorted(available)}")
    unknown = [name for name in chosen if name not in available]
    if unknown:
        raise DataError(f"unknown {what} {unknown}; available in {where}: {sorted(available)}")
    repeated = sorted({name for name in chosen if chosen.count(name) > 1})
    if repeated:
        raise DataError(f"{what} {repeated} chosen more than once")
    return chosen


def _check_limit(limit: int | None) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")


def _report_skips(what: str, found: list[tuple[str, str]], total: int, sink: list[tuple[str, str]] | None) -> None:
    """Hand the skipped ``(id, reason)`` pairs to the caller's list, or warn with the count per reason."""
    if sink is not None:
        sink.extend(found)
        return
    if found:
        counts = Counter(reason for _, joined in found for reason in joined.split("; "))
        lines = "\n  ".join(f"{n} x {reason}" for reason, n in counts.most_common())
        warnings.warn(f"{what}: skipped {len(found)} of {total} prompts:\n  {lines}", stacklevel=3)


def _text_problem(text: Any, model: str) -> str | None:
    if not isinstance(text, str):
        return f"{model}: output is a {type(text).__name__}, not text"
    if not text.strip():
        return f"{model}: empty output"
    return None


# --------------------------------------------------------------------------------------------
# AlpacaEval


def pref_to_prob(preference: Any) -> float | None:
    """AlpacaEval's preference as the probability that the model beats the reference.

    AlpacaEval writes 1 = the reference (generator_1) is better, 2 = the model is better, 1.5 or 0 = a
    draw, floats in [1, 2] for the weighted annotators, and null for a failed annotation. The result is
    ``preference - 1`` (0 -> 0.5), or None for a failed one. These are the conventions of AlpacaEval's
    leaderboard: failed annotations are left out, draws count half.
    """
    if preference is None or (isinstance(preference, float) and math.isnan(preference)):
        return None
    if isinstance(preference, bool) or not isinstance(preference, (int, float)):
        raise DataError(f"preference must be a number or null, got {preference!r}")
    if preference == 0:
        return 0.5
    if not 1 <= preference <= 2:
        raise DataError(f"preference must be 0 (draw), null (failed) or within [1, 2], got {preference!r}")
    return float(preference) - 1.0


@dataclass(frozen=True)
class AlpacaJudgments:
    """One annotator config's judgments against one reference: ``prefs[model][prompt id]`` = P(model beats
    the reference), None where the annotation failed; ``mislabelled[model]`` counts dropped rows."""

    annotator: str
    reference: str
    prefs: Mapping[str, Mapping[int, float | None]]
    mislabelled: Mapping[str, int]


def _annotation_rows(folder: Path, annotator: str) -> list[Record]:
    path = _data_file(folder, ALPACA_ANNOTATIONS_FILE, "alpaca_eval")
    records = _records(path)
    rows = [r for r in records if r.row.get("annotator_config") == annotator]
    if not rows:
        counts = Counter(r.row.get("annotator_config") for r in records)
        raise DataError(f"{path} has no annotations by the annotator config {annotator!r}; configs (rows): "
                        f"{dict(counts.most_common())}")
    return rows


def _resolve_reference(rows: Sequence[Record], reference_model: str | None, annotator: str) -> str:
    references = Counter(_need(r, "generator_1", str) for r in rows)
    if reference_model is None:
        if len(references) != 1:
            raise DataError(f"annotator config {annotator!r} compares against several references "
                            f"{dict(references)}; pass reference_model=")
        return next(iter(references))
    if reference_model not in references:
        raise DataError(f"annotator config {annotator!r} has no annotations against the reference "
                        f"{reference_model!r}; its references (rows): {dict(references)}")
    return reference_model


@functools.lru_cache(maxsize=8)
def _judgments_cached(folder: str, annotator: str, reference_model: str | None, _key: tuple) -> AlpacaJudgments:
    rows = _annotation_rows(Path(folder), annotator)
    reference = _resolve_reference(rows, reference_model, annotator)
    rows = [r for r in rows if r.row["generator_1"] == reference]
    # A model is its results folder (file_model): the name of its outputs and of its leaderboard row.
    # Rows whose generator_2 names *another* model of the same config judge that model's outputs (upstream,
    # falcon-7b-instruct's AlpacaEval 1 file is a copy of falcon-40b-instruct's): they are dropped. A
    # generator_2 that is no model of the config is a renamed run (alpaca-7b-neft) and is kept.
    file_models = {_need(r, "file_model", str) for r in rows}
    prefs: dict[str, dict[int, float | None]] = defaultdict(dict)
    mislabelled: Counter[str] = Counter()
    for record in rows:
        model, generator = record.row["file_model"], _need(record, "generator_2", str)
        if generator != model and generator in file_models:
            mislabelled[model] += 1
            continue
        prompt = _need(record, "id", int)
        try:
            pref = pref_to_prob(record.row.get("preference"))
        except DataError as err:
            raise DataError(f"{record.location}: {err}") from err
        if prompt in prefs[model] and prefs[model][prompt] != pref:
            raise DataError(f"{record.location}: a second, different {annotator} judgment of {model!r} on prompt "
                            f"{prompt} ({prefs[model][prompt]} vs {pref})")
        prefs[model][prompt] = pref
    return AlpacaJudgments(annotator, reference, {m: dict(p) for m, p in prefs.items()}, dict(mislabelled))


def alpaca_judgments(root: str | Path | None = None, *, annotator: str = ALPACA_ANNOTATOR,
                     reference_model: str | None = None) -> AlpacaJudgments:
    """The GPT-4 judgments of one annotator config against its reference (the only ``generator_1`` of the
    config unless ``reference_model`` picks one), per model and prompt id."""
    folder = _dataset_dir(root, "alpaca_eval")
    stat = _data_file(folder, ALPACA_ANNOTATIONS_FILE, "alpaca_eval").stat()
    return _judgments_cached(str(folder), annotator, reference_model, (stat.st_mtime_ns, stat.st_size))


@dataclass(frozen=True)
class _AlpacaPrompt:
    prompt_id: int
    instruction: str
    dataset: str
    outputs: Mapping[str, Any]


def _alpaca_prompts(folder: Path) -> list[_AlpacaPrompt]:
    """The wide file's rows, checked: fields, types, unique ids."""
    path = _data_file(folder, ALPACA_WIDE_FILE, "alpaca_eval")
    records = _records(path)
    _unique_keys(records, "id", path)
    return [_AlpacaPrompt(_need(r, "id", int), _need(r, "instruction", str), _need(r, "dataset", str),
                          _need(r, "outputs", dict)) for r in records]


def alpaca_eval_outputs(root: str | Path | None = None, models: Sequence[str] = ()) -> dict[str, dict[int, str]]:
    """Each model's AlpacaEval outputs by prompt id (the wide file), judged or not: what a model with
    answers but no verdicts contributes (an unscored candidate)."""
    prompts = _alpaca_prompts(_dataset_dir(root, "alpaca_eval"))
    chosen = _choose(models, _alpaca_output_models(prompts), "AlpacaEval models with outputs", ALPACA_WIDE_FILE)
    return {m: {p.prompt_id: p.outputs[m] for p in prompts if isinstance(p.outputs.get(m), str)} for m in chosen}


def _alpaca_output_models(prompts: Sequence[_AlpacaPrompt]) -> list[str]:
    return sorted({model for prompt in prompts for model in prompt.outputs})


def alpaca_eval_leaderboard(root: str | Path | None = None, annotator: str = ALPACA_ANNOTATOR) -> pd.DataFrame | None:
    """The published AlpacaEval leaderboard of ``annotator`` (``leaderboards/*__<annotator>_leaderboard.csv``),
    indexed by model, or None when the folder has none for this annotator."""
    folder = _dataset_dir(root, "alpaca_eval") / "leaderboards"
    matches = sorted(folder.glob(f"*__{annotator}_leaderboard.csv")) if folder.is_dir() else []
    if not matches:
        return None
    if len(matches) > 1:
        raise DataError(f"several leaderboards for {annotator!r}: {[p.name for p in matches]}")
    table = pd.read_csv(matches[0], index_col=0)
    if "win_rate" not in table.columns:
        raise DataError(f"{matches[0]} has no 'win_rate' column (columns: {list(table.columns)})")
    table.index.name = "model"
    return table


def _usable(prompt: _AlpacaPrompt, model: str, judged: Mapping[int, float | None], annotator: str) -> str | None:
    """Why ``model`` cannot be a candidate on this prompt, or None."""
    if model not in prompt.outputs:
        return f"{model}: no output"
    problem = _text_problem(prompt.outputs[model], model)
    if problem:
        return problem
    if prompt.prompt_id not in judged:
        return f"{model}: no {annotator} annotation"
    if judged[prompt.prompt_id] is None:
        return f"{model}: {annotator} annotation failed (null preference)"
    return None


def alpaca_eval_models(root: str | Path | None = None, *, annotator: str = ALPACA_ANNOTATOR,
                       reference_model: str | None = None) -> pd.DataFrame:
    """Per model (the wide file's and the annotator's): coverage and the win rate against the reference.

    Columns: ``has_outputs``; ``n_outputs`` (non-empty outputs); ``n_annotated`` (valid judgments);
    ``n_failed`` (null preferences); ``n_mislabelled`` (rows judging another model, dropped);
    ``n_usable`` (prompts with both a non-empty output and a valid judgment); ``full_coverage``
    (usable on every prompt); ``n_wins`` / ``n_losses`` / ``n_draws``; ``win_rate`` in percent, computed
    as AlpacaEval does (mean of ``preference - 1`` over valid judgments, draws = 0.5); and
    ``published_win_rate`` from the same annotator's leaderboard (NaN where it has no row). Sorted by win
    rate, best first. Whether a prompt's *reference* output is usable is not part of a model's coverage.
    """
    folder = _dataset_dir(root, "alpaca_eval")
    prompts = _alpaca_prompts(folder)
    judgments = alpaca_judgments(root, annotator=annotator, reference_model=reference_model)
    board = alpaca_eval_leaderboard(root, annotator)
    rows = []
    for model in sorted(set(_alpaca_output_models(prompts)) | set(judgments.prefs) | set(judgments.mislabelled)):
        judged = judgments.prefs.get(model, {})
        valid = np.array([p for p in judged.values() if p is not None], dtype=float)
        n_outputs = sum(_text_problem(p.outputs.get(model), model) is None for p in prompts if model in p.outputs)
        n_usable = sum(_usable(p, model, judged, annotator) is None for p in prompts)
        rows.append({
            "model": model,
            "has_outputs": any(model in p.outputs for p in prompts),
            "n_outputs": n_outputs,
            "n_annotated": len(valid),
            "n_failed": sum(p is None for p in judged.values()),
            "n_mislabelled": judgments.mislabelled.get(model, 0),
            "n_usable": n_usable,
            "full_coverage": n_usable == len(prompts),
            "n_wins": int((valid > 0.5).sum()),
            "n_losses": int((valid < 0.5).sum()),
            "n_draws": int((valid == 0.5).sum()),
            "win_rate": 100 * valid.mean() if len(valid) else np.nan,
            "published_win_rate": (float(board.loc[model, "win_rate"])
                                   if board is not None and model in board.index else np.nan),
        })
    table = pd.DataFrame(rows).set_index("model")
    return table.sort_values(["win_rate", "n_usable"], ascending=False, na_position="last", kind="stable")


def suggested_alpaca_pool(root: str | Path | None = None, n: int = 10, *, annotator: str = ALPACA_ANNOTATOR,
                          reference_model: str | None = None, min_win_rate: float | None = None,
                          max_win_rate: float | None = None, exclude: Sequence[str] = ()) -> list[str]:
    """``n`` models of spread-out strength that are usable on every prompt, strongest first.

    Among the models with full coverage (outputs and valid judgments everywhere; never the reference,
    nor ``exclude``), within the optional win-rate bounds (percent), sorted by win rate: the ones at ``n``
    evenly spaced positions from the weakest to the strongest. Deterministic. A cap such as
    ``max_win_rate=92`` leaves an ensemble room to beat its best member.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    table = alpaca_eval_models(root, annotator=annotator, reference_model=reference_model)
    reference = alpaca_judgments(root, annotator=annotator, reference_model=reference_model).reference
    keep = table["full_coverage"] & ~table.index.isin([reference, *exclude])
    if min_win_rate is not None:
        keep &= table["win_rate"] >= min_win_rate
    if max_win_rate is not None:
        keep &= table["win_rate"] <= max_win_rate
    eligible = table[keep].reset_index().sort_values(["win_rate", "model"], kind="stable")
    if len(eligible) < n:
        raise DataError(f"only {len(eligible)} models have full coverage under {annotator!r} within the bounds "
                        f"({list(eligible['model'])}); ask for n <= {len(eligible)} or widen the bounds")
    positions = np.round(np.linspace(0, len(eligible) - 1, n)).astype(int)
    return list(eligible["model"].iloc[positions][::-1])


def _outcome(prob: float) -> int:
    """+1 the model beat the reference, -1 it lost, 0 a draw (AlpacaEval counts a win as preference > 1.5)."""
    return int(np.sign(prob - 0.5))


def derived_cmp_results(models: Sequence[str], probs: Sequence[float]) -> dict[str, str]:
    """Pairwise labels implied by two candidates' outcomes against the same reference.

    A beat the reference and B lost -> "A is better" (and the mirror); both beat it -> "Same good"; both
    lost -> "Same bad". A pair where either candidate drew is left out: a draw places a candidate next
    to the reference, which says nothing about its order with a candidate on the same side.
    """
    out = {}
    for (i, a), (j, b) in itertools.combinations(enumerate(models), 2):
        oa, ob = _outcome(probs[i]), _outcome(probs[j])
        if oa == 0 or ob == 0:
            continue
        out[f"{a},{b}"] = ("A is better" if oa > ob else "B is better" if ob > oa
                           else "Same good" if oa > 0 else "Same bad")
    return out


def _default_alpaca_models(prompts: Sequence[_AlpacaPrompt], judgments: AlpacaJudgments) -> list[str]:
    return [m for m in _alpaca_output_models(prompts) if m in judgments.prefs and m != judgments.reference]


def _check_alpaca_models(models: Sequence[str] | None, prompts: Sequence[_AlpacaPrompt],
                         judgments: AlpacaJudgments, where: str) -> list[str]:
    chosen = _choose(models, _alpaca_output_models(prompts), "AlpacaEval models", where)
    unjudged = [m for m in chosen if m not in judgments.prefs]
    if unjudged:
        raise DataError(f"{unjudged} have outputs but no {judgments.annotator!r} judgments against "
                        f"{judgments.reference!r}; models with both: {_default_alpaca_models(prompts, judgments)}")
    return chosen


def load_alpaca_eval(root: str | Path | None = None, models: Sequence[str] | None = None, *,
                     annotator: str = ALPACA_ANNOTATOR, reference_model: str | None = None,
                     limit: int | None = None, derive_cmp: bool = True,
                     skipped: list[tuple[str, str]] | None = None) -> list[dict]:
    """AlpacaEval as examples: one per prompt, the chosen models' outputs as candidates.

    ``models`` are AlpacaEval generator names from the wide file (None = every one judged by
    ``annotator``, except the reference); the candidates keep their order. ``output`` is the reference
    model's output, the one the annotator compared against (default: the config's only reference,
    text_davinci_003 for AlpacaEval 1). Each candidate carries ``scores["gpt4_pref"]`` = P(it beats the
    reference), :func:`pref_to_prob` of its judgment: 1 win, 0 loss, 0.5 draw (fractions for the weighted
    AlpacaEval 2 annotator).

    ``cmp_results`` (``derive_cmp=True``) are *derived*, not judged: GPT-4 never compared two candidates
    directly, but both against the same reference, so a candidate that beat it is taken as better than
    one that lost, and two that both won (lost) are "Same good" ("Same bad"); see
    :func:`derived_cmp_results`. Pairs where either drew are left out. They are what GPT-Rank and the
    PairRanker's training read; the direct per-candidate signal is ``gpt4_pref``.

    A prompt is skipped, with its reason, when the reference output is empty (2 of AlpacaEval 1's
    text_davinci_003 outputs are) or any chosen model lacks a non-empty output or a valid judgment there;
    the reasons go to ``skipped`` as ``(id, reason)`` pairs, or else into one warning. ``limit`` stops after
    that many examples (file order). Very long outputs are kept whole.
    """
    _check_limit(limit)
    folder = _dataset_dir(root, "alpaca_eval")
    prompts = _alpaca_prompts(folder)
    judgments = alpaca_judgments(root, annotator=annotator, reference_model=reference_model)
    reference = judgments.reference
    chosen = (_default_alpaca_models(prompts, judgments) if models is None
              else _check_alpaca_models(models, prompts, judgments, str(folder / ALPACA_WIDE_FILE)))
    if not chosen:
        raise DataError(f"no model in {folder / ALPACA_WIDE_FILE} has {annotator!r} judgments")
    if reference not in _alpaca_output_models(prompts):
        raise DataError(f"the reference {reference!r} has no outputs in {folder / ALPACA_WIDE_FILE}")
    examples: list[dict] = []
    found: list[tuple[str, str]] = []
    for prompt in prompts:
        if limit is not None and len(examples) >= limit:
            break
        ex_id = f"alpaca_eval/{prompt.prompt_id}"
        ref_problem = _text_problem(prompt.outputs.get(reference, ""), f"reference {reference}")
        problems = [ref_problem] if ref_problem else []
        problems += [p for m in chosen if (p := _usable(prompt, m, judgments.prefs[m], annotator))]
        if problems:
            found.append((ex_id, "; ".join(problems)))
            continue
        probs = [float(judgments.prefs[m][prompt.prompt_id]) for m in chosen]
        examples.append(make_example(
            id=ex_id,
            instruction=prompt.instruction,
            output=prompt.outputs[reference],
            source="alpaca_eval",
            tags=[prompt.dataset],
            candidates=[{"model": m, "decoding_method": PUBLISHED, "text": prompt.outputs[m],
                         "scores": {PREF_SCORE: p}} for m, p in zip(chosen, probs)],
            cmp_results=derived_cmp_results(chosen, probs) if derive_cmp else None,
            meta={"alpaca_eval_id": prompt.prompt_id, "annotator": annotator, "reference_model": reference},
        ))
    _report_skips("load_alpaca_eval", found, len(examples) + len(found), skipped)
    return validate_examples(examples)


# --------------------------------------------------------------------------------------------
# MT-Bench


def mt_bench_models(root: str | Path | None = None) -> list[str]:
    """The models with answers (``mt_bench/model_answer/<model>.jsonl``)."""
    folder = _dataset_dir(root, "mt_bench") / "model_answer"
    if not folder.is_dir():
        raise RealDataNotFound(f"{folder} is missing. {_how_to_get('mt_bench')}")
    return sorted(p.stem for p in folder.glob("*.jsonl"))


def mt_bench_questions(root: str | Path | None = None) -> dict[Any, Record]:
    """MT-Bench's questions (``mt_bench/question.jsonl``) by ``question_id``, each with its file:line
    (``Record.location``); a repeated id is an error. The one reader of the file: :func:`load_mt_bench`
    and :func:`blender_lib.strong_weak.load_mt_bench_scores` both use it. Callers must not modify the rows."""
    path = _data_file(_dataset_dir(root, "mt_bench"), "question.jsonl", "mt_bench")
    return _unique_keys(_records(path), "question_id", path)


def _turn_texts(path: Path, turn: int) -> dict[int, Any]:
    """question_id -> the answer (or reference) of one turn from a FastChat answer file."""
    records = _records(path)
    out: dict[int, Any] = {}
    for qid, record in _unique_keys(records, "question_id", path).items():
        choices = _need(record, "choices", list)
        if not choices or not isinstance(choices[0], dict) or not isinstance(choices[0].get("turns"), list):
            raise DataError(f"{record.location}: 'choices' must be a non-empty list of {{'turns': [...]}} dicts")
        turns = choices[0]["turns"]
        out[qid] = turns[turn - 1] if len(turns) >= turn else None
    return out


MT_BENCH_REFERENCES = ("gpt-4", "question", None)


def load_mt_bench(root: str | Path | None = None, models: Sequence[str] | None = None, *, turn: int = 1,
                  reference: str | None = "gpt-4", limit: int | None = None,
                  skipped: list[tuple[str, str]] | None = None) -> list[dict]:
    """MT-Bench as examples: one per question (80), one turn, the chosen models' answers as candidates.

    ``reference="gpt-4"``: GPT-4's reference answers (``reference_answer/gpt-4.jsonl``: 30 math, reasoning
    and coding questions); ``"question"``: the short hand-written ``reference`` of question.jsonl (39);
    None: none. Questions without one get ``has_reference=False``. Tags = [category].

    ``turn=2`` takes the follow-up question as the instruction and the first question as ``input``; the
    models' own first answers (which the follow-up refers to) differ per model and are not included.
    There are no pairwise judgments of these models here, so ``cmp_results`` is empty. A question where
    a chosen model's answer is missing or empty (llama-13b has one) is skipped with its reason.
    """
    _check_limit(limit)
    if turn not in (1, 2):
        raise ValueError(f"turn must be 1 or 2, got {turn!r}")
    if reference not in MT_BENCH_REFERENCES:
        raise ValueError(f"reference must be one of {list(MT_BENCH_REFERENCES)}, got {reference!r}")
    folder = _dataset_dir(root, "mt_bench")
    chosen = _choose(models, mt_bench_models(root), "MT-Bench models", str(folder / "model_answer"))
    questions = mt_bench_questions(root)
    answers = {m: _turn_texts(folder / "model_answer" / f"{m}.jsonl", turn) for m in chosen}
    references: dict[int, Any] = {}
    if reference == "gpt-4":
        references = _turn_texts(_data_file(folder, "reference_answer/gpt-4.jsonl", "mt_bench"), turn)
    examples: list[dict] = []
    found: list[tuple[str, str]] = []
    for qid, record in questions.items():
        if limit is not None and len(examples) >= limit:
            break
        turns = _need(record, "turns", list)
        if len(turns) < turn or not all(isinstance(t, str) for t in turns):
            raise DataError(f"{record.location}: 'turns' must hold at least {turn} strings")
        if reference == "question":
            refs = record.row.get("reference") or []
            references[qid] = refs[turn - 1] if len(refs) >= turn else None
        ex_id = f"mt_bench/{qid}" if turn == 1 else f"mt_bench/{qid}/turn{turn}"
        problems = [p for m in chosen if (p := (f"{m}: no answer" if answers[m].get(qid) is None
                                                else _text_problem(answers[m][qid], m)))]
        if problems:
            found.append((ex_id, "; ".join(problems)))
            continue
        ref_text = references.get(qid)
        has_reference = isinstance(ref_text, str) and bool(ref_text.strip())
        examples.append(make_example(
            id=ex_id,
            instruction=turns[turn - 1],
            input=turns[0] if turn == 2 else "",
            output=ref_text if has_reference else "",
            has_reference=has_reference,
            source="mt_bench",
            tags=[_need(record, "category", str)],
            candidates=[{"model": m, "decoding_method": PUBLISHED, "text": answers[m][qid], "scores": {}}
                        for m in chosen],
            meta={"question_id": qid, "turn": turn, "reference": reference if has_reference else None},
        ))
    _report_skips("load_mt_bench", found, len(examples) + len(found), skipped)
    return validate_examples(examples)


# --------------------------------------------------------------------------------------------
# FLASK

FLASK_SETS = {"evaluation": "flask_evaluation.jsonl", "hard": "flask_hard_evaluation.jsonl"}


def _flask_output_dir(folder: Path) -> Path:
    """``model_output/`` here; upstream keeps the files one level deeper, in ``model_output/outputs/``."""
    outputs = folder / "model_output"
    if (outputs / "outputs").is_dir():
        outputs = outputs / "outputs"
    if not outputs.is_dir():
        raise RealDataNotFound(f"{outputs} is missing. {_how_to_get('flask')}")
    return outputs


def flask_models(root: str | Path | None = None) -> list[str]:
    """The models with FLASK outputs (``flask/model_output/<model>.jsonl``)."""
    return sorted(p.stem for p in _flask_output_dir(_dataset_dir(root, "flask")).glob("*.jsonl"))


def _flask_outputs(path: Path) -> dict[int, Any]:
    return {qid: r.row.get("text") for qid, r in _unique_keys(_records(path), "question_id", path).items()}


def _known(value: Any) -> bool:
    """FLASK marks an unknown domain or difficulty with -1."""
    return isinstance(value, str) and bool(value.strip()) and value.strip() != "-1"


def flask_tags(row: Mapping[str, Any]) -> list[str]:
    """``skill:<name>`` for each of the instruction's skills (first: the primary skill, so splits
    stratify by it), then ``domain:<name>`` and ``difficulty:<level>`` where known."""
    skills = row.get("skill") or []
    domains = row.get("domain") or []
    tags = [f"skill:{s}" for s in skills if _known(s)] + [f"domain:{d}" for d in domains if _known(d)]
    if _known(row.get("difficulty")):
        tags.append(f"difficulty:{row['difficulty']}")
    return list(dict.fromkeys(tags))


def _flask_output_ids(folder: Path, which: str, rows: Mapping[int, Record]) -> dict[int, int]:
    """Set idx -> the idx of the model outputs. The hard set numbers its items 1..89 afresh; its
    instructions are (all but one) items of the main set, whose idx the outputs use: joined by text."""
    if which == "evaluation":
        return {idx: idx for idx in rows}
    main_path = _data_file(folder / "evaluation_set", FLASK_SETS["evaluation"], "flask")
    by_text: dict[str, int] = {}
    for idx, record in _unique_keys(_records(main_path), "idx", main_path).items():
        by_text.setdefault(_need(record, "instruction", str), idx)
    return {idx: by_text[text] for idx, r in rows.items() if (text := r.row.get("instruction")) in by_text}


def _flask_problems(models: Sequence[str], outputs: Mapping[str, Mapping[int, Any]], out_id: int | None) -> list[str]:
    if out_id is None:
        return ["not in the main evaluation set, whose idx the outputs follow"]
    if all(outputs[m].get(out_id) is None for m in models):
        return ["no model has an output for it"]
    return [p for m in models if (p := (f"{m}: no output" if outputs[m].get(out_id) is None
                                        else _text_problem(outputs[m][out_id], m)))]


def load_flask(root: str | Path | None = None, models: Sequence[str] | None = None, *,
               which: str = "evaluation", limit: int | None = None,
               skipped: list[tuple[str, str]] | None = None) -> list[dict]:
    """FLASK as examples: one per instruction with its skill / domain / difficulty tags (:func:`flask_tags`),
    the chosen models' outputs as candidates, FLASK's ``answer`` as the reference.

    ``which="evaluation"``: the 1,740 instructions (outputs exist for idx 1-1,700; the last 40 are skipped
    as having no outputs); ``"hard"``: the 89 expert-level ones, joined to the outputs through the main
    set by instruction text (73 have outputs: 15 map to idx > 1,700, 1 is not in the main set). The
    instruction keeps FLASK's embedded
    ``Input:`` text. There are no judgments here (the GPT-4 reviews are not in the folder): scores and
    ``cmp_results`` are empty. davinci_003 has 22 empty outputs: with it in the pool those prompts are
    skipped with their reason, like any missing output.
    """
    _check_limit(limit)
    if which not in FLASK_SETS:
        raise ValueError(f"which must be one of {list(FLASK_SETS)}, got {which!r}")
    folder = _dataset_dir(root, "flask")
    out_dir = _flask_output_dir(folder)
    chosen = _choose(models, flask_models(root), "FLASK models", str(out_dir))
    path = _data_file(folder / "evaluation_set", FLASK_SETS[which], "flask")
    rows = _unique_keys(_records(path), "idx", path)
    output_ids = _flask_output_ids(folder, which, rows)
    outputs = {m: _flask_outputs(out_dir / f"{m}.jsonl") for m in chosen}
    source = "flask" if which == "evaluation" else "flask_hard"
    examples: list[dict] = []
    found: list[tuple[str, str]] = []
    for idx, record in rows.items():
        if limit is not None and len(examples) >= limit:
            break
        ex_id = f"{source}/{idx}"
        out_id = output_ids.get(idx)
        problems = _flask_problems(chosen, outputs, out_id)
        if problems:
            found.append((ex_id, "; ".join(problems)))
            continue
        skills, domains = _need(record, "skill", list), _need(record, "domain", list)
        examples.append(make_example(
            id=ex_id,
            instruction=_need(record, "instruction", str),
            output=_need(record, "answer", str),
            source=source,
            tags=flask_tags(record.row),
            candidates=[{"model": m, "decoding_method": PUBLISHED, "text": outputs[m][out_id], "scores": {}}
                        for m in chosen],
            meta={"flask_idx": idx, "output_idx": out_id, "task": record.row.get("task"), "skills": skills,
                  "domains": domains, "difficulty": record.row.get("difficulty")},
        ))
    _report_skips(f"load_flask({which!r})", found, len(examples) + len(found), skipped)
    return validate_examples(examples)


def _instruction_key(text: str) -> str:
    """An instruction as two datasets are matched on: runs of whitespace collapsed, ends stripped."""
    return " ".join(text.split())


def flask_tags_by_instruction(root: str | Path | None = None) -> dict[str, list[str]]:
    """FLASK's tags (:func:`flask_tags`) keyed by instruction text (:func:`_instruction_key`); an
    instruction that FLASK lists twice gets the tags of both."""
    folder = _dataset_dir(root, "flask")
    path = _data_file(folder / "evaluation_set", FLASK_SETS["evaluation"], "flask")
    out: dict[str, list[str]] = {}
    for record in _records(path):
        key = _instruction_key(_need(record, "instruction", str))
        out[key] = list(dict.fromkeys([*out.get(key, []), *flask_tags(record.row)]))
    return out


def with_flask_tags(examples: Sequence[Mapping[str, Any]], root: str | Path | None = None, *,
                    skipped: list[tuple[str, str]] | None = None) -> list[dict]:
    """Copies of the examples whose instruction is also a FLASK instruction, with FLASK's skill,
    domain and difficulty tags after their own tags. FLASK took its Vicuna, Koala and self-instruct
    prompts from the same sources as AlpacaEval, so 268 of AlpacaEval's 805 instructions match
    exactly (up to whitespace): those carry GPT-4 verdicts *and* skill tags. Examples with an
    ``input`` are matched on the instruction alone. The others are left out, each with its reason
    in ``skipped`` (or one warning)."""
    by_text = flask_tags_by_instruction(root)
    out: list[dict] = []
    found: list[tuple[str, str]] = []
    for n, ex in enumerate(examples):
        tags = by_text.get(_instruction_key(str(ex.get("instruction") or "")))
        if tags is None:
            found.append((str(ex.get("id", n)), "instruction not in FLASK"))
            continue
        out.append({**ex, "tags": list(dict.fromkeys([*(ex.get("tags") or []), *tags]))})
    _report_skips("with_flask_tags", found, len(examples), skipped)
    return out


def tags_with_prefix(examples: Sequence[Mapping[str, Any]], prefix: str = "skill:") -> list[tuple[str, ...]]:
    """Each example's tags that start with ``prefix`` (FLASK's skills by default), for
    :func:`blender_lib.zooter.enhance_labels`; an example without one is an error naming it."""
    out = []
    for n, ex in enumerate(examples):
        tags = tuple(t for t in ex.get("tags", []) if isinstance(t, str) and t.startswith(prefix))
        if not tags:
            raise DataError(f"example {ex.get('id', n)!r} has no tag starting with {prefix!r} "
                            f"(tags: {ex.get('tags')})")
        out.append(tags)
    return out


# --------------------------------------------------------------------------------------------
# LLMBar


def llmbar_subsets(root: str | Path | None = None) -> list[str]:
    """The LLMBar files (``llmbar/<subset>.json``), e.g. ``LLMBar__Natural`` or ``Processed__MT-Bench``."""
    return sorted(p.stem for p in _dataset_dir(root, "llmbar").glob("*.json"))


def load_llmbar(root: str | Path | None = None, subsets: Sequence[str] | None = None, *,
                limit: int | None = None, skipped: list[tuple[str, str]] | None = None) -> list[dict]:
    """LLMBar's gold-labelled pairs as examples with two candidates, ``output_1`` and ``output_2``.

    ``cmp_results`` = {"output_1,output_2": "A is better" (label 1) | "B is better" (label 2)}; there is
    no reference (``has_reference=False``); ``source`` and the one tag are the subset's file name.
    ``limit`` applies per subset. A pair with an empty output (1 in Processed__LLMEval2) or two identical
    outputs (1 there too: a label cannot order equal texts) is skipped with its reason.
    """
    _check_limit(limit)
    folder = _dataset_dir(root, "llmbar")
    chosen = _choose(subsets, llmbar_subsets(root), "LLMBar subsets", str(folder))
    examples: list[dict] = []
    found: list[tuple[str, str]] = []
    for subset in chosen:
        kept = 0
        for index, record in enumerate(_records(folder / f"{subset}.json")):
            if limit is not None and kept >= limit:
                break
            texts = [_need(record, key, str) for key in ("output_1", "output_2")]
            label = _need(record, "label", int)
            if label not in (1, 2):
                raise DataError(f"{record.location}: label must be 1 or 2, got {label!r}")
            ex_id = f"llmbar/{subset}/{index}"
            problems = [p for k, t in zip(("output_1", "output_2"), texts) if (p := _text_problem(t, k))]
            if not problems and texts[0].strip() == texts[1].strip():
                problems = ["output_1 and output_2 are identical"]
            if problems:
                found.append((ex_id, "; ".join(problems)))
                continue
            examples.append(make_example(
                id=ex_id,
                instruction=_need(record, "input", str),
                output="",
                has_reference=False,
                source=subset,
                tags=[subset],
                candidates=[{"model": k, "decoding_method": PUBLISHED, "text": t, "scores": {}}
                            for k, t in zip(("output_1", "output_2"), texts)],
                cmp_results={"output_1,output_2": "A is better" if label == 1 else "B is better"},
                meta={"label": label, "index": index},
            ))
            kept += 1
    _report_skips("load_llmbar", found, len(examples) + len(found), skipped)
    return validate_examples(examples)


# --------------------------------------------------------------------------------------------
# seeded samples of loaded examples


def prompt_subset(examples: Sequence[Mapping[str, Any]], n: int | None, seed: int = 0) -> list[dict]:
    """``n`` examples drawn without replacement (seeded), kept in their original order; None, or an
    ``n`` at least the number of examples, keeps them all."""
    return [examples[k] for k in seeded_rows(len(examples), n, seed)]  # type: ignore[misc]


def llmbar_sample(root: str | Path | None, subsets: Sequence[str], n_per_subset: int | None, seed: int = 0, *,
                  skipped: list[tuple[str, str]] | None = None) -> list[dict]:
    """A seeded sample of ``n_per_subset`` LLMBar pairs from each subset (None: all of them)."""
    examples = load_llmbar(root, subsets, skipped=skipped)
    out = []
    for subset in subsets:
        mine = [ex for ex in examples if ex["source"] == subset]
        out += prompt_subset(mine, n_per_subset, seed)
    return out
