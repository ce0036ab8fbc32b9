"""Each chapter writes its headline numbers to ``results/<notebook stem>.json``.

The results chapter, the tests and the benchmarks read these files; nothing is retyped.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .io import atomic_write_json
from .paths import results_dir as default_results_dir


def _rounded(value: Any, digits: int) -> Any:
    """Round floats recursively so stored results are stable across platforms."""
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise ValueError(f"refusing to store a non-finite number in results: {value!r}")
        return round(value, digits)
    if isinstance(value, dict):
        return {str(k): _rounded(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(v, digits) for v in value]
    if hasattr(value, "item"):  # numpy / torch scalars
        return _rounded(value.item(), digits)
    return value


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
