"""Adapters turn a dataset's own annotation files into manifest rows (one module each)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from supportset.data.adapters import demo, manifest_csv

Adapter = Callable[[Path], tuple[list[dict], list[dict]]]

ADAPTERS: dict[str, Adapter] = {"demo": demo.read, "manifest": manifest_csv.read}
