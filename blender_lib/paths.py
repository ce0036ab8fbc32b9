"""Where the project and its caches live."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

PROJECT_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"
RESULTS_DIR = PROJECT_ROOT / "results"
DATA_DIR = PROJECT_ROOT / "data"
PARAMS_DIR = PROJECT_ROOT / "params"
BENCHMARKS_DIR = PROJECT_ROOT / "benchmarks"

CACHE_ENV_VAR = "BLENDER_BOOK_CACHE"
RESULTS_ENV_VAR = "BLENDER_BOOK_RESULTS_DIR"
DATA_ENV_VAR = "BLENDER_BOOK_DATA_DIR"
SHARED_DATA_ENV_VAR = "BLENDER_BOOK_SHARED_DATA"


def results_dir() -> Path:
    """Where chapters write their numbers: ``results/``, or a batch run's own folder (set by the runner)."""
    configured = os.environ.get(RESULTS_ENV_VAR)
    return Path(configured) if configured else RESULTS_DIR


def data_dir() -> Path:
    """Where chapter 1 writes the built MixInstruct and its caches (``mixinstruct/``, ``cache/``):
    ``$BLENDER_BOOK_DATA_DIR`` if set (a batch run of another profile that must leave the committed
    build alone), else the project's ``data/``. The seed instructions and the papers' tables are
    inputs and always come from ``data/``."""
    configured = os.environ.get(DATA_ENV_VAR)
    return Path(configured).expanduser() if configured else DATA_DIR


def cache_dir() -> Path:
    """The cache root: ``$BLENDER_BOOK_CACHE`` if set, else the user's cache folder."""
    configured = os.environ.get(CACHE_ENV_VAR)
    root = Path(configured).expanduser() if configured else Path(platformdirs.user_cache_dir("blender-book"))
    root.mkdir(parents=True, exist_ok=True)
    return root


FETCH_MANIFEST = "MANIFEST.json"  # written by real_data_fetch once a dataset is complete


def fetched_data_dir() -> Path:
    """Where ``blender-book fetch-data`` puts the public real data: ``<cache>/public-data``."""
    return cache_dir() / "public-data"


def shared_data_dir() -> Path | None:
    """The read-only real-data folder (``$BLENDER_BOOK_SHARED_DATA`` or ``../shared/data``), if present."""
    configured = os.environ.get(SHARED_DATA_ENV_VAR)
    candidate = Path(configured) if configured else PROJECT_ROOT.parent / "shared" / "data"
    return candidate if candidate.is_dir() else None
