"""Adapters on the published split and annotation files users download (real-files/), with
the files these lack (captions, train.json, videos) generated around them in the same
formats. Skipped where the folder of published files is absent."""

from __future__ import annotations

import csv
import json
import os
import pickle
import shutil
from collections import Counter
from pathlib import Path

import pytest

from supportset.cli import main
from supportset.data.adapters import msrvtt, msrvtt_ce, msvd
from supportset.data.manifest import ManifestError, read_captions, read_videos
from tests.video_files import write_video

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "real-files"
pytestmark = pytest.mark.skipif(
    not REAL.is_dir(), reason=f"the published dataset files are absent ({REAL})"
)
CE_FOLDER = "high-quality/structured-symlinks"


def lines(path: Path) -> list[str]:
    return path.read_text().split()


def split_counts(rows: list[dict]) -> dict[str, int]:
    return dict(Counter(row["split"] for row in rows))


# ActivityNet Captions: the real val_1.json, CE's real train ids -------------------------


def activitynet_folder(root: Path, clip: Path, file_name) -> Path:
    """val_1.json as published, a train.json of CE's 10,009 training ids, and a link to
    `clip` for every video, named `file_name(video id)`."""
    (root / "videos").mkdir(parents=True)
    shutil.copy(REAL / "activitynet" / "val_1.json", root / "val_1.json")
    train_ids = lines(REAL / "activitynet" / "train_list.txt")
    entry = {"duration": 20.0, "timestamps": [[9.0, 20.0], [0.0, 9.5]],
             "sentences": ["Then he jumps.", "A man runs."]}  # fmt: skip
    (root / "train.json").write_text(json.dumps(dict.fromkeys(train_ids, entry)))
    for video_id in train_ids + lines(REAL / "activitynet" / "val_1_list.txt"):
        os.link(clip, root / "videos" / f"{file_name(video_id)}.mp4")
    return root


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("clip") / "clip.mp4", [0.0, 0.5, 1.0])


def test_ce_val_1_list_is_val_1_json() -> None:
    ids = list(json.loads((REAL / "activitynet" / "val_1.json").read_text()))
    assert ids == lines(REAL / "activitynet" / "val_1_list.txt") and len(ids) == 4917


def test_activitynet_videos_named_as_clip4clip_names_them_all_prepare(
    tmp_path: Path, clip: Path
) -> None:
    """CLIP4Clip's layout: `<YouTube id>.mp4`, without the "v_" of the annotation ids."""
    root = activitynet_folder(tmp_path / "anet", clip, lambda video_id: video_id[2:])
    out = tmp_path / "manifest"
    command = ["prepare", "--adapter", "activitynet", "--root", str(root),
               "--out-dir", str(out), "--missing-videos", "skip"]  # fmt: skip
    assert main(command) == 0
    videos = read_videos(out / "videos.parquet")
    assert split_counts(videos) == {"train": 9009, "val": 1000, "test": 4917}
    assert (out / "missing_videos.csv").read_text() == "video_id,path,split\n"
    assert all(Path(v["path"]).name == f"{v['video_id'][2:]}.mp4" for v in videos)
    captions = {c["video_id"]: c["text"] for c in read_captions(out / "captions.parquet")}
    assert len(captions) == len(videos)
    assert captions["v_uqiMw7tQ1Cc"] == (
        "A weight lifting tutorial is given. The coach helps the guy in red with the proper "
        "body placement and lifting technique."
    )


def test_activitynet_videos_named_otherwise_stop_prepare(
    tmp_path: Path, clip: Path, capsys
) -> None:
    root = activitynet_folder(tmp_path / "anet", clip, lambda video_id: f"{video_id}_360p")
    out = tmp_path / "manifest"
    command = ["prepare", "--adapter", "activitynet", "--root", str(root),
               "--out-dir", str(out), "--missing-videos", "skip"]  # fmt: skip
    assert main(command) == 1
    error = capsys.readouterr().err
    assert "4917 of the 4917 test videos are missing on disk (100%" in error
    assert str(out / "missing_videos.csv") in error
    assert len((out / "missing_videos.csv").read_text().splitlines()) == 1 + 10009 + 4917
    assert not (out / "videos.parquet").exists()


# MSR-VTT: CLIP4Clip's real CSVs and CE's real lists ------------------------------------


def jsfusion_sentences() -> dict[str, str]:
    with open(REAL / "msrvtt" / "MSRVTT_JSFUSION_test.csv", newline="") as handle:
        return {row["video_id"]: row["sentence"] for row in csv.DictReader(handle)}


def msrvtt_captions() -> dict[str, list[str]]:
    """20 captions per video (19 for video7 and video9000); each JSFusion test video has
    its JSFusion sentence at position n % 20."""
    chosen = jsfusion_sentences()
    captions = {}
    for n in range(10000):
        texts = [f"clip {n} caption {k}" for k in range(19 if n in (7, 9000) else 20)]
        if f"video{n}" in chosen:
            texts[n % len(texts)] = chosen[f"video{n}"]
        captions[f"video{n}"] = texts
    return captions


@pytest.fixture(scope="module")
def layouts(tmp_path_factory) -> dict[str, Path]:
    """The same captions in CLIP4Clip's layout (MSRVTT_data.json, sentences interleaved
    across videos as there) and in CE's (raw-captions.pkl as lists of words, with
    jsfusion_val_caption_idx.pkl), each with the published split files."""
    captions = msrvtt_captions()
    clip4clip = tmp_path_factory.mktemp("clip4clip")
    sentences = [
        {"video_id": video_id, "caption": texts[k]}
        for k in range(20)
        for video_id, texts in captions.items()
        if k < len(texts)
    ]
    data = {"videos": [{"video_id": video_id} for video_id in captions],
            "sentences": [{**s, "sen_id": i} for i, s in enumerate(sentences)]}  # fmt: skip
    (clip4clip / "MSRVTT_data.json").write_text(json.dumps(data))
    for name in ("MSRVTT_train.9k.csv", "MSRVTT_JSFUSION_test.csv"):
        shutil.copy(REAL / "msrvtt" / name, clip4clip / name)
    ce = tmp_path_factory.mktemp("ce")
    folder = ce / CE_FOLDER
    folder.mkdir(parents=True)
    for path in (REAL / "msrvtt").glob("*_list_*.txt"):
        shutil.copy(path, folder / path.name)
    words = {video_id: [text.split() for text in texts] for video_id, texts in captions.items()}
    (folder / "raw-captions.pkl").write_bytes(pickle.dumps(words))
    index = {video_id: int(video_id[5:]) % 20 for video_id in jsfusion_sentences()}
    (folder / "jsfusion_val_caption_idx.pkl").write_bytes(pickle.dumps(index))
    return {"clip4clip": clip4clip, "ce": ce}


def test_ce_jsfusion_lists_are_clip4clips_1k_a() -> None:
    with open(REAL / "msrvtt" / "MSRVTT_train.9k.csv", newline="") as handle:
        nine_k = [row["video_id"] for row in csv.DictReader(handle)]
    assert lines(REAL / "msrvtt" / "train_list_jsfusion.txt") == nine_k
    assert set(lines(REAL / "msrvtt" / "val_list_jsfusion.txt")) == set(jsfusion_sentences())


def test_ce_and_clip4clip_layouts_give_the_same_1k_a_manifest(layouts: dict[str, Path]) -> None:
    assert msrvtt.files(layouts["ce"], "1k-A") == [
        f"{CE_FOLDER}/{name}"
        for name in ("raw-captions.pkl", "train_list_jsfusion.txt", "val_list_jsfusion.txt",
                     "jsfusion_val_caption_idx.pkl")
    ]  # fmt: skip
    ce_videos, ce_captions = msrvtt.read(layouts["ce"], "1k-A")
    videos, captions = msrvtt.read(layouts["clip4clip"], "1k-A")
    assert [(v["video_id"], v["split"]) for v in ce_videos] == [
        (v["video_id"], v["split"]) for v in videos
    ]
    assert split_counts(ce_videos) == {"train": 8503, "val": 497, "test": 1000}
    for rows in (ce_captions, captions):
        test = {c["video_id"]: c["text"] for c in rows if c["split"] == "test"}
        assert test == jsfusion_sentences()
        assert sum(c["split"] == "test" for c in rows) == 1000

    def training(rows: list[dict]) -> list[tuple[str, str, str]]:
        return sorted((c["video_id"], c["split"], c["text"]) for c in rows if c["split"] != "test")

    assert training(ce_captions) == training(captions)
    assert len(training(captions)) == 20 * 9000 - 2  # video7 and video9000 have 19
    first = next(c for c in ce_captions if c["split"] == "test")
    assert first["caption_id"] == f"{first['video_id']}#{int(first['video_id'][5:]) % 20}"


def test_ce_full_lists_are_the_official_split(layouts: dict[str, Path]) -> None:
    videos, captions = msrvtt.read(layouts["ce"], "full")
    assert split_counts(videos) == {"train": 6513, "val": 497, "test": 2990}
    assert all(msrvtt.official_split(v["video_id"]) == v["split"] for v in videos)
    assert len(captions) == 20 * 10000 - 2


def test_ce_1k_b_keeps_every_test_caption_first_in_ce_order(layouts: dict[str, Path]) -> None:
    train = lines(REAL / "msrvtt" / "train_list_miech.txt")
    val = sum(msrvtt.official_split(video_id) == "val" for video_id in train)
    videos, captions = msrvtt.read(layouts["ce"], "1k-B")
    assert split_counts(videos) == {"train": 6656 - val, "val": val, "test": 1000}
    test = [c for c in captions if c["split"] == "test"]
    first = {}
    for caption in test:
        first.setdefault(caption["video_id"], caption["caption_id"])
    assert set(first.values()) == {f"{v}#0" for v in lines(REAL / "msrvtt" / "test_list_miech.txt")}
    assert len(test) == 20 * 1000 - ("video9000" in first)


def test_ce_layout_names_the_file_each_missing_piece_needs(
    layouts: dict[str, Path], tmp_path: Path
) -> None:
    root = tmp_path / "ce"
    shutil.copytree(layouts["ce"] / CE_FOLDER, root)  # CE's files straight in root
    assert msrvtt_ce.find_folder(root) == ""
    with pytest.raises(ManifestError, match=r"split 7k needs CLIP4Clip's MSRVTT_train\.7k\.csv"):
        msrvtt.read(root, "7k")
    index = pickle.loads((root / "jsfusion_val_caption_idx.pkl").read_bytes())
    index["video7020"] = 20
    (root / "jsfusion_val_caption_idx.pkl").write_bytes(pickle.dumps(index))
    with pytest.raises(ManifestError, match=r"'video7020' has no caption index among its 20"):
        msrvtt.read(root, "1k-A")
    (root / "jsfusion_val_caption_idx.pkl").unlink()
    with pytest.raises(
        ManifestError,
        match=r"jsfusion_val_caption_idx\.pkl: not found; .*Frozen in Time's "
        r"https://www\.robots\.ox\.ac\.uk/~maxbain/frozen-in-time/data/MSRVTT\.zip",
    ):
        msrvtt.read(root, "1k-A")
    (root / "val_list_jsfusion.txt").unlink()
    with pytest.raises(
        ManifestError,
        match=r"val_list_jsfusion\.txt: annotation file not found .*; get it from Collaborative "
        r"Experts' repository, misc/datasets/msrvtt/",
    ):
        msrvtt.read(root, "1k-A")


# MSVD: CE's real lists ------------------------------------------------------------------


def test_msvd_with_ces_lists(tmp_path: Path) -> None:
    clips = [clip for name in ("train", "val", "test")
             for clip in lines(REAL / "msvd" / f"{name}_list.txt")]  # fmt: skip
    for name in ("train", "val", "test"):
        shutil.copy(REAL / "msvd" / f"{name}_list.txt", tmp_path / f"{name}_list.txt")
    words = {clip: [["a", "clip", "of", clip]] * 40 for clip in clips}
    (tmp_path / "raw-captions.pkl").write_bytes(pickle.dumps(words))
    videos, captions = msvd.read(tmp_path, "standard")
    assert split_counts(videos) == {"train": 1200, "val": 100, "test": 670}
    assert len(captions) == 40 * 1970
