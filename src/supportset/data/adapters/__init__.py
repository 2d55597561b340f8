"""Adapters turn a dataset's own annotation files into manifest rows (one module each).

Each adapter reads `root` (the dataset folder, laid out as the README describes) for one
split choice and returns (videos, captions) rows of the manifest schema. `files` names the
annotation files a split choice reads, so the DAG reruns `prepare` when they change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from supportset.data.adapters import (
    actions,
    activitynet,
    demo,
    howto100m,
    manifest_csv,
    msrvtt,
    msvd,
    vatex,
)

Rows = tuple[list[dict], list[dict]]


@dataclass(frozen=True)
class Adapter:
    read: Callable[[Path, str], Rows]  # (root, split choice) -> (videos, captions)
    splits: tuple[str, ...]  # split choices; the first is the default
    files: Callable[[Path, str], list[str]]  # annotation files (relative to root) of a choice

    def choose_split(self, split: str) -> str:
        """`split`, or the default for "", checked against the choices."""
        chosen = split or self.splits[0]
        if chosen not in self.splits:
            raise ValueError(f"unknown split '{split}' (choices: {', '.join(self.splits)})")
        return chosen


ADAPTERS: dict[str, Adapter] = {
    "demo": Adapter(
        lambda root, _: demo.read(root), ("standard",), lambda *_: ["annotations.json"]
    ),
    "manifest": Adapter(
        lambda root, _: manifest_csv.read(root),
        ("standard",),
        lambda *_: ["videos.csv", "captions.csv"],
    ),
    "msrvtt": Adapter(msrvtt.read, msrvtt.SPLITS, msrvtt.files),
    "msvd": Adapter(msvd.read, msvd.SPLITS, msvd.files),
    "vatex": Adapter(vatex.read, vatex.SPLITS, vatex.files),
    "activitynet": Adapter(activitynet.read, activitynet.SPLITS, activitynet.files),
    "howto100m": Adapter(howto100m.read, howto100m.SPLITS, howto100m.files),
    "hmdb51": Adapter(actions.read_hmdb, actions.FOLDS, actions.hmdb_files),
    "ucf101": Adapter(actions.read_ucf, actions.FOLDS, actions.ucf_files),
}
