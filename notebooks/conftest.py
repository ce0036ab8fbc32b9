"""nbval configuration of the chapters.

Chapter 6 reads public third-party data (AlpacaEval, LLMBar, FLASK) that is never copied into this
repository: ``$BLENDER_BOOK_SHARED_DATA`` or ``../shared/data`` (see ``blender_lib.real_data``).
Where that folder (or one of the datasets it needs) is absent, every cell of that chapter is
skipped with the reason, so ``make test`` passes on a fresh machine; where it is present, nbval
re-executes the chapter and compares its outputs like any other.
"""

from __future__ import annotations

import pytest

from blender_lib.paths import shared_data_dir

# chapter notebook -> the dataset folders it reads under the shared data folder
REAL_DATA_CHAPTERS = {"06_real_llms.ipynb": ("alpaca_eval", "llmbar", "flask")}


def missing_real_data(datasets: tuple[str, ...]) -> str | None:
    """Why a real-data chapter cannot run here, or None when its data is present."""
    root = shared_data_dir()
    if root is None:
        return ("the shared real data is absent (neither $BLENDER_BOOK_SHARED_DATA nor ../shared/data is a folder); "
                "see blender_lib/real_data.py for where to get AlpacaEval, LLMBar and FLASK")
    lacking = [name for name in datasets if not (root / name).is_dir()]
    if lacking:
        return f"the shared real data at {root} lacks {lacking}; see blender_lib/real_data.py for where to get them"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reasons: dict[str, str | None] = {}
    for item in items:
        name = item.path.name
        if name not in REAL_DATA_CHAPTERS:
            continue
        if name not in reasons:
            reasons[name] = missing_real_data(REAL_DATA_CHAPTERS[name])
        if reasons[name] is not None:
            item.add_marker(pytest.mark.skip(reason=f"{name}: {reasons[name]}"))
