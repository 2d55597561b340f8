"""ActivityNet Captions: paragraph retrieval over whole videos.

Layout under root: `train.json` and `val_1.json` as distributed (a JSON object keyed by
video id, "v_" + YouTube id, each with "duration", "timestamps" and "sentences"), and the
videos in `videos/` (any depth, any common suffix) named by that id, as the ActivityNet
download and Collaborative Experts name them (`v_QOlSCBRmfWY.mp4`), or by the YouTube id
alone, as CLIP4Clip and the code bases built on it do (`QOlSCBRmfWY.mp4`); the ids stay
"v_" + YouTube id either way. A video's caption is its paragraph: its segment sentences in
time order, joined by spaces; the whole video is used.
Train: train.json's 10,009 videos, of which a fixed 1,000 (a tenth at most 1,000, by
SHA-1 of the ids) are held out for validation; test: val_1.json (4,917), as in the paper.
"""

from __future__ import annotations

from pathlib import Path

from supportset.data.adapters.files import VideoFolder, annotation, held_out, read_json
from supportset.data.manifest import ManifestError

SPLITS = ("val_1",)
PROTOCOLS = {"val_1": "paragraph"}  # paper appendix: segments joined into a video-paragraph


def files(root: Path, split: str) -> list[str]:
    return ["train.json", "val_1.json"]


def read(root: Path, split: str) -> tuple[list[dict], list[dict]]:
    folder = VideoFolder(root / "videos")
    train = _paragraphs(annotation(root, "train.json"))
    test = _paragraphs(annotation(root, "val_1.json"))
    overlap = sorted(set(train) & set(test))
    if overlap:
        raise ManifestError(f"videos in both train.json and val_1.json: {', '.join(overlap[:10])}")
    validation = held_out(list(train))
    videos, captions = [], []
    for paragraphs, default_split in ((train, "train"), (test, "test")):
        for video_id, text in paragraphs.items():
            split_name = "val" if video_id in validation else default_split
            path = folder.path(video_id, video_id.removeprefix("v_"))  # with "v_" or without
            videos.append({"video_id": video_id, "path": path, "split": split_name})
            captions.append(
                {"caption_id": video_id, "video_id": video_id, "text": text, "split": split_name}
            )
    return videos, captions


def _paragraphs(path: Path) -> dict[str, str]:
    """video id -> its sentences in time order, joined by spaces."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: expected an object keyed by video id")
    paragraphs = {}
    for video_id, entry in data.items():
        try:
            pairs = sorted(zip(entry["timestamps"], entry["sentences"], strict=True))
        except (KeyError, TypeError, ValueError) as error:
            raise ManifestError(
                f"{path}: video '{video_id}' lacks matching timestamps and sentences ({error})"
            ) from error
        paragraphs[video_id] = " ".join(sentence.strip() for _, sentence in pairs)
    return paragraphs
