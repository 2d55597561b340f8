"""Manifests: the dataset-independent description of videos and captions.

`videos.parquet`: video_id (unique), path, split (train, val or test).
`captions.parquet`: caption_id (unique), video_id, text, split (its video's), start and end
(seconds into the video of the segment the caption describes; null for a caption of the
whole video). Every adapter produces exactly these two tables; nothing downstream knows the
dataset.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from supportset.io import atomic_path

VIDEOS_SCHEMA = pa.schema(
    [("video_id", pa.string()), ("path", pa.string()), ("split", pa.string())]
)
CAPTIONS_SCHEMA = pa.schema(
    [
        ("caption_id", pa.string()),
        ("video_id", pa.string()),
        ("text", pa.string()),
        ("split", pa.string()),
        ("start", pa.float64()),
        ("end", pa.float64()),
    ]
)


SPLITS = ("train", "val", "test")  # the splits the later stages read


class ManifestError(ValueError):
    """Annotations that cannot become a manifest; the message names the offending ids."""


def safe_video_path(root: Path, relative: str) -> Path:
    """Join `relative` to `root`, refusing absolute paths and `..` that would leave the
    dataset folder. The check is on the text of the path, so symlinked folders inside the
    dataset (common on shared file systems) are allowed."""
    normalised = os.path.normpath(relative)
    if os.path.isabs(normalised) or normalised == ".." or normalised.startswith("../"):
        raise ManifestError(f"path '{relative}' escapes the dataset folder {root}")
    return root / normalised


def check_manifest(videos: list[dict], captions: list[dict]) -> None:
    """Raise ManifestError for duplicate ids, splits other than SPLITS, captions of unknown
    videos and captions whose split is not their video's."""
    _refuse_duplicates([video["video_id"] for video in videos], "video_id")
    _refuse_duplicates([caption["caption_id"] for caption in captions], "caption_id")
    odd = [video for video in videos if video["split"] not in SPLITS]
    if odd:
        shown = ", ".join(f"{video['video_id']} ({video['split']!r})" for video in odd[:10])
        raise ManifestError(
            f"{len(odd)} video(s) have a split other than {', '.join(SPLITS)}: {shown}"
        )
    split_of = {video["video_id"]: video["split"] for video in videos}
    orphans = sorted({c["video_id"] for c in captions if c["video_id"] not in split_of})
    if orphans:
        raise ManifestError(f"captions refer to unknown videos: {', '.join(orphans[:10])}")
    strays = [c["caption_id"] for c in captions if c["split"] != split_of[c["video_id"]]]
    if strays:
        raise ManifestError(f"captions in another split than their video: {', '.join(strays[:10])}")


def write_manifest(videos: list[dict], captions: list[dict], out_dir: str | Path) -> None:
    """Check and write videos.parquet and captions.parquet into `out_dir`, atomically."""
    check_manifest(videos, captions)
    write_tables(videos, captions, out_dir)


def write_tables(videos: list[dict], captions: list[dict], out_dir: str | Path) -> None:
    """Write rows that `check_manifest` passed as videos.parquet and captions.parquet."""
    out_dir = Path(out_dir)
    for name, rows, schema in (
        ("videos.parquet", videos, VIDEOS_SCHEMA),
        ("captions.parquet", captions, CAPTIONS_SCHEMA),
    ):
        table = pa.Table.from_pylist(rows, schema=schema)
        with atomic_path(out_dir / name) as temporary:
            pq.write_table(table, temporary)


def read_videos(path: str | Path) -> list[dict]:
    """Rows of a videos.parquet manifest, in file order."""
    return pq.read_table(path).to_pylist()


def read_captions(path: str | Path) -> list[dict]:
    """Rows of a captions.parquet manifest, in file order."""
    return pq.read_table(path).to_pylist()


def _refuse_duplicates(ids: list[str], column: str) -> None:
    duplicated = sorted(key for key, count in Counter(ids).items() if count > 1)
    if duplicated:
        raise ManifestError(f"duplicate {column}: {', '.join(duplicated[:10])}")
