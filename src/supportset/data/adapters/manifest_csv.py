"""Adapter of any dataset already described by two CSV files in the manifest schema.

`root/videos.csv`: video_id, file (relative to root), split.
`root/captions.csv`: caption_id, video_id, text. Captions take the split of their video.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from supportset.data.manifest import ManifestError, safe_video_path

VIDEO_COLUMNS = ("video_id", "file", "split")
CAPTION_COLUMNS = ("caption_id", "video_id", "text")


def read(root: Path) -> tuple[list[dict], list[dict]]:
    """Manifest rows (videos, captions) from `root/videos.csv` and `root/captions.csv`."""
    video_rows = _read_csv(root / "videos.csv", VIDEO_COLUMNS)
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
        for row in _read_csv(root / "captions.csv", CAPTION_COLUMNS)
    ]
    return videos, captions


def _read_csv(path: Path, columns: tuple[str, ...]) -> list[dict]:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ManifestError(
            f"{path}: not UTF-8 text: byte {data[error.start : error.start + 1]!r} on line "
            f"{line}; convert the file to UTF-8"
        ) from error
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = [column for column in columns if column not in (reader.fieldnames or [])]
    if missing:
        raise ManifestError(f"{path}: missing column(s) {', '.join(missing)}")
    return list(reader)
