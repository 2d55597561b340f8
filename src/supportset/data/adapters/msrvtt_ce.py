"""MSR-VTT as Collaborative Experts (CE) distributes it: captions and split lists.

The files lie in root, in `high-quality/structured-symlinks/` (CE's high-quality tar, and
Frozen in Time's MSRVTT.zip) or in `structured-symlinks/` (CE's features tar):
- `raw-captions.pkl`: a dict video id -> its captions in MSR-VTT's order, each a list of
  words (read as plain data, never executing code); caption k of video v gets the id
  "v#k";
- `train_list_jsfusion.txt` (9,000) and `val_list_jsfusion.txt` (1,000: JSFusion's test
  videos) for 1k-A, with `jsfusion_val_caption_idx.pkl` (a dict test video id -> the index
  in raw-captions.pkl of the sentence JSFusion chose for it, the one query of that video);
- `train_list_miech.txt` and `test_list_miech.txt` for 1k-B;
- `train_list_full.txt`, `val_list_full.txt`, `test_list_full.txt` for full.
CE has no list of the 7k split.
"""

from __future__ import annotations

from pathlib import Path

from supportset.data.adapters.files import (
    annotation,
    caption_text,
    check_lists,
    read_lines,
    read_plain_pickle,
)
from supportset.data.manifest import ManifestError, safe_video_path

FOLDERS = ("", "high-quality/structured-symlinks", "structured-symlinks")
CAPTIONS = "raw-captions.pkl"
CAPTION_INDEX = "jsfusion_val_caption_idx.pkl"
LISTS = {
    "1k-A": {"train": "train_list_jsfusion.txt", "test": "val_list_jsfusion.txt"},
    "1k-B": {"train": "train_list_miech.txt", "test": "test_list_miech.txt"},
    "full": {"train": "train_list_full.txt", "val": "val_list_full.txt",
             "test": "test_list_full.txt"},
}  # fmt: skip
FROZEN_ZIP = "https://www.robots.ox.ac.uk/~maxbain/frozen-in-time/data/MSRVTT.zip"
CLIP4CLIP_ZIP = "https://github.com/ArrowLuo/CLIP4Clip/releases/download/v0.0/msrvtt_data.zip"
CE_LISTS = (
    "Collaborative Experts' repository, misc/datasets/msrvtt/ "
    "(https://github.com/albanie/collaborative-experts/tree/master/misc/datasets/msrvtt)"
)

Sentence = tuple[str, str, str]  # (caption id, video id, text)


def find_folder(root: Path) -> str | None:
    """The first of FOLDERS (relative to root) that holds raw-captions.pkl, or None."""
    return next((folder for folder in FOLDERS if (root / folder / CAPTIONS).is_file()), None)


def files(folder: str, split: str) -> list[str]:
    """The CE files (relative to root) that split choice `split` reads."""
    names = [CAPTIONS, *LISTS.get(split, {}).values()]
    names += [CAPTION_INDEX] if split == "1k-A" else []
    return [_join(folder, name) for name in names]


def read(
    root: Path, folder: str, split: str
) -> tuple[dict[str, list[str]], list[Sentence], list[Sentence] | None]:
    """(split name -> video ids as listed, every caption, the 1k-A test queries or None)."""
    if split not in LISTS:
        raise ManifestError(
            f"split {split} needs CLIP4Clip's MSRVTT_train.7k.csv, which Collaborative "
            f"Experts' files lack: put MSRVTT_data.json, MSRVTT_train.7k.csv and "
            f"MSRVTT_JSFUSION_test.csv from {CLIP4CLIP_ZIP} in {root}"
        )
    captions_path = annotation(root, _join(folder, CAPTIONS))
    captions_of = _captions(captions_path)
    names = LISTS[split]
    lists = {
        name: read_lines(annotation(root, _join(folder, file), CE_LISTS))
        for name, file in names.items()
    }
    check_lists({names[name]: ids for name, ids in lists.items()}, captions_of, CAPTIONS)
    sentences = [
        (f"{video_id}#{index}", video_id, text)
        for video_id, texts in captions_of.items()
        for index, text in enumerate(texts)
    ]
    if split != "1k-A":
        return lists, sentences, None
    return lists, sentences, _jsfusion_queries(root, folder, lists["test"], captions_of)


def _captions(path: Path) -> dict[str, list[str]]:
    """video id -> its captions, from raw-captions.pkl."""
    data = read_plain_pickle(path)
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise ManifestError(f"{path}: expected a dict of video id -> list of captions")
    return {
        video_id: [caption_text(path, video_id, words) for words in captions]
        for video_id, captions in data.items()
    }


def _jsfusion_queries(
    root: Path, folder: str, test: list[str], captions_of: dict[str, list[str]]
) -> list[Sentence]:
    """The one query of each 1k-A test video: the caption jsfusion_val_caption_idx.pkl
    picks, JSFusion's sentence."""
    path = safe_video_path(root, _join(folder, CAPTION_INDEX))
    if not path.is_file():
        raise ManifestError(
            f"{path}: not found; 1k-A queries each test video with the sentence JSFusion "
            f"chose, which this file of Collaborative Experts picks out of {CAPTIONS}: get it "
            f"from Frozen in Time's {FROZEN_ZIP} (MSRVTT/high-quality/structured-symlinks/), "
            f"or use CLIP4Clip's layout ({CLIP4CLIP_ZIP}) instead"
        )
    index_of = read_plain_pickle(path)
    if not isinstance(index_of, dict):
        raise ManifestError(f"{path}: expected a dict of video id -> caption index")
    queries = []
    for video_id in test:
        index, count = index_of.get(video_id), len(captions_of[video_id])
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < count:
            raise ManifestError(
                f"{path}: test video '{video_id}' has no caption index among its {count} "
                f"captions (found {index!r})"
            )
        queries.append((f"{video_id}#{index}", video_id, captions_of[video_id][index]))
    return queries


def _join(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name
