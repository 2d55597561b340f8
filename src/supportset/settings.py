"""Build the settings dataclasses of each stage from plain mappings (JSON from the rules)."""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


def from_mapping(cls: type[T], values: Mapping[str, Any]) -> T:
    """Instantiate dataclass `cls` from `values`, recursing into nested dataclass fields.

    Unknown keys raise ValueError naming them; missing keys take the dataclass defaults.
    """
    hints = typing.get_type_hints(cls)
    names = {field.name for field in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown setting(s) {', '.join(unknown)}")
    kwargs = {}
    for name, value in values.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint) and isinstance(value, Mapping):
            value = from_mapping(hint, value)
        kwargs[name] = value
    return cls(**kwargs)


def from_json(cls: type[T], text: str) -> T:
    """Instantiate dataclass `cls` from a JSON object string."""
    return from_mapping(cls, json.loads(text))
