"""Checks shared by the library's configuration dataclasses."""

from __future__ import annotations

import types
import typing
from dataclasses import fields
from functools import cache
from typing import Any

import numpy as np


@cache
def _type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def check_field_types(config: Any) -> None:
    """A clear ``TypeError`` naming the field for a dataclass config value of the wrong type
    (``epochs="3"``, ``lr="fast"``, ``bf16="no"``), from the fields' annotations: int (not bool), float
    (an int is fine), bool, str, ``X | None``, and tuples of str (a list is fine: JSON gives lists back)."""
    hints = _type_hints(type(config))
    for f in fields(config):
        hint, value = hints.get(f.name), getattr(config, f.name)
        options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
        if value is None and type(None) in options:
            continue
        ok = False
        for option in options:
            origin = typing.get_origin(option) or option
            if option is type(None):
                ok = value is None
            elif option is bool:
                ok = isinstance(value, (bool, np.bool_))
            elif option is int:
                ok = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
            elif option is float:
                ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
            elif option is str:
                ok = isinstance(value, str)
            elif origin is tuple:
                ok = isinstance(value, (tuple, list)) and all(isinstance(v, str) for v in value)
            else:
                ok = True  # a type this check does not know: left to the field's own validation
            if ok:
                break
        if not ok:
            expected = " or ".join("None" if o is type(None) else getattr(o, "__name__", str(o)) for o in options)
            raise TypeError(f"{type(config).__name__}.{f.name} must be {expected}, got {type(value).__name__} "
                            f"{value!r}")


def check_training_settings(config: Any, sizes: tuple[str, ...]) -> None:
    """The checks every trainer's config shares: sizes >= 1, warmup_ratio in [0, 1), freeze_layers >= 0."""
    for name in sizes:
        if int(getattr(config, name)) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(config, name)}")
    if not 0.0 <= config.warmup_ratio < 1.0:
        raise ValueError(f"warmup_ratio must be in [0, 1), got {config.warmup_ratio}")
    if int(config.freeze_layers) < 0:
        raise ValueError(f"freeze_layers must be >= 0, got {config.freeze_layers}")


def config_from_dict(cls: Any, values: Any, what: str) -> Any:
    """``cls(**values)``, with unknown names refused first, naming the known ones."""
    known = [f.name for f in fields(cls)]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"unknown {what} parameter(s) {unknown}; known: {known}")
    return cls(**values)
