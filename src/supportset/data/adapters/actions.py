"""HMDB-51 and UCF-101 with their three official train/test folds (action recognition).

Each video's caption is its action class in words ("brush hair", "apply eye makeup"), with
the video's id as caption id, so the manifests stay those of every other dataset.

HMDB-51 under root: `testTrainMulti_7030_splits/<action>_test_split<k>.txt` (lines
"<video>.avi <tag>", tag 1 = train, 2 = test, 0 = unused in that fold) and the videos in
`videos/` (any depth, e.g. `videos/<action>/<video>.avi`).
UCF-101 under root: `ucfTrainTestlist/classInd.txt`, `trainlist0<k>.txt` (lines
"<Class>/<video>.avi <label>") and `testlist0<k>.txt` (lines "<Class>/<video>.avi"), and
the videos in `UCF-101/` (any depth).

The folds have no validation split, which the paper's linear classifier needs for its
early stopping (appendix: "with early stopping"), and `prepare` requires: a tenth of each
fold's training source videos (by SHA-1) are held out as "val", with all their clips, since
clips cut from one source video (UCF-101's group `_gNN`, HMDB-51's name without its clip
number) look alike. The test split stays the official one.

Split choice "all" (the default) is every video any fold labels (train or test in some
fold), once, with the split of the first fold that labels it: features are extracted over
it once, and the action probe reads each fold's own manifest (`PROBE_FOLDS`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from supportset.data.adapters.files import VideoFolder, annotation, held_out, read_lines
from supportset.data.manifest import ManifestError

FOLDS = ("fold1", "fold2", "fold3")
ALL = "all"  # every video of the folds, once: what features are extracted over
SPLITS = (ALL, *FOLDS)  # the first is the default
PROTOCOLS = dict.fromkeys(SPLITS)  # scored by classification accuracy: no retrieval protocol
PROBE_FOLDS = FOLDS  # the split choices whose manifests the action probe trains and tests on
HMDB_SPLITS_DIR = "testTrainMulti_7030_splits"
HMDB_TAGS = {"1": "train", "2": "test"}

Labelled = list[tuple[str, str, str]]  # (video id, action in words, split)


def hmdb_files(root: Path, split: str) -> list[str]:
    return _files(split, lambda fold: _hmdb_fold_files(root, fold))


def _hmdb_fold_files(root: Path, fold: str) -> list[str]:
    folder = root / HMDB_SPLITS_DIR
    names = sorted(path.name for path in folder.glob(f"*_test_split{fold[-1]}.txt"))
    return [f"{HMDB_SPLITS_DIR}/{name}" for name in names]


def read_hmdb(root: Path, split: str) -> tuple[list[dict], list[dict]]:
    labelled = _labelled(split, lambda fold: _hmdb_labelled(root, fold))
    return _manifest_rows(labelled, VideoFolder(root / "videos"))


def _hmdb_labelled(root: Path, fold: str) -> Labelled:
    split_files = _hmdb_fold_files(root, fold)
    if not split_files:
        raise ManifestError(f"{root / HMDB_SPLITS_DIR}: no *_test_split{fold[-1]}.txt files")
    labelled = []
    for relative in split_files:
        path = annotation(root, relative)
        action = path.name[: -len(f"_test_split{fold[-1]}.txt")]
        for number, line in enumerate(read_lines(path), 1):
            name, _, tag = line.partition(" ")
            if tag.strip() not in ("0", "1", "2") or not name.endswith(".avi"):
                raise ManifestError(f"{path}: line {number} is not '<video>.avi <0|1|2>': {line!r}")
            if tag.strip() in HMDB_TAGS:
                labelled.append((name[:-4], action.replace("_", " "), HMDB_TAGS[tag.strip()]))
    return labelled


def ucf_files(root: Path, split: str) -> list[str]:
    return _files(split, _ucf_fold_files)


def _ucf_fold_files(fold: str) -> list[str]:
    k = fold[-1]
    return [
        f"ucfTrainTestlist/{name}"
        for name in ("classInd.txt", f"trainlist0{k}.txt", f"testlist0{k}.txt")
    ]


def read_ucf(root: Path, split: str) -> tuple[list[dict], list[dict]]:
    labelled = _labelled(split, lambda fold: _ucf_labelled(root, fold))
    return _manifest_rows(labelled, VideoFolder(root / "UCF-101"))


def _ucf_labelled(root: Path, fold: str) -> Labelled:
    class_file, train_file, test_file = (annotation(root, name) for name in _ucf_fold_files(fold))
    classes = set()
    for line in read_lines(class_file):
        _, _, name = line.partition(" ")
        classes.add(name.strip())
    labelled = []
    for path, split in ((train_file, "train"), (test_file, "test")):
        for number, line in enumerate(read_lines(path), 1):
            relative = line.split(" ")[0]
            action, _, name = relative.partition("/")
            if action not in classes or not name.endswith(".avi"):
                raise ManifestError(f"{path}: line {number} is not '<Class>/<video>.avi': {line!r}")
            labelled.append((name[:-4], _words(action), split))
    return labelled


def _words(camel: str) -> str:
    """ "ApplyEyeMakeup" -> "apply eye makeup"; "YoYo" -> "yo yo"."""
    return " ".join(re.findall(r"[A-Z][a-z]*|[a-z]+|\d+", camel)).lower()


def source_video(clip: str) -> str:
    """The source video a clip was cut from: its name without the clip number
    ("v_YoYo_g09_c02" -> "v_YoYo_g09", "brush_hair_u_nm_np1_ba_goo_2" -> "..._goo")."""
    return re.sub(r"_c?\d+$", "", clip)


def _folds(split: str) -> tuple[str, ...]:
    """The folds split choice `split` reads: all three for "all", else the one."""
    return FOLDS if split == ALL else (split,)


def _files(split: str, fold_files: Callable[[str], list[str]]) -> list[str]:
    """The annotation files of the folds of `split`, each once, in fold order."""
    return list(dict.fromkeys(name for fold in _folds(split) for name in fold_files(fold)))


def _labelled(split: str, fold_labelled: Callable[[str], Labelled]) -> Labelled:
    """The labelled videos of a fold with its val held out; for "all", every video any
    fold labels, once, with the split of the first fold that labels it. A video that two
    folds give different actions is a ManifestError."""
    if split != ALL:
        return _with_val(fold_labelled(split))
    first: dict[str, tuple[str, str, str]] = {}
    for fold in FOLDS:
        for video_id, action, video_split in _with_val(fold_labelled(fold)):
            kept = first.setdefault(video_id, (video_id, action, video_split))
            if kept[1] != action:
                raise ManifestError(
                    f"video '{video_id}' is '{kept[1]}' in an earlier fold, '{action}' in {fold}"
                )
    return list(first.values())


def _with_val(labelled: Labelled) -> Labelled:
    """`labelled` with a tenth of the training source videos (`held_out`) moved to val."""
    validation = held_out(sorted({source_video(v) for v, _, split in labelled if split == "train"}))
    held = {v for v, _, split in labelled if split == "train" and source_video(v) in validation}
    return [(v, action, "val" if v in held else split) for v, action, split in labelled]


def _manifest_rows(labelled: Labelled, folder: VideoFolder) -> tuple[list[dict], list[dict]]:
    """Manifest rows: one caption per video, its action, with the video's id as caption id."""
    videos = [
        {"video_id": video_id, "path": folder.path(video_id), "split": split}
        for video_id, _, split in labelled
    ]
    captions = [
        {"caption_id": video_id, "video_id": video_id, "text": action, "split": split}
        for video_id, action, split in labelled
    ]
    return videos, captions
