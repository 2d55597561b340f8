"""MSR-VTT: 10,000 videos ("video0" .. "video9999"), 20 captions each (two have 19).

Layout under root: the annotations as CLIP4Clip distributes them, `MSRVTT_data.json`
("videos" and "sentences"), or the original `train_val_videodatainfo.json` and
`test_videodatainfo.json` (the same structure), plus the split lists below, and the videos
in `videos/` (e.g. `videos/video0.mp4`).

Split choices (the test split is where published results diverge):
- `1k-A` (default, the paper's): train on `MSRVTT_train.9k.csv`, test on the 1,000 pairs of
  `MSRVTT_JSFUSION_test.csv` (key, vid_key, video_id, sentence), one caption per video;
- `7k`: train on `MSRVTT_train.7k.csv`, the same 1,000-pair test;
- `1k-B` (Miech et al.): `train_list_miech.txt` and `test_list_miech.txt` (one id per line,
  as Collaborative Experts distributes them), all captions;
- `full`: the official 6,513 / 497 / 2,990 split (by id: video0-6512, video6513-7009,
  video7010-9999), all captions.
No list has a validation split, and the test split is never used for model selection:
for 1k-A, 7k and 1k-B the official validation videos (video6513-7009) found in the train
list are held out as "val" (497 for 1k-A and 7k), the rest train.
"""

from __future__ import annotations

from pathlib import Path

from supportset.data.adapters.files import (
    VideoFolder,
    annotation,
    check_lists,
    read_csv,
    read_json,
    read_lines,
)
from supportset.data.manifest import ManifestError

SPLITS = ("1k-A", "7k", "1k-B", "full")
TRAIN_LISTS = {
    "1k-A": "MSRVTT_train.9k.csv",
    "7k": "MSRVTT_train.7k.csv",
    "1k-B": "train_list_miech.txt",
}
JSFUSION = "MSRVTT_JSFUSION_test.csv"
OFFICIAL = (("train", 0, 6512), ("val", 6513, 7009), ("test", 7010, 9999))


def files(root: Path, split: str) -> list[str]:
    names = _annotation_files(root)
    if split in ("1k-A", "7k"):
        names += [TRAIN_LISTS[split], JSFUSION]
    elif split == "1k-B":
        names += ["train_list_miech.txt", "test_list_miech.txt"]
    return names


def _annotation_files(root: Path) -> list[str]:
    if (root / "MSRVTT_data.json").is_file() or not (root / "test_videodatainfo.json").is_file():
        return ["MSRVTT_data.json"]
    return ["train_val_videodatainfo.json", "test_videodatainfo.json"]


def official_split(video_id: str) -> str:
    """The official split of an id "videoN" (MSR-VTT's readme gives it by number)."""
    number = int(video_id[len("video") :]) if video_id[len("video") :].isdigit() else -1
    for name, first, last in OFFICIAL:
        if first <= number <= last:
            return name
    raise ManifestError(f"'{video_id}' is not an MSR-VTT video id (video0 .. video9999)")


def read(root: Path, split: str) -> tuple[list[dict], list[dict]]:
    listed, sentences = _videos_and_sentences(root)
    if split == "full":
        assignment = {video_id: official_split(video_id) for video_id in listed}
        test_captions = None
    else:
        assignment, test_captions = _listed_split(root, split, set(listed))
    folder = VideoFolder(root / "videos")
    ids = sorted(assignment, key=lambda video_id: int(video_id[len("video") :]))
    videos = [{"video_id": v, "path": folder.path(v), "split": assignment[v]} for v in ids]
    captions = [
        {
            "caption_id": caption_id,
            "video_id": video_id,
            "text": text,
            "split": assignment[video_id],
        }
        for caption_id, video_id, text in sentences
        if video_id in assignment and (test_captions is None or assignment[video_id] != "test")
    ]
    return videos, captions + (test_captions or [])


def _videos_and_sentences(root: Path) -> tuple[list[str], list[tuple[str, str, str]]]:
    """All video ids, and (caption id, video id, text) of every sentence."""
    listed, sentences = [], []
    for name in _annotation_files(root):
        path = annotation(root, name)
        data = read_json(path)
        try:
            listed += [video["video_id"] for video in data["videos"]]
            sentences += [
                (f"sen{s['sen_id']}", s["video_id"], s["caption"].strip())
                for s in data["sentences"]
            ]
        except (KeyError, TypeError) as error:
            raise ManifestError(
                f"{path}: not MSR-VTT's videos/sentences layout ({error!r})"
            ) from error
    return listed, sentences


def _listed_split(
    root: Path, split: str, known: set[str]
) -> tuple[dict[str, str], list[dict] | None]:
    """(video -> train/val/test, the JSFusion test captions or None) of a list-based split."""
    if split == "1k-B":
        train = read_lines(annotation(root, "train_list_miech.txt"))
        test = read_lines(annotation(root, "test_list_miech.txt"))
        test_captions = None
    else:
        train_path = annotation(root, TRAIN_LISTS[split])
        train = [row["video_id"] for row in read_csv(train_path, ("video_id",))]
        pairs = read_csv(annotation(root, JSFUSION), ("key", "video_id", "sentence"))
        test = [row["video_id"] for row in pairs]
        test_captions = [
            {"caption_id": row["key"], "video_id": row["video_id"], "text": row["sentence"].strip(),
             "split": "test"}
            for row in pairs
        ]  # fmt: skip
    check_lists({"the train list": train, "the test list": test}, known, "the annotations")
    assignment = {
        video_id: "val" if official_split(video_id) == "val" else "train" for video_id in train
    }
    assignment.update({video_id: "test" for video_id in test})
    return assignment, test_captions
