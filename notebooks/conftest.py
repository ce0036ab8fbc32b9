"""nbval configuration of the chapters.

Chapter 6 reads public third-party data (AlpacaEval, LLMBar, FLASK) that is never copied into this
repository: ``$BLENDER_BOOK_SHARED_DATA``, ``../shared/data`` or what ``blender-book fetch-data``
downloaded (see ``blender_lib.real_data``); its notebook metadata declares which datasets it reads.
Where that folder (or one of the datasets it needs) is absent, every cell of that chapter is
skipped with the reason, so ``make test`` passes on a fresh machine; where it is present, nbval
re-executes the chapter and compares its outputs like any other.
"""

from __future__ import annotations

import pytest

from blender_lib.preflight import chapter_needs
from blender_lib.real_data import find_data_root


def missing_real_data(datasets: tuple[str, ...]) -> str | None:
    """Why a real-data chapter cannot run here, or None when its data is present."""
    root = find_data_root()
    if root is None:
        return ("the real data is absent (no $BLENDER_BOOK_SHARED_DATA, ../shared/data or `blender-book fetch-data` "
                "copy); see blender_lib/real_data.py for where to get AlpacaEval, LLMBar and FLASK")
    lacking = [name for name in datasets if not (root / name).is_dir()]
    if lacking:
        return f"the real data at {root} lacks {lacking}; see blender_lib/real_data.py for where to get them"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reasons: dict[str, str | None] = {}
    for item in items:
        name = item.path.name
        if name not in reasons:  # each chapter's notebook metadata declares the real data it reads
            needs = chapter_needs(item.path).real_data if item.path.suffix == ".ipynb" else ()
            reasons[name] = missing_real_data(needs) if needs else None
        if reasons[name] is not None:
            item.add_marker(pytest.mark.skip(reason=f"{name}: {reasons[name]}"))
