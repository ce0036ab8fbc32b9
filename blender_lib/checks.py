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
