"""Manifests: the dataset-independent description of videos and captions.

`videos.parquet`: video_id (unique), path, split (train, val or test).
`captions.parquet`: caption_id (unique), video_id, text, split (its video's), start and end
(seconds into the video of the segment the caption describes; null for a caption of the
whole video). Every adapter produces exactly these two tables; nothing downstream knows the
dataset. Adapters hand over captions as rows, or, where they are too many to hold as Python
objects (HowTo100M's 136M), as a CaptionStream of Arrow record batches that `prepare` writes
through `caption_writer` as they come.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from supportset.io import atomic_path, remove_leftovers

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


class CaptionStream(ABC):
    """An adapter's captions read on demand, in the order of its annotation file: record
    batches of CAPTIONS_SCHEMA rows, each of a bounded number of rows."""

    @abstractmethod
    def batches(self, split_of: Mapping[str, str]) -> Iterator[pa.RecordBatch]:
        """The captions of the videos in `split_of` (video_id -> split, which their captions
        take); captions of other videos are left out. Unique caption ids, a video's captions
        together and in time order. Errors in the annotations raise ManifestError as they
        are met, so a consumer must not keep what it wrote before."""


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
    check_caption_videos(captions, {video["video_id"]: video["split"] for video in videos})


def check_caption_videos(
    captions: Iterable[Mapping[str, str]], split_of: Mapping[str, str], named_by: str = "caption_id"
) -> None:
    """Raise ManifestError for captions (rows with video_id and split) of videos that are
    not in `split_of` (video_id -> split) or in another split than their video's; the
    latter are named by their `named_by` column."""
    captions = list(captions)
    orphans = sorted({c["video_id"] for c in captions if c["video_id"] not in split_of})
    if orphans:
        raise ManifestError(f"captions refer to unknown videos: {', '.join(orphans[:10])}")
    strays = [c[named_by] for c in captions if c["split"] != split_of[c["video_id"]]]
    if strays:
        raise ManifestError(f"captions in another split than their video: {', '.join(strays[:10])}")


def write_manifest(videos: list[dict], captions: list[dict], out_dir: str | Path) -> None:
    """Check and write videos.parquet and captions.parquet into `out_dir`, atomically."""
    check_manifest(videos, captions)
    write_tables(videos, captions, out_dir)


def write_tables(videos: list[dict], captions: list[dict], out_dir: str | Path) -> None:
    """Write rows that `check_manifest` passed as videos.parquet and captions.parquet."""
    write_videos(videos, out_dir)
    _write_rows(captions, CAPTIONS_SCHEMA, Path(out_dir) / "captions.parquet")


def write_videos(videos: list[dict], out_dir: str | Path) -> None:
    """Write checked video rows as `out_dir`/videos.parquet, atomically."""
    _write_rows(videos, VIDEOS_SCHEMA, Path(out_dir) / "videos.parquet")


@contextmanager
def caption_writer(out_dir: str | Path) -> Iterator[pq.ParquetWriter]:
    """A writer of CAPTIONS_SCHEMA record batches (one row group each) into
    `out_dir`/captions.parquet, which appears, complete, only if the block succeeds; what a
    killed writer of it left (gigabytes, for HowTo100M) is removed first."""
    remove_leftovers(Path(out_dir) / "captions.parquet")
    with (
        atomic_path(Path(out_dir) / "captions.parquet") as temporary,
        pq.ParquetWriter(temporary, CAPTIONS_SCHEMA) as writer,
    ):
        yield writer


def _write_rows(rows: list[dict], schema: pa.Schema, path: Path) -> None:
    table = pa.Table.from_pylist(rows, schema=schema)
    with atomic_path(path) as temporary:
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
