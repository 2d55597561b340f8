"""The split choices the action probe needs: HMDB-51's and UCF-101's "all" (every video of
the three folds, once, for feature extraction) and the demo corpus's "events" (its event
as the one caption of each video), on fixture files in the real formats, written here."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from supportset.data.adapters import ADAPTERS, actions, demo
from supportset.data.demo import EVENTS
from supportset.data.manifest import ManifestError, read_captions, read_videos
from supportset.data.prepare import prepare

HMDB_ACTIONS = ("brush_hair", "cartwheel")


def write_hmdb(root: Path, sources: int = 30, clips: int = 3) -> Path:
    """Per action `sources` source videos of `clips` clips; in fold k, source s is unused
    (tag 0), train (1) or test (2) by (s + k) % 3, so every clip is in two folds."""
    folder = root / actions.HMDB_SPLITS_DIR
    folder.mkdir(parents=True)
    for action in HMDB_ACTIONS:
        for fold in (1, 2, 3):
            lines = [f"Source{s}_{action}_u_nm_np1_ba_goo_{k}.avi {(s + fold) % 3}"
                     for s in range(sources) for k in range(clips)]  # fmt: skip
            (folder / f"{action}_test_split{fold}.txt").write_text("\n".join(lines) + "\n")
    return root


def write_ucf(root: Path) -> Path:
    """Two classes of 25 groups of 4 clips; fold k tests groups 7(k-1)+1 .. 7k."""
    lists = root / "ucfTrainTestlist"
    lists.mkdir(parents=True)
    (lists / "classInd.txt").write_text("1 ApplyEyeMakeup\r\n2 YoYo\r\n")
    for fold in (1, 2, 3):
        tested = range(7 * (fold - 1) + 1, 7 * fold + 1)
        clips = [
            (f"{c}/v_{c}_g{g:02d}_c{k:02d}.avi", g in tested)
            for c in ("ApplyEyeMakeup", "YoYo")
            for g in range(1, 26)
            for k in range(1, 5)
        ]
        train = "".join(f"{clip} 1\r\n" for clip, test in clips if not test)
        (lists / f"trainlist0{fold}.txt").write_text(train)
        (lists / f"testlist0{fold}.txt").write_text("".join(f"{c}\r\n" for c, t in clips if t))
    return root


def first_fold_splits(read, root: Path) -> dict[str, tuple[str, str]]:
    """video -> (action, split) of the first fold that labels it, by reading each fold."""
    expected: dict[str, tuple[str, str]] = {}
    for fold in actions.FOLDS:
        videos, captions = read(root, fold)
        action_of = {c["video_id"]: c["text"] for c in captions}
        for video in videos:
            expected.setdefault(video["video_id"], (action_of[video["video_id"]], video["split"]))
    return expected


@pytest.mark.parametrize("name", ["hmdb51", "ucf101"])
def test_all_is_every_labelled_video_once_with_its_first_folds_split(tmp_path, name) -> None:
    root = write_hmdb(tmp_path) if name == "hmdb51" else write_ucf(tmp_path)
    adapter = ADAPTERS[name]
    videos, captions = adapter.read(root, "all")
    expected = first_fold_splits(adapter.read, root)
    assert [v["video_id"] for v in videos] == list(expected)  # each once, in first-seen order
    assert {v["video_id"]: v["split"] for v in videos} == {v: s for v, (_, s) in expected.items()}
    assert [(c["caption_id"], c["text"], c["split"]) for c in captions] == [
        (v, action, split) for v, (action, split) in expected.items()
    ]
    assert set(Counter(v["split"] for v in videos)) == {"train", "val", "test"}


def test_hmdb51_all_reaches_the_clips_fold1_leaves_unused(tmp_path: Path) -> None:
    root = write_hmdb(tmp_path)
    fold1, _ = actions.read_hmdb(root, "fold1")
    every, _ = actions.read_hmdb(root, "all")
    assert len(fold1) == 2 * 20 * 3 and len(every) == 2 * 30 * 3
    fold1_split = {v["video_id"]: v["split"] for v in fold1}
    assert all(
        v["split"] == fold1_split[v["video_id"]] for v in every if v["video_id"] in fold1_split
    )


def test_ucf101_all_is_fold1_which_labels_every_video(tmp_path: Path) -> None:
    root = write_ucf(tmp_path)
    assert actions.read_ucf(root, "all") == actions.read_ucf(root, "fold1")


def test_all_reads_the_union_of_the_folds_files(tmp_path: Path) -> None:
    hmdb = write_hmdb(tmp_path / "hmdb")
    assert actions.hmdb_files(hmdb, "all") == [
        f"{actions.HMDB_SPLITS_DIR}/{action}_test_split{k}.txt"
        for k in (1, 2, 3)
        for action in HMDB_ACTIONS
    ]
    assert actions.ucf_files(tmp_path, "all") == [
        f"ucfTrainTestlist/{name}"
        for name in ("classInd.txt", "trainlist01.txt", "testlist01.txt", "trainlist02.txt",
                     "testlist02.txt", "trainlist03.txt", "testlist03.txt")
    ]  # fmt: skip
    assert actions.ucf_files(tmp_path, "fold2") == [
        "ucfTrainTestlist/classInd.txt",
        "ucfTrainTestlist/trainlist02.txt",
        "ucfTrainTestlist/testlist02.txt",
    ]


def test_a_video_two_folds_label_differently_is_an_error(tmp_path: Path) -> None:
    root = write_ucf(tmp_path)
    fold2 = root / "ucfTrainTestlist" / "testlist02.txt"
    fold2.write_text(fold2.read_text().replace("YoYo/v_YoYo_g08", "ApplyEyeMakeup/v_YoYo_g08"))
    with pytest.raises(ManifestError, match="'v_YoYo_g08_c01' is 'yo yo' in an earlier fold, "):
        actions.read_ucf(root, "all")


def test_a_missing_fold_of_all_is_named(tmp_path: Path) -> None:
    root = write_hmdb(tmp_path)
    for path in (root / actions.HMDB_SPLITS_DIR).glob("*_test_split3.txt"):
        path.unlink()
    with pytest.raises(ManifestError, match=r"no \*_test_split3\.txt files"):
        actions.read_hmdb(root, "all")


@pytest.mark.parametrize("name", ["hmdb51", "ucf101"])
def test_all_is_the_default_and_the_folds_are_the_probes(name: str) -> None:
    adapter = ADAPTERS[name]
    assert adapter.splits == ("all", "fold1", "fold2", "fold3")
    assert adapter.choose_split("") == "all"
    assert adapter.probe_folds == ("fold1", "fold2", "fold3")
    assert all(adapter.protocol(split) is None for split in adapter.splits)


def test_retrieval_datasets_have_no_probe_folds() -> None:
    probed = {name for name, adapter in ADAPTERS.items() if adapter.probe_folds}
    assert probed == {"demo", "hmdb51", "ucf101"}


def test_prepare_accepts_all_as_the_default(tmp_path: Path) -> None:
    root = write_hmdb(tmp_path / "hmdb")
    videos = root / "videos" / "any_depth"
    videos.mkdir(parents=True)
    for action in HMDB_ACTIONS:
        for s in range(30):
            for k in range(3):
                (videos / f"Source{s}_{action}_u_nm_np1_ba_goo_{k}.avi").touch()
    assert prepare("hmdb51", root, tmp_path / "out") == (180, 180)
    manifest = read_videos(tmp_path / "out" / "videos.parquet")
    assert Path(manifest[0]["path"]).parent == videos


# demo: events --------------------------------------------------------------------------


def write_annotations(root: Path, meanings: list[tuple[str, str]]) -> Path:
    """annotations.json of videos (split, meaning), two paraphrases each."""
    videos = [
        {"video_id": f"demo{i:05d}", "file": f"videos/demo{i:05d}.mp4", "split": split,
         "meaning": meaning}
        for i, (split, meaning) in enumerate(meanings)
    ]  # fmt: skip
    captions = [
        {"caption_id": f"{v['video_id']}_{k}", "video_id": v["video_id"], "text": f"text {k}"}
        for v in videos
        for k in range(2)
    ]
    (root / "annotations.json").write_text(json.dumps({"videos": videos, "captions": captions}))
    return root


MEANINGS = [
    ("train", "turns|square|red|blue|bg=black"),
    ("train", "fades_out|circle|green|bg=navy"),
    ("val", "appears|triangle|white|bg=gray"),
    ("test", "grows|circle|red|bg=navy"),
    ("test", "shrinks|square|yellow|bg=dark green"),
]


def test_demo_events_caption_each_video_with_its_event_in_words(tmp_path: Path) -> None:
    videos, captions = demo.read(write_annotations(tmp_path, MEANINGS), "events")
    assert [v["split"] for v in videos] == [split for split, _ in MEANINGS]
    assert captions == [
        {"caption_id": f"demo{i:05d}", "video_id": f"demo{i:05d}", "text": text, "split": split}
        for i, (text, (split, _)) in enumerate(
            zip(["turns", "fades out", "appears", "grows", "shrinks"], MEANINGS, strict=True)
        )
    ]
    standard = demo.read(tmp_path, "standard")
    assert standard[0] == videos and len(standard[1]) == 2 * len(MEANINGS)


def test_demo_event_outside_the_corpus_events_is_an_error(tmp_path: Path) -> None:
    write_annotations(tmp_path, [("train", "jumps|square|red|bg=black")])
    with pytest.raises(ManifestError, match=r"demo00000: meaning 'jumps\|.*' starts with no event"):
        demo.read(tmp_path, "events")


def test_demo_split_choices(corpus: Path, tmp_path: Path) -> None:
    adapter = ADAPTERS["demo"]
    assert adapter.splits == ("standard", "events") and adapter.choose_split("") == "standard"
    assert adapter.probe_folds == ("events",)
    assert (adapter.protocol("standard"), adapter.protocol("events")) == ("multi-caption", None)
    count = prepare("demo", corpus, tmp_path, "events")
    videos = read_videos(tmp_path / "videos.parquet")
    captions = read_captions(tmp_path / "captions.parquet")
    assert count == (len(videos), len(videos))
    assert [c["caption_id"] for c in captions] == [v["video_id"] for v in videos]
    assert {c["text"] for c in captions} <= {event.replace("_", " ") for event in EVENTS}
