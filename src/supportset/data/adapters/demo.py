"""Adapter of the generated demo corpus (`supportset corpus demo`).

Split choice "standard" (the default) holds the corpus's paraphrased captions; "events"
one caption per video naming its event in words ("turns", "fades out", ...), with the
video's id as caption id: the demo's stand-in for an action-recognition dataset, whose
manifest the action probe trains and tests on (`PROBE_FOLDS`).
"""

from __future__ import annotations

import json
from pathlib import Path

from supportset.data.demo import EVENTS
from supportset.data.manifest import ManifestError, safe_video_path

SPLITS = ("standard", "events")  # the first is the default
PROTOCOLS = {"standard": "multi-caption", "events": None}  # events: scored by accuracy
PROBE_FOLDS = ("events",)


def read(root: Path, split: str) -> tuple[list[dict], list[dict]]:
    """Manifest rows (videos, captions) of split choice `split` from `root/annotations.json`."""
    annotations = json.loads((root / "annotations.json").read_text())
    videos = [
        {
            "video_id": video["video_id"],
            "path": str(safe_video_path(root, video["file"])),
            "split": video["split"],
        }
        for video in annotations["videos"]
    ]
    if split == "events":
        return videos, [_event_caption(video) for video in annotations["videos"]]
    split_of = {video["video_id"]: video["split"] for video in videos}
    captions = [
        {
            "caption_id": caption["caption_id"],
            "video_id": caption["video_id"],
            "text": caption["text"],
            "split": split_of.get(caption["video_id"], ""),
        }
        for caption in annotations["captions"]
    ]
    return videos, captions


def _event_caption(video: dict) -> dict:
    """The video's event in words ("fades_out" -> "fades out"), from its meaning
    ("event|shape|colour|...|bg=..."), as its one caption."""
    event = video["meaning"].split("|")[0]
    if event not in EVENTS:
        raise ManifestError(
            f"video {video['video_id']}: meaning {video['meaning']!r} starts with no event of "
            f"{', '.join(EVENTS)}"
        )
    return {
        "caption_id": video["video_id"],
        "video_id": video["video_id"],
        "text": event.replace("_", " "),
        "split": video["split"],
    }
