"""Shared test fixtures: offline mode, example builders, small files, the optional shared real data."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

# Tests never touch the Hugging Face hub: set before any test module imports huggingface_hub,
# which reads these once at import.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def build_example(
    ex_id: str = "ex-1",
    *,
    models: Iterable[str] = ("model-a", "model-b"),
    texts: Iterable[str] | None = None,
    output: str = "Paris is the capital of France.",
    tag: str = "open_qa",
    **overrides: Any,
) -> dict:
    """A valid example in the MixInstruct schema with one candidate per model."""
    models = list(models)
    texts = list(texts) if texts is not None else [f"Answer from {m}." for m in models]
    example = {
        "id": ex_id,
        "instruction": "What is the capital of France?",
        "input": "",
        "output": output,
        "candidates": [
            {"model": m, "decoding_method": "greedy", "text": t, "scores": {}}
            for m, t in zip(models, texts, strict=True)
        ],
        "cmp_results": {},
        "source": "test",
        "tags": [tag],
    }
    example.update(overrides)
    return example


@pytest.fixture
def make_example() -> Callable[..., dict]:
    """Factory for valid examples; keyword arguments override fields."""
    return build_example


@pytest.fixture
def write_lines(tmp_path: Path) -> Callable[[str, Iterable[Any]], Path]:
    """Write a file under tmp_path: dict items become JSON lines, str items are written verbatim."""

    def write(name: str, items: Iterable[Any]) -> Path:
        path = tmp_path / name
        lines = [item if isinstance(item, str) else json.dumps(item) for item in items]
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        return path

    return write


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The read-only real-data folder beside the project, or a skip saying why it is absent."""
    from blender_lib.paths import shared_data_dir

    folder = shared_data_dir()
    if folder is None:
        pytest.skip(
            "shared real data not present (../shared/data or $BLENDER_BOOK_SHARED_DATA); a fresh machine lacks it"
        )
    return folder
