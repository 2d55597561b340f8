"""VATEX: 10-second YouTube clips with 10 English (and 10 Chinese) captions each.

Layout under root: `vatex_training_v1.0.json` and `vatex_validation_v1.0.json` (a list of
{"videoID", "enCap", "chCap"}; only the English captions are used), HGR's split of the
validation set (Chen et al. 2020) as `val_list.txt` and `test_list.txt` (one videoID per
line, 1,500 each), and the clips in `videos/` named by videoID (YouTube id, start and end
seconds: "Ptf_2VRj-V0_000122_000132.mp4"). Train: the 25,991 training clips.
"""

from __future__ import annotations

import logging
from pathlib import Path

from supportset.data.adapters.files import (
    VideoFolder,
    annotation,
    check_lists,
    read_json,
    read_lines,
)
from supportset.data.manifest import ManifestError

log = logging.getLogger(__name__)
SPLITS = ("hgr",)
PROTOCOLS = {"hgr": "multi-caption"}  # HGR queries with every reference caption
ANNOTATIONS = ("vatex_training_v1.0.json", "vatex_validation_v1.0.json")


def files(root: Path, split: str) -> list[str]:
    return [*ANNOTATIONS, "val_list.txt", "test_list.txt"]


def read(root: Path, split: str) -> tuple[list[dict], list[dict]]:
    training, validation = (_english_captions(annotation(root, name)) for name in ANNOTATIONS)
    val, test = (read_lines(annotation(root, name)) for name in ("val_list.txt", "test_list.txt"))
    check_lists({"val_list.txt": val, "test_list.txt": test}, validation, ANNOTATIONS[1])
    unused = len(validation) - len(set(val) | set(test))
    if unused:
        log.warning("%d validation clips are in neither val_list.txt nor test_list.txt", unused)
    assignment = {clip: "train" for clip in training}
    assignment.update({clip: "val" for clip in val})
    assignment.update({clip: "test" for clip in test})
    folder = VideoFolder(root / "videos")
    captions_of = {**training, **validation}
    videos = [{"video_id": c, "path": folder.path(c), "split": s} for c, s in assignment.items()]
    captions = [
        {"caption_id": f"{clip}#{index}", "video_id": clip, "text": text, "split": split_name}
        for clip, split_name in assignment.items()
        for index, text in enumerate(captions_of[clip])
    ]
    return videos, captions


def _english_captions(path: Path) -> dict[str, list[str]]:
    data = read_json(path)
    try:
        captions = {entry["videoID"]: [text.strip() for text in entry["enCap"]] for entry in data}
    except (KeyError, TypeError, AttributeError) as error:
        raise ManifestError(
            f"{path}: not VATEX's list of {{videoID, enCap}} ({error!r})"
        ) from error
    if len(captions) < len(data):
        raise ManifestError(f"{path}: {len(data) - len(captions)} videoIDs appear more than once")
    return captions
