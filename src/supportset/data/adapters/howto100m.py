"""HowTo100M: clip-level pairs of narrated instructional videos for pre-training.

Layout under root: `HowTo100M_v1.csv` (video_id, category_1, category_2, rank, task_id),
`caption.json` (or `raw_caption.json`: the ASR before cleaning; the split choice picks
one), an object keyed by video id with parallel lists "start", "end" (seconds) and "text",
and the videos in `videos/` (any depth, any common suffix). Every ASR segment becomes a
caption with its start and end; a video's segments in time order are each other's
neighbours, the MIL-NCE positives of the later training on clips. The videos of the CSV
are the dataset; a hundredth of them, at most 1,000 (by SHA-1 of their ids), are held out
for validation, the rest are "train".

The captions (136M segments, several GB of JSON) are never all in memory: `read` returns
the videos and a CaptionFile, which `prepare` streams from the JSON one video at a time
(files.iter_json_object) into captions.parquet, in record batches of BATCH_ROWS. The rows of
captions.parquet therefore follow caption.json's order of videos, each video's segments
together and in time order; videos.parquet follows the CSV.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from supportset.data.adapters.files import (
    VideoFolder,
    annotation,
    held_out,
    iter_json_object,
    read_csv,
)
from supportset.data.manifest import CAPTIONS_SCHEMA, CaptionStream, ManifestError

log = logging.getLogger(__name__)
SPLITS = ("caption", "raw_caption")
PROTOCOLS = {"caption": "multi-caption", "raw_caption": "multi-caption"}  # no benchmark
BATCH_ROWS = 65_536  # captions per record batch, and per row group of captions.parquet
Segment = tuple[int, str, float, float]  # (index among the video's segments, text, start s, end s)


def files(root: Path, split: str) -> list[str]:
    return ["HowTo100M_v1.csv", f"{split}.json"]


def read(root: Path, split: str) -> tuple[list[dict], CaptionFile]:
    listed = [
        row["video_id"] for row in read_csv(annotation(root, "HowTo100M_v1.csv"), ("video_id",))
    ]
    validation = held_out(listed, share=100)
    folder = VideoFolder(root / "videos")
    videos = [
        {
            "video_id": video_id,
            "path": folder.path(video_id),
            "split": "val" if video_id in validation else "train",
        }
        for video_id in listed
    ]
    return videos, CaptionFile(annotation(root, f"{split}.json"), frozenset(listed))


@dataclass(frozen=True)
class CaptionFile(CaptionStream):
    """The ASR segments of caption.json as caption rows, read video by video."""

    path: Path
    listed: frozenset[str]  # the videos of HowTo100M_v1.csv: others are counted, left out
    batch_rows: int = BATCH_ROWS

    def batches(self, split_of: Mapping[str, str]) -> Iterator[pa.RecordBatch]:
        """Record batches cut between videos once they hold `batch_rows` captions (so at
        most one video's segments more; the last may hold fewer). Every listed video's
        segments are checked, also those of videos `split_of` leaves out."""
        columns = _Columns()
        unlisted = 0
        for video_id, entry in iter_json_object(self.path):
            if video_id not in self.listed:
                unlisted += 1
                continue
            segments = _segments(self.path, video_id, entry)
            if video_id in split_of:
                columns.add(video_id, split_of[video_id], segments)
            if columns.rows >= self.batch_rows:
                yield columns.record_batch()
        if columns.rows:
            yield columns.record_batch()
        if unlisted:
            log.warning(
                "%s: %d captioned videos are not in HowTo100M_v1.csv; left out", self.path, unlisted
            )


def _segments(path: Path, video_id: str, entry: Any) -> list[Segment]:
    """The ASR segments with text, in time order; a segment's index counts the blank ones
    before it too."""
    try:
        triples = sorted(zip(entry["start"], entry["end"], entry["text"], strict=True))
    except (KeyError, TypeError, ValueError) as error:
        raise ManifestError(
            f"{path}: video '{video_id}' lacks parallel start/end/text ({error})"
        ) from error
    segments = []
    for index, (start, end, text) in enumerate(triples):
        if isinstance(text, str) and (words := text.strip()):
            if not (isinstance(start, int | float) and isinstance(end, int | float)) or not (
                0 <= start <= end
            ):
                raise ManifestError(
                    f"{path}: video '{video_id}' segment {index} runs from {start} to {end} s"
                )
            segments.append((index, words, float(start), float(end)))
    return segments


class _Columns:
    """The columns of CAPTIONS_SCHEMA, filled video by video and emptied into batches."""

    def __init__(self) -> None:
        self._empty()

    def _empty(self) -> None:
        self.values: dict[str, list] = {field.name: [] for field in CAPTIONS_SCHEMA}
        self.rows = 0

    def add(self, video_id: str, split: str, segments: list[Segment]) -> None:
        if not segments:
            return
        indices, texts, starts, ends = zip(*segments, strict=True)
        self.values["caption_id"] += [f"{video_id}_{index:05d}" for index in indices]
        self.values["video_id"] += [video_id] * len(segments)
        self.values["text"] += texts
        self.values["split"] += [split] * len(segments)
        self.values["start"] += starts
        self.values["end"] += ends
        self.rows += len(segments)

    def record_batch(self) -> pa.RecordBatch:
        """The rows added since the last batch, as one."""
        arrays = [pa.array(self.values[field.name], field.type) for field in CAPTIONS_SCHEMA]
        self._empty()
        return pa.RecordBatch.from_arrays(arrays, schema=CAPTIONS_SCHEMA)
