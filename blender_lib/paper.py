"""The published tables the book prints beside its own numbers (``data/paper_numbers``).

Only figures printed in the papers live there, each with its source; nothing is computed from them.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

PAPER_NUMBERS = Path(__file__).resolve().parent.parent / "data" / "paper_numbers"
TABLES = {
    "llm_blender_table2": "llm_blender_table2_mixinstruct.csv",
    "llm_blender_table3": "llm_blender_table3_rank_correlation.csv",
    "routellm_commercial_routers": "routellm_commercial_routers_mt_bench.csv",
}


def published_table(name: str) -> pd.DataFrame:
    """One published table, indexed by its method column."""
    if name not in TABLES:
        raise KeyError(f"unknown published table {name!r}; known: {sorted(TABLES)}")
    path = PAPER_NUMBERS / TABLES[name]
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: it ships with the repository (data/paper_numbers)")
    return pd.read_csv(path).set_index("method")
