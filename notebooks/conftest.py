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

from blender_lib.preflight import ChapterNeeds, chapter_needs, real_data_findings


def missing_real_data(name: str, needs: ChapterNeeds) -> str | None:
    """Why a real-data chapter cannot run here (the runner's own check, parameters left at their
    defaults), or None when its data is present."""
    findings = real_data_findings(name, needs, {})
    return f"{findings[0].problem}; {findings[0].fix}" if findings else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reasons: dict[str, str | None] = {}
    for item in items:
        name = item.path.name
        if name not in reasons:  # each chapter's notebook metadata declares the real data it reads
            needs = chapter_needs(item.path) if item.path.suffix == ".ipynb" else None
            reasons[name] = missing_real_data(name, needs) if needs and needs.real_data else None
        if reasons[name] is not None:
            item.add_marker(pytest.mark.skip(reason=f"{name}: {reasons[name]}"))
