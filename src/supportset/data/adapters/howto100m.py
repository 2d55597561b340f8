"""HowTo100M: clip-level pairs of narrated instructional videos for pre-training.

Layout under root: `HowTo100M_v1.csv` (video_id, category_1, category_2, rank, task_id),
`caption.json` (or `raw_caption.json`: the ASR before cleaning; the split choice picks
one), an object keyed by video id with parallel lists "start", "end" (seconds) and "text",
and the videos in `videos/` (any depth, any common suffix). Every ASR segment becomes a
caption with its start and end; a video's segments in time order are each other's
neighbours, the MIL-NCE positives of the later training on clips. The videos of the CSV
are the dataset; a hundredth of them, at most 1,000 (by SHA-1 of their ids), are held out
for validation, the rest are "train".
"""

from __future__ import annotations

import logging
from pathlib import Path

from supportset.data.adapters.files import VideoFolder, annotation, held_out, read_csv, read_json
from supportset.data.manifest import ManifestError

log = logging.getLogger(__name__)
SPLITS = ("caption", "raw_caption")
PROTOCOLS = {"caption": "multi-caption", "raw_caption": "multi-caption"}  # no benchmark


def files(root: Path, split: str) -> list[str]:
    return ["HowTo100M_v1.csv", f"{split}.json"]


def read(root: Path, split: str) -> tuple[list[dict], list[dict]]:
    listed = [
        row["video_id"] for row in read_csv(annotation(root, "HowTo100M_v1.csv"), ("video_id",))
    ]
    path = annotation(root, f"{split}.json")
    segments = read_json(path)
    if not isinstance(segments, dict):
        raise ManifestError(f"{path}: expected an object keyed by video id")
    unlisted = len(set(segments) - set(listed))
    if unlisted:
        log.warning("%s: %d captioned videos are not in HowTo100M_v1.csv; left out", path, unlisted)
    validation = held_out(listed, share=100)
    folder = VideoFolder(root / "videos")
    videos, captions = [], []
    for video_id in listed:
        split_name = "val" if video_id in validation else "train"
        videos.append({"video_id": video_id, "path": folder.path(video_id), "split": split_name})
        captions.extend(_segments(path, video_id, segments.get(video_id), split_name))
    return videos, captions


def _segments(path: Path, video_id: str, entry: dict | None, split: str) -> list[dict]:
    """One caption per ASR segment with text, in time order."""
    if entry is None:
        return []
    try:
        triples = sorted(zip(entry["start"], entry["end"], entry["text"], strict=True))
    except (KeyError, TypeError, ValueError) as error:
        raise ManifestError(
            f"{path}: video '{video_id}' lacks parallel start/end/text ({error})"
        ) from error
    rows = []
    for index, (start, end, text) in enumerate(triples):
        if not isinstance(text, str) or not text.strip():
            continue
        if (
            not isinstance(start, int | float)
            or not isinstance(end, int | float)
            or not 0 <= start <= end
        ):
            raise ManifestError(
                f"{path}: video '{video_id}' segment {index} runs from {start} to {end} s"
            )
        rows.append(
            {"caption_id": f"{video_id}_{index:05d}", "video_id": video_id, "text": text.strip(),
             "split": split, "start": float(start), "end": float(end)}
        )  # fmt: skip
    return rows
