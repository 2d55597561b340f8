"""Adapter of any dataset already described by two CSV files in the manifest schema.

`root/videos.csv`: video_id, file (relative to root), split.
`root/captions.csv`: caption_id, video_id, text. Captions take the split of their video.
"""

from __future__ import annotations

from pathlib import Path

from supportset.data.adapters.files import read_csv
from supportset.data.manifest import safe_video_path

VIDEO_COLUMNS = ("video_id", "file", "split")
CAPTION_COLUMNS = ("caption_id", "video_id", "text")


def read(root: Path) -> tuple[list[dict], list[dict]]:
    """Manifest rows (videos, captions) from `root/videos.csv` and `root/captions.csv`."""
    video_rows = read_csv(root / "videos.csv", VIDEO_COLUMNS)
    videos = [
        {
            "video_id": row["video_id"],
            "path": str(safe_video_path(root, row["file"])),
            "split": row["split"],
        }
        for row in video_rows
    ]
    split_of = {video["video_id"]: video["split"] for video in videos}
    captions = [
        {**{key: row[key] for key in CAPTION_COLUMNS}, "split": split_of.get(row["video_id"], "")}
        for row in read_csv(root / "captions.csv", CAPTION_COLUMNS)
    ]
    return videos, captions
