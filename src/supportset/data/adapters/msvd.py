"""MSVD: 1,970 YouTube clips with about 40 English captions each, split 1,200 / 100 / 670.

Layout under root, as Collaborative Experts distributes it: `train_list.txt`,
`val_list.txt`, `test_list.txt` (one clip name per line, e.g. "-4wsuPCjDBc_5_15"),
`raw-captions.pkl` (a dict: clip name -> list of captions, each a list of words; read as
plain data, never executing code), and the clips in `YouTubeClips/` (e.g.
`YouTubeClips/-4wsuPCjDBc_5_15.avi`).
"""

from __future__ import annotations

from pathlib import Path

from supportset.data.adapters.files import (
    VideoFolder,
    annotation,
    caption_text,
    read_lines,
    read_plain_pickle,
)
from supportset.data.manifest import ManifestError

SPLITS = ("standard",)
PROTOCOLS = {"standard": "multi-caption"}  # every caption a query (CE: num_test_captions 81)
LISTS = (("train", "train_list.txt"), ("val", "val_list.txt"), ("test", "test_list.txt"))


def files(root: Path, split: str) -> list[str]:
    return [name for _, name in LISTS] + ["raw-captions.pkl"]


def read(root: Path, split: str) -> tuple[list[dict], list[dict]]:
    path = annotation(root, "raw-captions.pkl")
    captions_of = read_plain_pickle(path)
    if not isinstance(captions_of, dict):
        raise ManifestError(f"{path}: expected a dict of clip name -> captions")
    folder = VideoFolder(root / "YouTubeClips")
    videos, captions, seen = [], [], {}
    for split_name, list_name in LISTS:
        for clip in read_lines(annotation(root, list_name)):
            if clip in seen:
                raise ManifestError(f"clip '{clip}' is in both {seen[clip]} and {list_name}")
            seen[clip] = list_name
            if clip not in captions_of:
                raise ManifestError(f"{path}: no captions for clip '{clip}' of {list_name}")
            videos.append({"video_id": clip, "path": folder.path(clip), "split": split_name})
            captions.extend(
                {"caption_id": f"{clip}#{index}", "video_id": clip, "split": split_name,
                 "text": caption_text(path, clip, words)}
                for index, words in enumerate(captions_of[clip])
            )  # fmt: skip
    return videos, captions
