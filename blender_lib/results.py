"""Each chapter writes its headline numbers to ``results/<notebook stem>.json``.

The results chapter, the tests and the benchmarks read these files; nothing is retyped.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

from .io import atomic_write_json
from .paths import results_dir as default_results_dir


def _rounded(value: Any, digits: int) -> Any:
    """Round floats recursively so stored results are stable across platforms: to ``digits`` decimals,
    or to two significant digits below 10^(1 - digits), where decimals would erase the number."""
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise ValueError(f"refusing to store a non-finite number in results: {value!r}")
        if 0 < abs(value) < 10 ** (1 - digits):  # a learning rate of 5e-05 is not 0.0001
            return float(f"{value:.2g}")
        return round(value, digits)
    if isinstance(value, dict):
        return {str(k): _rounded(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(v, digits) for v in value]
    if hasattr(value, "item"):  # numpy / torch scalars
        return _rounded(value.item(), digits)
    return value


def table_records(table: "pd.DataFrame") -> dict[str, dict[str, Any]]:
    """A table as {row: {column: value}} for :func:`write_results`: a multi-level row label joined
    with " | ", an undefined cell (NaN: a rate over no pairs, the rank correlation of a ranker whose
    scores never vary) stored as null, not as a number; every other non-finite number is refused."""
    out = {}
    for key, row in table.to_dict(orient="index").items():
        name = " | ".join(map(str, key)) if isinstance(key, tuple) else str(key)
        out[name] = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
    return out


def rows_by_id(table: "pd.DataFrame", labels: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """A table indexed by selector ids as ``{id: {"label": its label, column: value}}`` (NaN as None,
    like :func:`table_records`): results files key selectors by their stable id, chapter 7 shows the label."""
    missing = [i for i in table.index if i not in labels]
    if missing:
        raise KeyError(f"no label for selector id(s) {missing}; labels know {list(labels)}")
    return {name: {"label": labels[name], **row} for name, row in table_records(table).items()}


def write_results(stem: str, results: dict[str, Any], *, digits: int = 4, results_dir: Path | None = None) -> Path:
    """Store a chapter's headline numbers (floats rounded to ``digits``)."""
    if not stem or "/" in stem:
        raise ValueError(f"results stem must be a notebook stem like '00_setup', got {stem!r}")
    return atomic_write_json((results_dir or default_results_dir()) / f"{stem}.json", _rounded(results, digits))


def read_results(stem: str, *, results_dir: Path | None = None) -> dict[str, Any]:
    """Load a chapter's results; a clear error names the chapter to run when it is missing."""
    path = (results_dir or default_results_dir()) / f"{stem}.json"
    if not path.exists():
        raise FileNotFoundError(f"no results for chapter {stem!r} at {path}: execute notebooks/{stem}.ipynb first")
    return json.loads(path.read_text(encoding="utf-8"))
