"""Adapter of the generated demo corpus (`supportset corpus demo`)."""

from __future__ import annotations

import json
from pathlib import Path

from supportset.data.manifest import safe_video_path


def read(root: Path) -> tuple[list[dict], list[dict]]:
    """Manifest rows (videos, captions) from `root/annotations.json`."""
    annotations = json.loads((root / "annotations.json").read_text())
    videos = [
        {
            "video_id": video["video_id"],
            "path": str(safe_video_path(root, video["file"])),
            "split": video["split"],
        }
        for video in annotations["videos"]
    ]
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
