"""Adapters turn a dataset's own annotation files into manifest rows (one module each).

Each adapter reads `root` (the dataset folder, laid out as the README describes) for one
split choice and returns (videos, captions) rows of the manifest schema; captions too many
to hold as Python rows (HowTo100M's) come as a manifest.CaptionStream instead. `files` names
the annotation files a split choice reads, so the DAG reruns `prepare` when they change, and
`protocols` the evaluation protocol (retrieval.metrics.PROTOCOLS) each split choice was
published with.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
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
from supportset.data.manifest import CaptionStream

Rows = tuple[list[dict], list[dict] | CaptionStream]


@dataclass(frozen=True)
class Adapter:
    read: Callable[[Path, str], Rows]  # (root, split choice) -> (videos, captions)
    splits: tuple[str, ...]  # split choices; the first is the default
    files: Callable[[Path, str], list[str]]  # annotation files (relative to root) of a choice
    protocols: Mapping[str, str | None]  # split choice -> published protocol (None: none)
    # the split choices whose manifests label the videos for the action probe (class =
    # caption text, caption_id = video_id); () for datasets the probe does not read
    probe_folds: tuple[str, ...] = ()

    def choose_split(self, split: str) -> str:
        """`split`, or the default for "", checked against the choices."""
        chosen = split or self.splits[0]
        if chosen not in self.splits:
            raise ValueError(f"unknown split '{split}' (choices: {', '.join(self.splits)})")
        return chosen

    def protocol(self, split: str) -> str | None:
        """The evaluation protocol split choice `split` ("" = the default) was published
        with: multi-caption, one-caption or paragraph; None for the action-recognition
        datasets, which the paper scores by classification accuracy, not retrieval."""
        return self.protocols[self.choose_split(split)]


STANDARD = ("standard",)
EVERY_CAPTION = {"standard": "multi-caption"}

ADAPTERS: dict[str, Adapter] = {
    "demo": Adapter(
        demo.read, demo.SPLITS, lambda *_: ["annotations.json"], demo.PROTOCOLS, demo.PROBE_FOLDS
    ),
    "manifest": Adapter(
        lambda root, _: manifest_csv.read(root),
        STANDARD,
        lambda *_: ["videos.csv", "captions.csv"],
        EVERY_CAPTION,
    ),
    "msrvtt": Adapter(msrvtt.read, msrvtt.SPLITS, msrvtt.files, msrvtt.PROTOCOLS),
    "msvd": Adapter(msvd.read, msvd.SPLITS, msvd.files, msvd.PROTOCOLS),
    "vatex": Adapter(vatex.read, vatex.SPLITS, vatex.files, vatex.PROTOCOLS),
    "activitynet": Adapter(
        activitynet.read, activitynet.SPLITS, activitynet.files, activitynet.PROTOCOLS
    ),
    "howto100m": Adapter(howto100m.read, howto100m.SPLITS, howto100m.files, howto100m.PROTOCOLS),
    "hmdb51": Adapter(
        actions.read_hmdb,
        actions.SPLITS,
        actions.hmdb_files,
        actions.PROTOCOLS,
        actions.PROBE_FOLDS,
    ),
    "ucf101": Adapter(
        actions.read_ucf, actions.SPLITS, actions.ucf_files, actions.PROTOCOLS, actions.PROBE_FOLDS
    ),
}
