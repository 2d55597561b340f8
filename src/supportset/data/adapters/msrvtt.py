"""MSR-VTT: 10,000 videos ("video0" .. "video9999"), 20 captions each (two have 19).

Two layouts under root, with the videos in `videos/` either way (any depth: `videos/video0.mp4`,
or `videos/all/video0.mp4` as Frozen in Time's MSRVTT.zip has them):
- CLIP4Clip's: the annotations as CLIP4Clip distributes them, `MSRVTT_data.json` ("videos"
  and "sentences"), or the original `train_val_videodatainfo.json` and
  `test_videodatainfo.json` (the same structure), plus the split lists named below;
- Collaborative Experts' (`raw-captions.pkl` and CE's split lists, see `msrvtt_ce`), read
  when root holds none of those JSON files.

Split choices (the test split is where published results diverge), each with the
evaluation protocol it was published with (`PROTOCOLS`, see retrieval.metrics):
- `1k-A` (default, the paper's): train on `MSRVTT_train.9k.csv`, test on the 1,000 pairs of
  `MSRVTT_JSFUSION_test.csv` (key, vid_key, video_id, sentence): one caption per test
  video, the sentence JSFusion chose ("one-caption");
- `7k`: train on `MSRVTT_train.7k.csv`, the same 1,000-pair test ("one-caption");
- `1k-B` (Miech et al.): `train_list_miech.txt` and `test_list_miech.txt` (one id per line,
  as Collaborative Experts distributes them); every caption is kept, and each test video
  is queried by its first, as Miech et al. and CE do ("one-caption": CE's loader follows
  "Antoine's approach of using the first text caption", num_test_captions 1);
- `full`: the official 6,513 / 497 / 2,990 split (by id: video0-6512, video6513-7009,
  video7010-9999), every caption a query ("multi-caption": CE's num_test_captions 20).
No list of 1k-A, 7k or 1k-B has a validation split, and the test split is never used for
model selection: the official validation videos (video6513-7009) found in the train list
are held out as "val" (497 for 1k-A and 7k), the rest train.
"""

from __future__ import annotations

from pathlib import Path

from supportset.data.adapters import msrvtt_ce
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
PROTOCOLS = {"1k-A": "one-caption", "7k": "one-caption", "1k-B": "one-caption",
             "full": "multi-caption"}  # fmt: skip
TRAIN_LISTS = {"1k-A": "MSRVTT_train.9k.csv", "7k": "MSRVTT_train.7k.csv"}
MIECH = tuple(msrvtt_ce.LISTS["1k-B"].values())  # 1k-B's train and test lists, both layouts
JSFUSION = "MSRVTT_JSFUSION_test.csv"
ANNOTATIONS = ("MSRVTT_data.json", "train_val_videodatainfo.json", "test_videodatainfo.json")
OFFICIAL = (("train", 0, 6512), ("val", 6513, 7009), ("test", 7010, 9999))

Sentence = tuple[str, str, str]  # (caption id, video id, text)


def files(root: Path, split: str) -> list[str]:
    folder = _ce_folder(root)
    if folder is not None:
        return msrvtt_ce.files(folder, split)
    names = _annotation_files(root)
    if split in ("1k-A", "7k"):
        names += [TRAIN_LISTS[split], JSFUSION]
    elif split == "1k-B":
        names += list(MIECH)
    return names


def _ce_folder(root: Path) -> str | None:
    """The folder of Collaborative Experts' files, where root holds none of the JSON
    annotations; None for CLIP4Clip's layout."""
    if any((root / name).is_file() for name in ANNOTATIONS):
        return None
    return msrvtt_ce.find_folder(root)


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
    folder = _ce_folder(root)
    if folder is not None:
        lists, sentences, test_sentences = msrvtt_ce.read(root, folder, split)
    else:
        lists, sentences, test_sentences = _clip4clip_split(root, split)
    assignment = _assignment(lists)
    video_folder = VideoFolder(root / "videos")
    ids = sorted(assignment, key=lambda video_id: int(video_id[len("video") :]))
    videos = [{"video_id": v, "path": video_folder.path(v), "split": assignment[v]} for v in ids]
    kept = [
        sentence
        for sentence in sentences
        if sentence[1] in assignment
        and (test_sentences is None or assignment[sentence[1]] != "test")
    ]
    captions = [
        {"caption_id": caption_id, "video_id": video_id, "text": text,
         "split": assignment[video_id]}
        for caption_id, video_id, text in kept + (test_sentences or [])
    ]  # fmt: skip
    return videos, captions


def _assignment(lists: dict[str, list[str]]) -> dict[str, str]:
    """video id -> train/val/test. Where there is no "val" list, the official validation
    videos of the train list are held out as val."""
    assignment = {video_id: name for name, ids in lists.items() for video_id in ids}
    if "val" not in lists:
        assignment.update(
            {video_id: "val" for video_id in lists["train"] if official_split(video_id) == "val"}
        )
    return assignment


def _clip4clip_split(
    root: Path, split: str
) -> tuple[dict[str, list[str]], list[Sentence], list[Sentence] | None]:
    """(split name -> video ids, every sentence, the JSFusion test sentences or None)."""
    listed, sentences = _videos_and_sentences(root)
    if split == "full":
        lists = {name: [v for v in listed if official_split(v) == name] for name, *_ in OFFICIAL}
        return lists, sentences, None
    if split == "1k-B":
        train, test = (read_lines(annotation(root, name, msrvtt_ce.CE_LISTS)) for name in MIECH)
        test_sentences = None
    else:
        train_path = annotation(root, TRAIN_LISTS[split], msrvtt_ce.CLIP4CLIP_ZIP)
        train = [row["video_id"] for row in read_csv(train_path, ("video_id",))]
        jsfusion = annotation(root, JSFUSION, msrvtt_ce.CLIP4CLIP_ZIP)
        pairs = read_csv(jsfusion, ("key", "video_id", "sentence"))
        test = [row["video_id"] for row in pairs]
        test_sentences = [(row["key"], row["video_id"], row["sentence"].strip()) for row in pairs]
    check_lists({"the train list": train, "the test list": test}, listed, "the annotations")
    return {"train": train, "test": test}, sentences, test_sentences


def _videos_and_sentences(root: Path) -> tuple[list[str], list[Sentence]]:
    """All video ids, and (caption id, video id, text) of every sentence."""
    if not any((root / name).is_file() for name in ANNOTATIONS):
        raise ManifestError(
            f"{root}: no MSR-VTT annotations: expected MSRVTT_data.json (CLIP4Clip's "
            "msrvtt_data.zip), train_val_videodatainfo.json and test_videodatainfo.json (the "
            "original release), or Collaborative Experts' raw-captions.pkl (in root, "
            f"{' or '.join(f'{folder}/' for folder in msrvtt_ce.FOLDERS if folder)})"
        )
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
