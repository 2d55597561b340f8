"""Adapter of any dataset already described by two CSV files in the manifest schema.

`root/videos.csv`: video_id, file (relative to root), split (train, val or test).
`root/captions.csv`: caption_id, video_id, text. Captions take the split of their video.
Every row is checked as it is read, and an error names the file and line: a row with a
field too few or too many (an unquoted comma), a NUL byte, an empty id or file, a split
other than train/val/test, a caption of a video videos.csv lacks, and a video without
captions (nothing could train on it, find it or be found by it). Empty caption texts pass
here and become rejects of the text stage.
"""

from __future__ import annotations

from pathlib import Path

from supportset.data.adapters.files import annotation, read_csv_lines
from supportset.data.manifest import SPLITS, ManifestError, safe_video_path

VIDEO_COLUMNS = ("video_id", "file", "split")
CAPTION_COLUMNS = ("caption_id", "video_id", "text")


def read(root: Path) -> tuple[list[dict], list[dict]]:
    """Manifest rows (videos, captions) from `root/videos.csv` and `root/captions.csv`."""
    videos_path = annotation(root, "videos.csv")
    video_rows = read_csv_lines(videos_path, VIDEO_COLUMNS)
    for line, row in video_rows:
        _require(videos_path, line, row, ("video_id", "file"))
        if row["split"] not in SPLITS:
            raise ManifestError(
                f"{videos_path}: line {line}: split '{row['split']}' is not one of "
                f"{', '.join(SPLITS)}"
            )
    videos = [
        {"video_id": row["video_id"], "path": str(safe_video_path(root, row["file"])),
         "split": row["split"]}
        for _, row in video_rows
    ]  # fmt: skip
    captions_path = annotation(root, "captions.csv")
    split_of = {video["video_id"]: video["split"] for video in videos}
    captions = []
    for line, row in read_csv_lines(captions_path, CAPTION_COLUMNS):
        _require(captions_path, line, row, ("caption_id", "video_id"))
        if row["video_id"] not in split_of:
            raise ManifestError(
                f"{captions_path}: line {line}: video '{row['video_id']}' is not in videos.csv"
            )
        captions.append(
            {**{key: row[key] for key in CAPTION_COLUMNS}, "split": split_of[row["video_id"]]}
        )
    _refuse_uncaptioned(videos_path, video_rows, {c["video_id"] for c in captions})
    return videos, captions


def _require(path: Path, line: int, row: dict[str, str], columns: tuple[str, ...]) -> None:
    """Refuse a row whose `columns` are empty."""
    empty = [column for column in columns if not row[column].strip()]
    if empty:
        raise ManifestError(f"{path}: line {line}: empty {', '.join(empty)}")


def _refuse_uncaptioned(
    path: Path, video_rows: list[tuple[int, dict[str, str]]], captioned: set[str]
) -> None:
    bare = [(line, row["video_id"]) for line, row in video_rows if row["video_id"] not in captioned]
    if bare:
        shown = ", ".join(f"line {line} ({video_id})" for line, video_id in bare[:10])
        raise ManifestError(
            f"{path}: {len(bare)} video(s) without a caption in captions.csv: {shown}"
        )
