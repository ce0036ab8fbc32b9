"""Instruction sources behind one interface, in the MixInstruct schema.

One example is a plain dict, compatible with the published ``llm-blender/mix-instruct`` JSONL::

    id           str            unique within a data set
    instruction  str            the task; MixInstruct leaves it "" when ``input`` holds the whole prompt
    input        str            extra context ("" if none)
    output       str            the reference answer
    candidates   list[dict]     {"model", "decoding_method", "text", "scores": {metric: float}, ...extra keys}
    cmp_results  dict[str,str]  {"modelA,modelB": "A is better" | "B is better" | "Same good" | "Same bad"}
    source       str            where the example comes from ("seed", "alpaca_gpt4", "mt_bench", ...)
    tags         list[str]      categories; the first one stratifies splits

and two optional keys:

    has_reference  bool   False only for question-only sources (MT-Bench questions without a reference,
                          AlpacaEval instructions without an output); then ``output`` is "" and the
                          reference metrics refuse the example. Absent means True.
    meta           dict   source-specific extras kept verbatim (AlpacaEval ``generator``, MT-Bench
                          ``question_id`` and number of turns).

Sources: the project's seed set (:func:`load_seed_instructions`), local JSON/JSONL files in the
Alpaca, Dolly, ShareGPT, GPT4All, AlpacaEval, MT-Bench and MixInstruct shapes (:func:`load_local`), and
Hugging Face datasets (:func:`load_hf`). Local files and hub rows go through the same row mappings
(:func:`examples_from_rows`), so the mappings are tested offline on small in-memory datasets.
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
import shutil
import tempfile
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .io import atomic_write_json, atomic_write_text
from .paths import DATA_DIR

log = logging.getLogger(__name__)

OnError = Literal["raise", "skip"]

CMP_LABELS: tuple[str, ...] = ("A is better", "B is better", "Same good", "Same bad")
REQUIRED_FIELDS: dict[str, type] = {
    "id": str,
    "instruction": str,
    "input": str,
    "output": str,
    "candidates": list,
    "cmp_results": dict,
    "source": str,
    "tags": list,
}
# cmp_results_raw: the judge's verdict per *ordered* pair ("a,b" and "b,a"; None = unparseable),
# kept beside the combined cmp_results so position bias can be studied.
OPTIONAL_FIELDS: dict[str, type] = {"has_reference": bool, "meta": dict, "cmp_results_raw": dict}
CANDIDATE_FIELDS: dict[str, type] = {"model": str, "decoding_method": str, "text": str, "scores": dict}
EMPTY = "empty"  # a candidate marked {"empty": True} keeps its empty answer: real, judged data that usually loses
DEFAULT_SPLIT_SIZES: dict[str, int] = {"train": 300, "val": 30, "test": 70}
SEED_FILE = DATA_DIR / "seed_instructions.jsonl"


class DataError(ValueError):
    """Bad input data: the message names the example (or file:line) and the field."""


# --------------------------------------------------------------------------------------------
# validation


def _require_text(value: Any, where: str, *, allow_empty: bool) -> str:
    if not isinstance(value, str):
        raise DataError(f"{where} must be a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise DataError(f"{where} is empty")
    return value


def _validate_candidate(candidate: Any, where: str) -> str:
    """Check one candidate and return its model name."""
    if not isinstance(candidate, dict):
        raise DataError(f"{where} must be a dict, got {type(candidate).__name__}")
    for key, kind in CANDIDATE_FIELDS.items():
        if key not in candidate:
            raise DataError(f"{where} lacks the field {key!r} (has {sorted(candidate)})")
        if not isinstance(candidate[key], kind):
            raise DataError(f"{where}.{key} must be a {kind.__name__}, got {type(candidate[key]).__name__}")
    model = _require_text(candidate["model"], f"{where}.model", allow_empty=False)
    if "," in model:
        # cmp_results keys are "modelA,modelB": a comma inside a name would make them ambiguous.
        raise DataError(f"{where}.model {model!r} contains a comma, which cmp_results keys cannot represent")
    marked_empty = candidate.get(EMPTY, False)
    if not isinstance(marked_empty, bool):
        raise DataError(f"{where} (model {model!r}).{EMPTY} must be true or false, got {marked_empty!r}")
    _require_text(candidate["text"], f"{where} (model {model!r}).text", allow_empty=marked_empty)
    if marked_empty and candidate["text"].strip():
        raise DataError(f"{where} (model {model!r}) is marked {EMPTY} but has a non-empty text")
    for metric, score in candidate["scores"].items():
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
            raise DataError(f"{where} (model {model!r}).scores[{metric!r}] must be a finite number, got {score!r}")
    return model


def _validate_cmp_results(cmp_results: dict, models: set[str], where: str) -> None:
    for key, label in cmp_results.items():
        parts = key.split(",") if isinstance(key, str) else []
        if len(parts) != 2 or not all(parts):
            raise DataError(f"{where}.cmp_results key {key!r} must look like 'modelA,modelB'")
        unknown = [p for p in parts if p not in models]
        if unknown:
            raise DataError(
                f"{where}.cmp_results key {key!r} names {unknown}, which are not candidates "
                f"(candidates: {sorted(models)})"
            )
        if parts[0] == parts[1]:
            raise DataError(f"{where}.cmp_results key {key!r} compares a model with itself")
        if label not in CMP_LABELS:
            raise DataError(f"{where}.cmp_results[{key!r}] = {label!r} is not one of {list(CMP_LABELS)}")


def _validate_reference(ex: dict, where: str) -> None:
    if ex.get("has_reference", True):
        _require_text(ex["output"], f"{where}.output (the reference)", allow_empty=False)
    elif ex["output"] != "":
        raise DataError(f"{where} has has_reference=False but a non-empty output")


def validate_example(ex: Any) -> dict:
    """Check one example against the schema and return it unchanged; raise :class:`DataError` otherwise.

    ``instruction`` may be "" only when ``input`` carries the prompt (the published MixInstruct does
    this); a prompt that is empty in both is an error.
    """
    if not isinstance(ex, dict):
        raise DataError(f"an example must be a dict, got {type(ex).__name__}")
    ex_id = ex.get("id")
    where = f"example {ex_id!r}"
    missing = [key for key in REQUIRED_FIELDS if key not in ex]
    if missing:
        raise DataError(f"{where} lacks the field(s) {missing} (has {sorted(ex)})")
    unknown = sorted(set(ex) - set(REQUIRED_FIELDS) - set(OPTIONAL_FIELDS))
    if unknown:
        raise DataError(f"{where} has unknown field(s) {unknown}; allowed: {[*REQUIRED_FIELDS, *OPTIONAL_FIELDS]}")
    for key, kind in {**REQUIRED_FIELDS, **OPTIONAL_FIELDS}.items():
        if key in ex and not isinstance(ex[key], kind):
            raise DataError(f"{where}.{key} must be a {kind.__name__}, got {type(ex[key]).__name__}")
    _require_text(ex_id, "example id", allow_empty=False)
    if not (ex["instruction"].strip() or ex["input"].strip()):
        raise DataError(f"{where}.instruction is empty (and so is its input)")
    _validate_reference(ex, where)
    if not all(isinstance(tag, str) and tag for tag in ex["tags"]):
        raise DataError(f"{where}.tags must be non-empty strings, got {ex['tags']!r}")
    models = [_validate_candidate(c, f"{where}.candidates[{i}]") for i, c in enumerate(ex["candidates"])]
    duplicated = sorted({m for m in models if models.count(m) > 1})
    if duplicated:
        raise DataError(f"{where} has several candidates named {duplicated}; candidate model names must be unique")
    _validate_cmp_results(ex["cmp_results"], set(models), where)
    return ex


def validate_examples(examples: Iterable[Any]) -> list[dict]:
    """Validate every example and check that ids are unique."""
    checked = [validate_example(ex) for ex in examples]
    seen: set[str] = set()
    for ex in checked:
        if ex["id"] in seen:
            raise DataError(f"duplicate example id {ex['id']!r}")
        seen.add(ex["id"])
    return checked


def seeded_rows(n_total: int, k: int | None, seed: int = 0) -> list[int]:
    """``k`` row indices of ``n_total`` drawn without replacement with a seeded NumPy generator, in
    increasing order: a fixed subset of a split (training inputs, judged examples, controls). None,
    or a ``k`` of at least ``n_total``, keeps every row."""
    if isinstance(n_total, bool) or not isinstance(n_total, int) or n_total < 0:
        raise ValueError(f"n_total must be a non-negative integer, got {n_total!r}")
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
        raise ValueError(f"k must be a positive integer or None, got {k!r}")
    if k is None or k >= n_total:
        return list(range(n_total))
    return sorted(int(i) for i in np.random.default_rng(seed).choice(n_total, size=k, replace=False))


def make_example(
    *,
    id: str,
    instruction: str,
    output: str,
    input: str = "",
    source: str,
    tags: Sequence[str] = (),
    candidates: Sequence[dict] = (),
    cmp_results: Mapping[str, str] | None = None,
    has_reference: bool = True,
    meta: Mapping[str, Any] | None = None,
) -> dict:
    """Build a validated example; the optional keys are written only when they carry information."""
    ex: dict[str, Any] = {
        "id": id,
        "instruction": instruction,
        "input": input,
        "output": output,
        "candidates": [dict(c) if isinstance(c, Mapping) else c for c in candidates],  # bad ones: validation says
        "cmp_results": dict(cmp_results or {}),
        "source": source,
        "tags": list(tags),
    }
    if not has_reference:
        ex["has_reference"] = False
    if meta:
        ex["meta"] = dict(meta)
    return validate_example(ex)


# --------------------------------------------------------------------------------------------
# reading JSON / JSONL


@dataclass(frozen=True)
class Record:
    """One JSON object read from a file, with where it came from (``file:line`` or ``file[index]``)."""

    location: str
    row: dict


def _parse_jsonl_line(line: str) -> dict:
    value = json.loads(line)
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    return value


def _iter_jsonl(path: Path, on_error: OnError, skipped: list[str]) -> Iterator[Record]:
    # Lines are split as bytes and decoded one by one, so a non-UTF-8 byte is reported (or skipped)
    # with its line like any other malformed line, instead of aborting the whole file.
    with path.open("rb") as handle:
        for line_no, raw in enumerate(handle, start=1):
            location = f"{path}:{line_no}"
            try:
                line = raw.decode("utf-8")
                if not line.strip():
                    continue  # blank lines (e.g. a trailing newline) are not records
                yield Record(location, _parse_jsonl_line(line))
            except UnicodeDecodeError as err:
                reason = f"{location}: not valid UTF-8 (byte 0x{raw[err.start]:02x} at column {err.start + 1})"
                if on_error == "raise":
                    raise DataError(reason) from err
                skipped.append(reason)
            except ValueError as err:  # json.JSONDecodeError is a ValueError
                reason = f"{location}: {err}"
                if on_error == "raise":
                    raise DataError(reason) from err
                skipped.append(reason)


def _iter_json_array(path: Path, on_error: OnError, skipped: list[str]) -> Iterator[Record]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not valid UTF-8 (byte 0x{err.object[err.start]:02x} at offset {err.start})") from err
    except json.JSONDecodeError as err:
        raise DataError(
            f"{path}:{err.lineno}: invalid JSON ({err.msg}); "
            "a file with one JSON object per line should be named .jsonl"
        ) from err
    if not isinstance(value, list):
        raise DataError(f"{path}: expected a JSON array of objects, got a {type(value).__name__}")
    for index, row in enumerate(value):
        location = f"{path}[{index}]"
        if isinstance(row, dict):
            yield Record(location, row)
            continue
        reason = f"{location}: expected a JSON object, got {type(row).__name__}"
        if on_error == "raise":
            raise DataError(reason)
        skipped.append(reason)


def _check_on_error(on_error: Any) -> None:
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")


def read_records(path: str | Path, on_error: OnError = "raise") -> tuple[list[Record], list[str]]:
    """Read ``.jsonl``/``.ndjson`` (one object per line) or ``.json`` (an array) with each row's location."""
    path = Path(path)
    _check_on_error(on_error)
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    skipped: list[str] = []
    reader = _iter_json_array if path.suffix.lower() == ".json" else _iter_jsonl
    records = list(reader(path, on_error, skipped))
    return records, skipped


def read_jsonl(path: str | Path, on_error: OnError = "raise") -> tuple[list[dict], list[str]]:
    """Read a JSONL (or a ``.json`` array) into rows.

    A malformed line raises :class:`DataError` as ``file:line: reason`` (``on_error="raise"``) or is
    left out and reported in the second return value, one ``file:line: reason`` each (``"skip"``).
    """
    records, skipped = read_records(path, on_error)
    return [record.row for record in records], skipped


# --------------------------------------------------------------------------------------------
# shapes: one mapping per source layout, row -> example


@dataclass(frozen=True)
class MappingContext:
    """What a row mapping needs besides the row: the source name and the row's position."""

    source: str
    index: int
    reference_field: str | None = None


def _field(row: Mapping[str, Any], key: str, shape: str) -> Any:
    if key not in row:
        raise DataError(f"missing field {key!r} for the {shape} shape (the row has {sorted(row)})")
    return row[key]


def _text_field(row: Mapping[str, Any], key: str, shape: str) -> str:
    value = _field(row, key, shape)
    if not isinstance(value, str):
        raise DataError(f"field {key!r} must be a string for the {shape} shape, got {type(value).__name__}")
    return value


def _row_id(row: Mapping[str, Any], ctx: MappingContext, key: str = "id") -> str:
    raw = row.get(key)
    return f"{ctx.source}/{raw if raw not in (None, '') else ctx.index}"


def _map_alpaca(row: Mapping[str, Any], ctx: MappingContext) -> dict:
    return make_example(
        id=_row_id(row, ctx),
        instruction=_text_field(row, "instruction", "alpaca"),
        input=_text_field(row, "input", "alpaca"),
        output=_text_field(row, "output", "alpaca"),
        source=ctx.source,
    )


def _map_dolly(row: Mapping[str, Any], ctx: MappingContext) -> dict:
    category = row.get("category")
    return make_example(
        id=_row_id(row, ctx),
        instruction=_text_field(row, "instruction", "dolly"),
        input=_text_field(row, "context", "dolly"),
        output=_text_field(row, "response", "dolly"),
        source=ctx.source,
        tags=[category] if category else [],
    )


def _map_gpt4all(row: Mapping[str, Any], ctx: MappingContext) -> dict:
    origin = row.get("source")
    return make_example(
        id=_row_id(row, ctx),
        instruction=_text_field(row, "prompt", "gpt4all"),
        output=_text_field(row, "response", "gpt4all"),
        source=ctx.source,
        tags=[origin] if isinstance(origin, str) and origin else [],
    )


_HUMAN_ROLES = {"human", "user"}
_ASSISTANT_ROLES = {"gpt", "chatgpt", "assistant", "bard", "bing"}


def _first_exchange(turns: Any) -> tuple[str, str]:
    """The first human turn and the first assistant turn after it."""
    if not isinstance(turns, list):
        raise DataError(f"field 'conversations' must be a list of turns, got {type(turns).__name__}")
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            raise DataError(f"conversations[{i}] must be a dict with 'from' and 'value', got {turn!r}"[:300])
    human = next((i for i, t in enumerate(turns) if t["from"] in _HUMAN_ROLES), None)
    if human is None:
        raise DataError(f"the conversation has no human turn (roles: {[t['from'] for t in turns]})")
    reply = next((t for t in turns[human + 1 :] if t["from"] in _ASSISTANT_ROLES), None)
    if reply is None:
        raise DataError("the conversation has no assistant turn after its first human turn")
    return turns[human]["value"], reply["value"]


def _map_sharegpt(row: Mapping[str, Any], ctx: MappingContext) -> dict:
    instruction, output = _first_exchange(_field(row, "conversations", "sharegpt"))
    return make_example(id=_row_id(row, ctx), instruction=instruction, output=output, source=ctx.source)


def _alpaca_eval_reference(row: Mapping[str, Any], ctx: MappingContext) -> str | None:
    """The reference: ``reference_field`` if asked for, else ``output``, else none (a question-only row)."""
    if ctx.reference_field is not None:
        return _text_field(row, ctx.reference_field, "alpaca_eval")
    if "output" in row:
        return _text_field(row, "output", "alpaca_eval")
    return None


def _map_alpaca_eval(row: Mapping[str, Any], ctx: MappingContext) -> dict:
    reference = _alpaca_eval_reference(row, ctx)
    dataset = row.get("dataset")
    generator = row.get("generator")
    return make_example(
        id=_row_id(row, ctx),
        instruction=_text_field(row, "instruction", "alpaca_eval"),
        output=reference or "",
        has_reference=reference is not None,
        source=ctx.source,
        tags=[dataset] if dataset else [],
        meta={"generator": generator} if generator else None,
    )


def _map_mt_bench(row: Mapping[str, Any], ctx: MappingContext) -> dict:
    """MT-Bench: the first turn becomes the instruction, the first turn's reference (math, reasoning,
    coding, some extraction questions) the output when there is one."""
    turns = _field(row, "turns", "mt_bench")
    if not isinstance(turns, list) or not turns or not isinstance(turns[0], str):
        raise DataError(
            f"field 'turns' must be a non-empty list of strings for the mt_bench shape, got {turns!r}"[:300]
        )
    references = row.get("reference") or []
    # Some questions have a reference for the second turn only (turn 1 is ""): no reference then.
    reference = references[0] if references and references[0].strip() else None
    category = row.get("category")
    return make_example(
        id=_row_id(row, ctx, key="question_id"),
        instruction=turns[0],
        output=reference or "",
        has_reference=reference is not None,
        source=ctx.source,
        tags=[category] if category else [],
        meta={"question_id": _field(row, "question_id", "mt_bench"), "n_turns": len(turns)},
    )


def parse_cmp_results(value: Any) -> dict[str, str]:
    """MixInstruct's ``cmp_results``: a dict, or a JSON string of one; ``None``/"null"/"" mean no comparisons."""
    if value is None:
        return {}
    if isinstance(value, str):
        if not value.strip():
            return {}
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise DataError(f"cmp_results is not valid JSON: {err.msg}") from err
        if value is None:  # the published files write "null" for examples without comparisons
            return {}
    if not isinstance(value, dict):
        raise DataError(f"cmp_results must be a dict or a JSON string of one, got {type(value).__name__}")
    return value


def _mixinstruct_candidate(candidate: Any) -> Any:
    if not isinstance(candidate, dict) or not isinstance(candidate.get("scores"), dict):
        return candidate  # validation reports the problem with its position
    # Arrow stores candidates as structs: a score one candidate lacks comes back as None. Dropping
    # those None entries restores the original dict; a real score is never None.
    scores = {k: v for k, v in candidate["scores"].items() if v is not None}
    return {**candidate, "scores": scores}


def _map_mixinstruct(row: Mapping[str, Any], ctx: MappingContext) -> dict:
    ex_id = _field(row, "id", "mixinstruct")
    if not isinstance(ex_id, str):
        ex_id = str(ex_id)
    source = row.get("source") or (ex_id.split("/", 1)[0] if "/" in ex_id else ctx.source)
    tags = row.get("tags")
    candidates = _field(row, "candidates", "mixinstruct")
    if not isinstance(candidates, list):
        raise DataError(f"field 'candidates' must be a list, got {type(candidates).__name__}")
    return make_example(
        id=ex_id,
        instruction=_text_field(row, "instruction", "mixinstruct"),
        input=row.get("input") or "",
        output=_text_field(row, "output", "mixinstruct"),
        source=source,
        tags=tags if tags is not None else [source],
        candidates=[_mixinstruct_candidate(c) for c in candidates],
        cmp_results=parse_cmp_results(row.get("cmp_results")),
        has_reference=row.get("has_reference", True),
        meta=parse_meta(row.get("meta")),
    )


def parse_meta(value: Any) -> dict | None:
    """``meta`` as stored: a dict, or a JSON string (the Hugging Face copy of saved splits)."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = json.loads(value)
    if value is not None and not isinstance(value, dict):
        raise DataError(f"meta must be a dict, got {type(value).__name__}")
    return value


@dataclass(frozen=True)
class Shape:
    """A source layout: how to recognise it (any one key set) and how to map one row."""

    name: str
    detect: tuple[frozenset[str], ...]
    mapper: Callable[[Mapping[str, Any], MappingContext], dict]
    description: str


SHAPES: dict[str, Shape] = {
    shape.name: shape
    for shape in (
        Shape("alpaca", (frozenset({"instruction", "input", "output"}),), _map_alpaca, "instruction, input, output"),
        Shape(
            "dolly",
            (frozenset({"instruction", "context", "response"}),),
            _map_dolly,
            "instruction, context, response, category",
        ),
        Shape("gpt4all", (frozenset({"prompt", "response"}),), _map_gpt4all, "prompt, response (source)"),
        Shape("sharegpt", (frozenset({"conversations"}),), _map_sharegpt, "conversations: [{from, value}, ...]"),
        Shape(
            "alpaca_eval",
            (frozenset({"instruction", "dataset"}), frozenset({"instruction", "generator"})),
            _map_alpaca_eval,
            "instruction, output (optional), dataset / generator",
        ),
        Shape("mt_bench", (frozenset({"question_id", "turns"}),), _map_mt_bench, "question_id, category, turns"),
        Shape(
            "mixinstruct",
            (frozenset({"instruction", "input", "output", "candidates"}),),
            _map_mixinstruct,
            "id, instruction, input, output, candidates, cmp_results (this schema)",
        ),
    )
}


def _known_shapes_text() -> str:
    return "; ".join(f"{s.name} ({s.description})" for s in SHAPES.values())


def detect_shape(row: Mapping[str, Any]) -> str:
    """The shape whose keys a row has; when several match, the most specific key set wins.

    Raises :class:`DataError` for a row that matches none, or several equally specific ones.
    """
    keys = set(row)
    matches = {
        name: max((k for k in shape.detect if k <= keys), key=len)
        for name, shape in SHAPES.items()
        if any(k <= keys for k in shape.detect)
    }
    # A shape whose matched keys are a strict subset of another match's is less specific.
    best = [n for n, ks in matches.items() if not any(ks < other for other in matches.values())]
    if len(best) == 1:
        return best[0]
    if not best:
        raise DataError(f"unknown data shape: keys {sorted(keys)} match none of: {_known_shapes_text()}")
    raise DataError(f"ambiguous data shape: keys {sorted(keys)} match {sorted(best)}; pass shape= explicitly")


def _resolve_shape(shape: str, first_row: Mapping[str, Any] | None) -> str:
    if shape == "auto":
        if first_row is None:
            raise DataError("cannot detect the shape of an empty data set; pass shape= explicitly")
        return detect_shape(first_row)
    if shape not in SHAPES:
        raise DataError(f"unknown shape {shape!r}; known shapes: {_known_shapes_text()}, or 'auto'")
    return shape


def _warn_skipped(skipped: list[str], what: str) -> None:
    if skipped:
        shown = "\n  ".join(skipped[:5])
        more = f"\n  ... and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        warnings.warn(f"{what}: skipped {len(skipped)} row(s):\n  {shown}{more}", stacklevel=3)


def examples_from_rows(
    rows: Iterable[Mapping[str, Any]],
    shape: str = "auto",
    *,
    source: str | None = None,
    reference_field: str | None = None,
    on_error: OnError = "raise",
    locations: Sequence[str] | None = None,
) -> tuple[list[dict], list[str]]:
    """Map raw rows (dicts, or a ``datasets.Dataset``) of one shape into validated examples.

    ``source`` names the examples' origin (default: the shape's name). A row that does not map raises
    :class:`DataError` with its location, or with ``on_error="skip"`` is reported in the second return
    value. ``reference_field`` picks the reference column of AlpacaEval files that carry several.
    Duplicate ids always raise: they would corrupt every later join by id.
    """
    _check_on_error(on_error)  # any other value would silently act as "skip"
    rows = list(rows)
    shape = _resolve_shape(shape, rows[0] if rows else None)
    mapper = SHAPES[shape].mapper
    examples: list[dict] = []
    skipped: list[str] = []
    for index, row in enumerate(rows):
        location = locations[index] if locations is not None else f"row {index}"
        try:
            examples.append(mapper(row, MappingContext(source or shape, index, reference_field)))
        except DataError as err:
            if on_error == "raise":
                raise DataError(f"{location}: {err}") from err
            skipped.append(f"{location}: {err}")
    return validate_examples(examples), skipped


def load_local(
    path: str | Path,
    shape: str = "auto",
    *,
    source: str | None = None,
    reference_field: str | None = None,
    on_error: OnError = "raise",
) -> list[dict]:
    """Load a local JSON/JSONL file of a known shape (see :data:`SHAPES`) into examples.

    ``shape="auto"`` detects the shape from the first row's keys. Question-only rows (MT-Bench without
    a reference, AlpacaEval without an output) get ``output=""`` and ``has_reference=False``; any other
    missing reference is an error. ``on_error="skip"`` leaves out malformed lines and rows that do not
    map, with a warning listing them.
    """
    records, skipped_lines = read_records(path, on_error)
    examples, skipped_rows = examples_from_rows(
        [r.row for r in records],
        shape,
        source=source,
        reference_field=reference_field,
        on_error=on_error,
        locations=[r.location for r in records],
    )
    _warn_skipped(skipped_lines + skipped_rows, str(path))
    return examples


def load_seed_instructions(path: str | Path = SEED_FILE) -> list[dict]:
    """The project's own seed set: rows ``{id, category, instruction, input, output}`` as examples."""
    records, _ = read_records(path, "raise")
    examples = []
    for record in records:
        try:
            examples.append(
                make_example(
                    id=_text_field(record.row, "id", "seed"),
                    instruction=_text_field(record.row, "instruction", "seed"),
                    input=_text_field(record.row, "input", "seed"),
                    output=_text_field(record.row, "output", "seed"),
                    source="seed",
                    tags=[_text_field(record.row, "category", "seed")],
                )
            )
        except DataError as err:
            raise DataError(f"{record.location}: {err}") from err
    return validate_examples(examples)


# --------------------------------------------------------------------------------------------
# Hugging Face datasets


@dataclass(frozen=True)
class HubSource:
    """A known dataset on the hub: its shape, the source name its examples get, extra load arguments."""

    shape: str
    source: str
    load_kwargs: Mapping[str, Any] = field(default_factory=dict)


HUB_SOURCES: dict[str, HubSource] = {
    # The four instruction sources MixInstruct was built from, and MixInstruct itself.
    "vicgalle/alpaca-gpt4": HubSource("alpaca", "alpaca_gpt4"),
    "databricks/databricks-dolly-15k": HubSource("dolly", "dolly_15k"),
    "nomic-ai/gpt4all_prompt_generations": HubSource("gpt4all", "gpt4all"),
    # The repository holds several JSON files with different layouts; this is the cleaned one.
    "anon8231489123/ShareGPT_Vicuna_unfiltered": HubSource(
        "sharegpt", "sharegpt", {"data_files": "ShareGPT_V3_unfiltered_cleaned_split.json"}
    ),
    "llm-blender/mix-instruct": HubSource("mixinstruct", "mix-instruct"),
}


def _hub_source(dataset_id: str, shape: str | None) -> HubSource:
    """The built-in mapping for a known id; for any other id, the caller's ``shape``."""
    known = HUB_SOURCES.get(dataset_id)
    if shape is None:
        if known is None:
            raise DataError(
                f"no built-in field mapping for the dataset {dataset_id!r}; known ids: {sorted(HUB_SOURCES)}. "
                f"Pass shape= (one of {sorted(SHAPES)}) for a dataset laid out like one of them."
            )
        return known
    if shape != "auto" and shape not in SHAPES:
        raise DataError(f"unknown shape {shape!r}; known shapes: {_known_shapes_text()}, or 'auto'")
    if known is not None:
        return HubSource(shape, known.source, known.load_kwargs)
    return HubSource(shape, dataset_id.rsplit("/", 1)[-1])


def _load_hub_dataset(dataset_id: str, split: str, **kwargs: Any) -> Any:
    """``datasets.load_dataset`` with its failures (no network, offline mode, wrong id) explained."""
    import datasets

    try:
        return datasets.load_dataset(dataset_id, split=split, **kwargs)
    except (ConnectionError, OSError, FileNotFoundError, ValueError) as err:
        raise DataError(
            f"could not load {dataset_id!r} (split {split!r}) with datasets.load_dataset: "
            f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}. Loading from the hub needs "
            f"internet and HF_HUB_OFFLINE unset; offline, download the files elsewhere and use load_local()."
        ) from err


def load_hf(
    dataset_id: str,
    split: str = "train",
    shape: str | None = None,
    *,
    on_error: OnError = "raise",
    **kwargs: Any,
) -> list[dict]:
    """Load a hub dataset through ``datasets.load_dataset`` and map it into examples.

    Known ids (:data:`HUB_SOURCES`) carry their shape; any other id needs ``shape=``. Slice with the
    split string (``split="train[:1000]"``); ``kwargs`` go to ``load_dataset``. ``on_error="skip"``
    leaves out rows that do not map (ShareGPT has conversations without an assistant turn), with a
    warning listing them.
    """
    _check_on_error(on_error)
    hub = _hub_source(dataset_id, shape)
    rows = list(_load_hub_dataset(dataset_id, split, **{**hub.load_kwargs, **kwargs}))  # also a streamed one
    examples, skipped = examples_from_rows(
        rows,
        hub.shape,
        source=hub.source,
        on_error=on_error,
        locations=[f"{dataset_id}[{split}][{i}]" for i in range(len(rows))],
    )
    _warn_skipped(skipped, dataset_id)
    return examples


# --------------------------------------------------------------------------------------------
# cleaning


def _require_fields(ex: Any, n: int, keys: Sequence[str], what: str, kind: type) -> None:
    """A clear error for an example that lacks a field a cleaning step reads (instead of a KeyError)."""
    if not isinstance(ex, Mapping):
        raise DataError(f"{what}: example {n} must be a dict, got {type(ex).__name__}")
    for key in keys:
        if key not in ex:
            raise DataError(f"{what}: example {ex.get('id', n)!r} lacks the field {key!r} (has {sorted(ex)})")
        if not isinstance(ex[key], kind):
            raise DataError(f"{what}: example {ex.get('id', n)!r}.{key} must be a {kind.__name__}, "
                            f"got {type(ex[key]).__name__}")


def _normalise(text: str) -> str:
    return " ".join(text.casefold().split())


def deduplicate(examples: Sequence[dict]) -> tuple[list[dict], int]:
    """Keep the first example of each (instruction, input), compared case- and whitespace-insensitively."""
    seen: set[tuple[str, str]] = set()
    kept = []
    for n, ex in enumerate(examples):
        _require_fields(ex, n, ("instruction", "input"), "deduplicate", str)
        key = (_normalise(ex["instruction"]), _normalise(ex["input"]))
        if key not in seen:
            seen.add(key)
            kept.append(ex)
    return kept, len(examples) - len(kept)


def _word_count(text: str) -> int:
    return len(text.split())


def _length_problem(
    ex: dict, max_instruction_words: int | None, max_output_words: int | None, min_output_words: int | None
) -> str | None:
    prompt_words = _word_count(ex["instruction"]) + _word_count(ex["input"])
    output_words = _word_count(ex["output"])
    if max_instruction_words is not None and prompt_words > max_instruction_words:
        return f"instruction+input has {prompt_words} words > max_instruction_words={max_instruction_words}"
    if max_output_words is not None and output_words > max_output_words:
        return f"output has {output_words} words > max_output_words={max_output_words}"
    if min_output_words is not None and output_words < min_output_words:
        return f"output has {output_words} words < min_output_words={min_output_words}"
    return None


def filter_by_length(
    examples: Sequence[dict],
    max_instruction_words: int | None = None,
    max_output_words: int | None = None,
    min_output_words: int | None = None,
) -> tuple[list[dict], list[tuple[str, str]]]:
    """Keep examples within the word limits (None = no limit); return the kept and ``(id, reason)`` skips.

    The instruction limit counts the whole prompt (instruction + input), which is what the models read.
    """
    for name, value in (
        ("max_instruction_words", max_instruction_words),
        ("max_output_words", max_output_words),
        ("min_output_words", min_output_words),
    ):
        if value is not None and (not isinstance(value, int) or value < 0):
            raise ValueError(f"{name} must be a non-negative integer or None, got {value!r}")
    kept, skipped = [], []
    for ex in examples:
        problem = _length_problem(ex, max_instruction_words, max_output_words, min_output_words)
        if problem is None:
            kept.append(ex)
        else:
            skipped.append((ex["id"], problem))
    return kept, skipped


# --------------------------------------------------------------------------------------------
# splits


_SPLIT_NAME = re.compile(r"^\w+$")


def _split_counts(sizes: Mapping[str, int | float], n: int) -> dict[str, int]:
    """Turn sizes (all counts, or all fractions of ``n``) into counts; error when they exceed the data."""
    if not sizes:
        raise ValueError("sizes must name at least one split")
    for name, size in sizes.items():
        if not isinstance(name, str) or not _SPLIT_NAME.match(name):
            raise ValueError(f"split name {name!r} must be letters, digits or underscores")
        if isinstance(size, bool) or not isinstance(size, (int, float)) or size < 0:
            raise ValueError(f"split size for {name!r} must be a non-negative number, got {size!r}")
    if all(isinstance(s, int) for s in sizes.values()):
        counts = {name: int(size) for name, size in sizes.items()}
    elif all(isinstance(s, float) for s in sizes.values()):
        if sum(sizes.values()) > 1 + 1e-9:
            raise ValueError(f"split fractions sum to {sum(sizes.values()):.4f} > 1: {dict(sizes)}")
        counts = _fractions_to_counts(sizes, n)
    else:
        raise ValueError(f"split sizes must be all counts (int) or all fractions (float), got {dict(sizes)}")
    if sum(counts.values()) > n:
        raise ValueError(f"split sizes {counts} need {sum(counts.values())} examples but only {n} are given")
    return counts


def _fractions_to_counts(fractions: Mapping[str, float], n: int) -> dict[str, int]:
    """Largest-remainder rounding, so fractions summing to 1 use every example."""
    exact = {name: frac * n for name, frac in fractions.items()}
    counts = {name: math.floor(value) for name, value in exact.items()}
    target = min(n, round(sum(exact.values())))
    by_remainder = sorted(exact, key=lambda name: (-(exact[name] - counts[name]), name))
    for name in by_remainder[: max(0, target - sum(counts.values()))]:
        counts[name] += 1
    return counts


def _stratified_order(examples: Sequence[dict], seed: int) -> list[int]:
    """Indices in an order where every contiguous stretch holds each stratum in proportion.

    Each stratum (first tag, "" if none) is shuffled with the seed and spread evenly over [0, 1) with a
    random offset; sorting by that position interleaves the strata (systematic sampling). Only lists
    and ``random.Random`` are involved, so the order does not depend on Python's hash seed.
    """
    rng = random.Random(seed)
    strata: dict[str, list[int]] = defaultdict(list)
    for index, ex in enumerate(examples):
        strata[ex["tags"][0] if ex["tags"] else ""].append(index)
    keyed: list[tuple[float, str, int]] = []
    for name in sorted(strata):
        members = strata[name]
        rng.shuffle(members)
        offset = rng.random()
        keyed.extend(((rank + offset) / len(members), name, index) for rank, index in enumerate(members))
    return [index for _, _, index in sorted(keyed)]


def split_examples(
    examples: Sequence[dict], sizes: Mapping[str, int | float] | None = None, seed: int = 0
) -> dict[str, list[dict]]:
    """Seeded, stratified (by first tag) split into named parts, in the order ``sizes`` lists them.

    ``sizes`` holds counts (default ``{"train": 300, "val": 30, "test": 70}``) or fractions. Examples
    beyond the requested sizes are left out on purpose (a subsample); the number is logged. Each part
    keeps the input order of its examples. Same input and seed -> same split, in any process.
    """
    counts = _split_counts(DEFAULT_SPLIT_SIZES if sizes is None else sizes, len(examples))
    for n, ex in enumerate(examples):
        _require_fields(ex, n, ("id",), "split_examples", str)
        _require_fields(ex, n, ("tags",), "split_examples", list)
    duplicated = sorted(i for i, n in Counter(ex["id"] for ex in examples).items() if n > 1)
    if duplicated:
        raise DataError(f"duplicate example ids: {duplicated[:10]}")
    order = _stratified_order(examples, seed)
    splits, start = {}, 0
    for name, count in counts.items():
        splits[name] = [examples[i] for i in sorted(order[start : start + count])]
        start += count
    if start < len(examples):
        log.info(
            "split_examples: %d of %d examples are in no split (sizes %s)", len(examples) - start, len(examples), counts
        )
    return splits


# --------------------------------------------------------------------------------------------
# save / load


def _to_jsonl(examples: Sequence[dict]) -> str:
    return "".join(json.dumps(ex, ensure_ascii=False) + "\n" for ex in examples)


def _to_hf_row(ex: dict) -> dict:
    """One example as a Hugging Face row: ``cmp_results`` and ``meta`` as JSON strings (their keys vary,
    which an Arrow struct column cannot hold), ``has_reference`` always present."""
    row = {key: ex[key] for key in REQUIRED_FIELDS}
    row["cmp_results"] = json.dumps(ex["cmp_results"], ensure_ascii=False)
    row["has_reference"] = ex.get("has_reference", True)
    row["meta"] = json.dumps(ex.get("meta") or {}, ensure_ascii=False)
    row["cmp_results_raw"] = json.dumps(ex.get("cmp_results_raw") or {}, ensure_ascii=False)
    return row


def _save_hf_copy(splits: Mapping[str, Sequence[dict]], target: Path) -> None:
    """``DatasetDict.save_to_disk`` into a temporary folder, then swap it in, so no half-written copy remains."""
    import datasets

    dataset_dict = datasets.DatasetDict(
        {name: datasets.Dataset.from_list([_to_hf_row(ex) for ex in part]) for name, part in splits.items()}
    )
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        dataset_dict.save_to_disk(str(staging))
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
            staging.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def save_splits(splits: Mapping[str, Sequence[dict]], folder: str | Path) -> Path:
    """Write ``<split>.jsonl`` per split, a ``splits.json`` manifest (counts) and a Hugging Face copy in
    ``folder/hf`` (``DatasetDict.save_to_disk``; there ``cmp_results`` and ``meta`` are JSON strings).

    Splits are validated first, and an id in two splits is an error (a leak between train and test).
    """
    folder = Path(folder)
    seen: dict[str, str] = {}
    for name, part in splits.items():
        if not _SPLIT_NAME.match(name):
            raise ValueError(f"split name {name!r} must be letters, digits or underscores")
        for ex in validate_examples(part):
            if ex["id"] in seen:
                raise DataError(f"example {ex['id']!r} is in both split {seen[ex['id']]!r} and {name!r}")
            seen[ex["id"]] = name
    folder.mkdir(parents=True, exist_ok=True)
    for name, part in splits.items():
        atomic_write_text(folder / f"{name}.jsonl", _to_jsonl(part))
    _save_hf_copy(splits, folder / "hf")
    atomic_write_json(folder / "splits.json", {"splits": {name: len(part) for name, part in splits.items()}})
    return folder


def _load_split_file(path: Path, expected: int | None) -> list[dict]:
    records, _ = read_records(path, "raise")
    try:
        examples = validate_examples(_map_mixinstruct(r.row, MappingContext("saved", i)) for i, r in enumerate(records))
    except DataError as err:
        raise DataError(f"{path}: {err}") from err
    if expected is not None and len(examples) != expected:
        raise DataError(
            f"{path} holds {len(examples)} examples but splits.json says {expected}: the file is incomplete"
        )
    return examples


def load_splits(folder: str | Path) -> dict[str, list[dict]]:
    """Read the splits that :func:`save_splits` wrote (the JSONL files), validated and count-checked."""
    folder = Path(folder)
    manifest = folder / "splits.json"
    if manifest.is_file():
        try:
            expected: dict[str, int | None] = json.loads(manifest.read_text(encoding="utf-8"))["splits"]
        except (ValueError, KeyError, TypeError) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise DataError(f"{manifest} is not a splits manifest ({type(err).__name__}: {err}); expected "
                            f'{{"splits": {{name: count}}}} as save_splits writes it') from err
        if not isinstance(expected, dict):
            raise DataError(f'{manifest}: "splits" must map split names to counts, got {type(expected).__name__}')
    else:
        expected = {path.stem: None for path in sorted(folder.glob("*.jsonl"))}
    if not expected:
        raise DataError(f"no splits found in {folder} (expected <split>.jsonl files from save_splits)")
    return {name: _load_split_file(folder / f"{name}.jsonl", count) for name, count in expected.items()}


# --------------------------------------------------------------------------------------------
# analysis table


def to_dataframe(examples: Sequence[dict]) -> Any:
    """A long ``pandas.DataFrame``: one row per candidate with id, source, first tag, model,
    decoding method, text length (characters, words) and one column per score."""
    import pandas as pd

    rows = [
        {
            "id": ex["id"],
            "source": ex["source"],
            "tag": ex["tags"][0] if ex["tags"] else "",
            "model": cand["model"],
            "decoding_method": cand["decoding_method"],
            "text_chars": len(cand["text"]),
            "text_words": _word_count(cand["text"]),
            **cand["scores"],
        }
        for ex in examples
        for cand in ex["candidates"]
    ]
    columns = ["id", "source", "tag", "model", "decoding_method", "text_chars", "text_words"]
    return pd.DataFrame(rows, columns=None if rows else columns)
