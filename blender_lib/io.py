"""Small I/O helpers: atomic writes so an interrupted run never leaves a half-written file."""

from __future__ import annotations

import json
import os
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` via a temporary file in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as pretty, key-sorted JSON (stable diffs) atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


@dataclass
class JsonlCache:
    """An append-only JSONL cache of rows with a ``key`` (generations, judgments, scores).

    Batches are appended whole and fsynced; a line cut short by a kill is detected on load,
    dropped and counted (``truncated_lines``), so nothing half-written is ever used.
    """

    path: Path
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    truncated_lines: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def open(cls, path: str | Path) -> "JsonlCache":
        cache = cls(Path(path))
        if cache.path.exists():
            raw = cache.path.read_bytes()
            for line in raw.split(b"\n"):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    cache.truncated_lines += 1
                    continue
                cache.entries[row["key"]] = row
            if not raw.endswith(b"\n") and raw:
                # The kill cut the last line: rewrite the file without it before appending.
                cache._rewrite()
        return cache

    def _rewrite(self) -> None:
        atomic_write_text(self.path, "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in self.entries.values()))

    def get(self, key: str) -> dict[str, Any] | None:
        return self.entries.get(key)

    def add_batch(self, rows: list[dict[str, Any]]) -> None:
        with self._lock:
            fresh = [r for r in rows if r["key"] not in self.entries]
            if not fresh:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write("".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in fresh))
                handle.flush()
                os.fsync(handle.fileno())
            for r in fresh:
                self.entries[r["key"]] = r
