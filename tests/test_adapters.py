"""Dataset adapters on fixture files in the real formats, written here.

The split-size tests build annotation files that mimic the full id ranges of each dataset
(no videos needed: the adapters' rows are checked before `prepare` looks for files)."""

from __future__ import annotations

import csv
import json
import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from supportset.data.adapters import ADAPTERS, actions, activitynet, howto100m, msrvtt, msvd, vatex
from supportset.data.adapters.files import read_plain_pickle
from supportset.data.manifest import ManifestError, read_captions, read_videos
from supportset.data.prepare import prepare


def split_counts(rows: list[dict]) -> dict[str, int]:
    return dict(Counter(row["split"] for row in rows))


def write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


# MSR-VTT ------------------------------------------------------------------------------

JSFUSION_TEST = [f"video{n}" for n in range(7010, 10000, 2)][:1000]
MIECH_TEST = [f"video{n}" for n in range(9000, 10000)]
MIECH_TRAIN = [f"video{n}" for n in range(9000) if n % 4 != 3][:6656]
MIECH_VAL = sum(6513 <= int(v[5:]) <= 7009 for v in MIECH_TRAIN)  # official val ids: 373


def msrvtt_root(root: Path, original_files: bool = False) -> Path:
    """All 10,000 videos with 20 captions (video7 and video9000 with 19), the CLIP4Clip CSVs
    and Collaborative Experts' 1k-B lists."""
    videos = [{"video_id": f"video{n}", "id": n, "split": "train"} for n in range(10000)]
    sentences = [
        {"sen_id": 20 * n + k, "video_id": f"video{n}", "caption": f"clip {n} caption {k}"}
        for n in range(10000)
        for k in range(19 if n in (7, 9000) else 20)
    ]
    if original_files:
        for name, numbers in (("train_val", range(7010)), ("test", range(7010, 10000))):
            chosen = set(numbers)
            data = {
                "videos": [v for v in videos if v["id"] in chosen],
                "sentences": [s for s in sentences if int(s["video_id"][5:]) in chosen],
            }
            (root / f"{name}_videodatainfo.json").write_text(json.dumps(data))
    else:
        (root / "MSRVTT_data.json").write_text(
            json.dumps({"videos": videos, "sentences": sentences})
        )
    test = set(JSFUSION_TEST)
    nine_k = [f"video{n}" for n in range(10000) if f"video{n}" not in test][:9000]
    write_csv(root / "MSRVTT_train.9k.csv", ["video_id"], [[v] for v in nine_k])
    write_csv(root / "MSRVTT_train.7k.csv", ["video_id"], [[f"video{n}"] for n in range(7010)])
    write_csv(
        root / "MSRVTT_JSFUSION_test.csv",
        ["key", "vid_key", "video_id", "sentence"],
        [
            [f"ret{i}", f"msr{v[5:]}", v, f"jsfusion sentence {i}"]
            for i, v in enumerate(JSFUSION_TEST)
        ],
    )
    (root / "train_list_miech.txt").write_text("\n".join(MIECH_TRAIN) + "\n")
    (root / "test_list_miech.txt").write_text("\n".join(MIECH_TEST))
    return root


@pytest.fixture(scope="module")
def msrvtt_folder(tmp_path_factory) -> Path:
    return msrvtt_root(tmp_path_factory.mktemp("msrvtt"))


def sizes(train: int, val: int, test: int, test_captions: int, train_short: int = 1) -> tuple:
    """Expected videos and captions per split: 20 captions each, `train_short` train videos
    (video7) and, when all test captions are kept, one test video (video9000) with 19."""
    videos = {"train": train, "val": val, "test": test}
    captions = {"train": 20 * train - train_short, "val": 20 * val, "test": test_captions}
    return videos, captions


@pytest.mark.parametrize(
    ("split", "expected"),
    [
        ("1k-A", sizes(8503, 497, 1000, 1000)),
        ("7k", sizes(6513, 497, 1000, 1000)),
        ("1k-B", sizes(6656 - MIECH_VAL, MIECH_VAL, 1000, 20 * 1000 - 1, train_short=0)),
        ("full", sizes(6513, 497, 2990, 20 * 2990 - 1)),
    ],
)
def test_msrvtt_split_sizes(msrvtt_folder: Path, split: str, expected: tuple) -> None:
    video_rows, caption_rows = msrvtt.read(msrvtt_folder, split)
    assert (split_counts(video_rows), split_counts(caption_rows)) == expected
    assert video_rows[0]["path"] == str(
        msrvtt_folder / "videos" / f"{video_rows[0]['video_id']}.mp4"
    )


def test_msrvtt_1k_a_tests_on_the_jsfusion_sentences(msrvtt_folder: Path) -> None:
    _, captions = msrvtt.read(msrvtt_folder, "1k-A")
    test = [c for c in captions if c["split"] == "test"]
    assert test[0] == {
        "caption_id": "ret0", "video_id": "video7010", "text": "jsfusion sentence 0",
        "split": "test",
    }  # fmt: skip
    assert {c["video_id"] for c in test} == set(JSFUSION_TEST)


def test_msrvtt_original_annotation_files_give_the_same_manifest(
    tmp_path: Path, msrvtt_folder: Path
) -> None:
    original = msrvtt_root(tmp_path, original_files=True)
    assert msrvtt.files(original, "full") == [
        "train_val_videodatainfo.json",
        "test_videodatainfo.json",
    ]
    for split in ("1k-A", "full"):
        ours, theirs = msrvtt.read(original, split), msrvtt.read(msrvtt_folder, split)
        assert [v["video_id"] for v in ours[0]] == [v["video_id"] for v in theirs[0]]
        assert [c["caption_id"] for c in ours[1]] == [c["caption_id"] for c in theirs[1]]


def small_msrvtt(root: Path, train: list[str], test: list[str]) -> Path:
    numbers = [*range(12), 6513, 7010]
    videos = [{"video_id": f"video{n}"} for n in numbers]
    sentences = [{"sen_id": n, "video_id": f"video{n}", "caption": "a clip"} for n in numbers]
    (root / "MSRVTT_data.json").write_text(json.dumps({"videos": videos, "sentences": sentences}))
    write_csv(root / "MSRVTT_train.9k.csv", ["video_id"], [[v] for v in train])
    write_csv(root / "MSRVTT_JSFUSION_test.csv", ["key", "vid_key", "video_id", "sentence"],
              [[f"ret{i}", "x", v, "s"] for i, v in enumerate(test)])  # fmt: skip
    return root


@pytest.mark.parametrize(
    ("train", "test", "message"),
    [
        (["video1", "video1"], ["video2"], "train list repeats video1"),
        (["video1"], ["video77"], "test list names videos missing from the annotations: video77"),
        (["video1", "video2"], ["video2"], "in both the train list and the test list: video2"),
    ],
)
def test_msrvtt_bad_lists_are_named(tmp_path: Path, train: list, test: list, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        msrvtt.read(small_msrvtt(tmp_path, train, test), "1k-A")


def test_missing_annotation_file_and_malformed_json_are_named(tmp_path: Path) -> None:
    with pytest.raises(
        ManifestError, match=r"no MSR-VTT annotations: expected MSRVTT_data\.json .* raw-captions"
    ):
        msrvtt.read(tmp_path, "full")
    (tmp_path / "MSRVTT_data.json").write_text('{"videos": [')
    with pytest.raises(ManifestError, match=r"MSRVTT_data\.json: malformed JSON"):
        msrvtt.read(tmp_path, "full")
    (tmp_path / "MSRVTT_data.json").write_text('{"videos": [{"id": 1}], "sentences": []}')
    with pytest.raises(ManifestError, match="not MSR-VTT's videos/sentences layout"):
        msrvtt.read(tmp_path, "full")


def test_a_missing_split_file_says_where_to_get_it(tmp_path: Path) -> None:
    root = small_msrvtt(tmp_path, ["video1"], ["video7010"])
    (root / "MSRVTT_JSFUSION_test.csv").unlink()
    with pytest.raises(
        ManifestError,
        match=r"MSRVTT_JSFUSION_test\.csv: annotation file not found .*; get it from "
        r"https://github\.com/ArrowLuo/CLIP4Clip/releases/download/v0\.0/msrvtt_data\.zip",
    ):
        msrvtt.read(root, "1k-A")
    with pytest.raises(
        ManifestError, match=r"train_list_miech\.txt: .*Collaborative Experts' repository"
    ):
        msrvtt.read(root, "1k-B")


# prepare: missing videos, split choice --------------------------------------------------


def test_missing_videos_are_listed_and_fail_or_skip(tmp_path: Path, caplog) -> None:
    (tmp_path / "msrvtt").mkdir()
    train = ["video0", "video1", "video2", "video3", "video4", "video6513"]
    root = small_msrvtt(tmp_path / "msrvtt", train, ["video7010"])
    (root / "videos").mkdir()
    for video_id in ("video0", "video2", "video3", "video4", "video6513", "video7010"):
        (root / "videos" / f"{video_id}.mp4").touch()
    out = tmp_path / "manifest"
    with pytest.raises(ManifestError, match=r"1 of 7 listed videos are missing on disk \(video1\)"):
        prepare("msrvtt", root, out, "1k-A", "fail")
    assert not (out / "videos.parquet").exists()
    assert f"missing video video1: {root / 'videos' / 'video1.mp4'}" in caplog.text
    assert (out / "missing_videos.csv").read_text().splitlines()[1].startswith("video1,")
    assert prepare("msrvtt", root, out, "1k-A", "skip") == (6, 6)
    assert [v["video_id"] for v in read_videos(out / "videos.parquet")] == [
        "video0", "video2", "video3", "video4", "video6513", "video7010",
    ]  # fmt: skip
    assert "video1" not in {c["video_id"] for c in read_captions(out / "captions.parquet")}


def test_unknown_split_choice_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown split '1k-C' \(choices: 1k-A, 7k, 1k-B, full\)"):
        prepare("msrvtt", tmp_path, tmp_path / "out", "1k-C")


def test_a_video_twice_in_a_json_object_is_named_not_collapsed(tmp_path: Path) -> None:
    entry = '{"duration": 5, "timestamps": [[0, 1]], "sentences": ["a"]}'
    (tmp_path / "train.json").write_text(f'{{"v_a": {entry}, "v_b": {entry}, "v_a": {entry}}}')
    (tmp_path / "val_1.json").write_text("{}")
    with pytest.raises(ManifestError, match=r"train\.json: repeated key\(s\) v_a"):
        activitynet.read(tmp_path, "val_1")


def test_ids_that_would_escape_the_dataset_folder_are_refused(tmp_path: Path) -> None:
    (tmp_path / "train.json").write_text(
        json.dumps({"../../etc/passwd": {"timestamps": [], "sentences": []}})
    )
    (tmp_path / "val_1.json").write_text("{}")
    with pytest.raises(ManifestError, match="would escape the dataset folder"):
        activitynet.read(tmp_path, "val_1")


# MSVD -----------------------------------------------------------------------------------


def msvd_root(root: Path) -> Path:
    clips = [f"clip{n:04d}_{n}_{n + 5}" for n in range(1970)]
    lists = {
        "train_list.txt": clips[:1200],
        "val_list.txt": clips[1200:1300],
        "test_list.txt": clips[1300:],
    }
    for name, names in lists.items():
        (root / name).write_text("\n".join(names) + "\n")
    captions = {
        clip: [["a", "man", "plays", str(k)] for k in range(40 + n % 3)]
        for n, clip in enumerate(clips)
    }
    (root / "raw-captions.pkl").write_bytes(pickle.dumps(captions))
    return root


def test_msvd_split_sizes_and_captions(tmp_path: Path) -> None:
    videos, captions = msvd.read(msvd_root(tmp_path), "standard")
    assert split_counts(videos) == {"train": 1200, "val": 100, "test": 670}
    assert len(captions) == sum(40 + n % 3 for n in range(1970))
    assert captions[0]["text"] == "a man plays 0" and captions[0]["caption_id"] == "clip0000_0_5#0"
    assert videos[0]["path"] == str(tmp_path / "YouTubeClips" / "clip0000_0_5.mp4")


class Payload:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


def test_msvd_pickle_is_read_as_plain_data_only(tmp_path: Path) -> None:
    msvd_root(tmp_path)
    (tmp_path / "raw-captions.pkl").write_bytes(pickle.dumps({"clip": Payload()}))
    with pytest.raises(ManifestError, match=r"refusing to load (posix|os)\.system"):
        msvd.read(tmp_path, "standard")


@pytest.mark.parametrize("protocol", [2, 4])
def test_pickled_numpy_numbers_load_as_python_numbers(tmp_path: Path, protocol: int) -> None:
    """Collaborative Experts' caption index may hold numpy.int64 values."""
    path = tmp_path / "index.pkl"
    values = {"video7020": np.int64(3), "f": np.float32(0.5), "b": np.bool_(True), "i": 7}
    path.write_bytes(pickle.dumps(values, protocol=protocol))
    loaded = read_plain_pickle(path)
    assert loaded == {"video7020": 3, "f": 0.5, "b": True, "i": 7}
    assert type(loaded["video7020"]) is int


@pytest.mark.parametrize(
    ("value", "refused"),
    [(np.array([1, 2]), r"_reconstruct"), (np.array(["a"], dtype=object)[0:1], "_reconstruct"),
     (np.str_("a"), r"NumPy dtype <U1")],
)  # fmt: skip
def test_pickled_numpy_arrays_and_other_scalars_are_refused(
    tmp_path: Path, value: object, refused: str
) -> None:
    path = tmp_path / "index.pkl"
    path.write_bytes(pickle.dumps({"v": value}))
    with pytest.raises(ManifestError, match=refused):
        read_plain_pickle(path)


# VATEX ----------------------------------------------------------------------------------


def test_vatex_split_sizes_and_english_captions(tmp_path: Path) -> None:
    def entry(n: int) -> dict:
        return {"videoID": f"yt{n:05d}_{n:06d}_{n + 10:06d}",
                "enCap": [f"english {k}" for k in range(10)],
                "chCap": [f"中文 {k}" for k in range(10)]}  # fmt: skip

    (tmp_path / "vatex_training_v1.0.json").write_text(json.dumps([entry(n) for n in range(25991)]))
    validation = [entry(n) for n in range(30000, 33000)]
    (tmp_path / "vatex_validation_v1.0.json").write_text(json.dumps(validation))
    ids = [item["videoID"] for item in validation]
    (tmp_path / "val_list.txt").write_text("\n".join(ids[:1500]))
    (tmp_path / "test_list.txt").write_text("\n".join(ids[1500:]))
    videos, captions = vatex.read(tmp_path, "hgr")
    assert split_counts(videos) == {"train": 25991, "val": 1500, "test": 1500}
    assert len(captions) == 10 * 28991 and {c["text"][:7] for c in captions} == {"english"}
    (tmp_path / "test_list.txt").write_text("\n".join(ids[1400:]))
    with pytest.raises(ManifestError, match=r"both val_list\.txt and test_list\.txt"):
        vatex.read(tmp_path, "hgr")


# ActivityNet ----------------------------------------------------------------------------


def test_activitynet_paragraphs_and_split_sizes(tmp_path: Path) -> None:
    def videos(first: int, count: int) -> dict:
        return {
            f"v_{n:011d}": {"duration": 60.0, "timestamps": [[30.0, 40.0], [1.0, 9.5]],
                            "sentences": ["Then he jumps. ", "A man runs."]}
            for n in range(first, first + count)
        }  # fmt: skip

    (tmp_path / "train.json").write_text(json.dumps(videos(0, 10009)))
    (tmp_path / "val_1.json").write_text(json.dumps(videos(20000, 4917)))
    video_rows, captions = activitynet.read(tmp_path, "val_1")
    assert split_counts(video_rows) == {"train": 9009, "val": 1000, "test": 4917}
    assert split_counts(captions) == split_counts(video_rows)
    assert captions[0]["text"] == "A man runs. Then he jumps."
    assert captions[0]["caption_id"] == captions[0]["video_id"]


# HowTo100M ------------------------------------------------------------------------------


def howto100m_rows(root: Path) -> tuple[list[dict], list[dict]]:
    """The videos and the streamed caption rows of every video of a HowTo100M folder."""
    videos, stream = howto100m.read(root, "caption")
    split_of = {video["video_id"]: video["split"] for video in videos}
    return videos, pa.Table.from_batches(stream.batches(split_of)).to_pylist()


def test_howto100m_segments_become_timed_captions(tmp_path: Path, caplog) -> None:
    columns = ["video_id", "category_1", "category_2", "rank", "task_id"]
    write_csv(tmp_path / "HowTo100M_v1.csv", columns,
              [[f"yt{n}", "Food", "Baking", n, 7] for n in range(200)])  # fmt: skip
    segments = {
        f"yt{n}": {"start": [5.0, 0.0, 9.0], "end": [9.0, 5.5, 12.0],
                   "text": ["then mix", "first add flour", " "]}
        for n in range(200)
    }  # fmt: skip
    segments["unlisted"] = {"start": [0.0], "end": [1.0], "text": ["x"]}
    (tmp_path / "caption.json").write_text(json.dumps(segments))
    videos, captions = howto100m_rows(tmp_path)
    assert split_counts(videos) == {"train": 198, "val": 2}
    assert len(captions) == 400  # the blank segment is not a caption
    first = [c for c in captions if c["video_id"] == "yt0"]
    assert [(c["text"], c["start"], c["end"]) for c in first] == [
        ("first add flour", 0.0, 5.5), ("then mix", 5.0, 9.0),
    ]  # fmt: skip
    assert "1 captioned videos are not in HowTo100M_v1.csv" in caplog.text
    segments["yt3"]["end"][0] = 1.0
    (tmp_path / "caption.json").write_text(json.dumps(segments))
    with pytest.raises(ManifestError, match=r"video 'yt3' segment .* runs from 5\.0 to 1\.0 s"):
        howto100m_rows(tmp_path)
    segments["yt3"]["end"][0], segments["yt3"]["start"][0] = 9.0, None
    (tmp_path / "caption.json").write_text(json.dumps(segments))
    with pytest.raises(ManifestError, match=r"video 'yt3' lacks parallel start/end/text"):
        howto100m_rows(tmp_path)


# HMDB-51 and UCF-101 --------------------------------------------------------------------


def sources_by_split(videos: list[dict]) -> dict[str, set[str]]:
    grouped: dict[str, set[str]] = {}
    for video in videos:
        grouped.setdefault(video["split"], set()).add(actions.source_video(video["video_id"]))
    return grouped


def test_hmdb51_folds_keep_test_hold_out_val_by_source_video_and_drop_unused(
    tmp_path: Path,
) -> None:
    """30 source videos of 3 clips per action; per fold a third each unused, train, test."""
    folder = tmp_path / "testTrainMulti_7030_splits"
    folder.mkdir()
    for action in ("brush_hair", "cartwheel"):
        for fold in (1, 2, 3):
            lines = [f"Source{s}_{action}_u_nm_np1_ba_goo_{k}.avi {(s + fold) % 3} "
                     for s in range(30) for k in range(3)]  # fmt: skip
            (folder / f"{action}_test_split{fold}.txt").write_text("\n".join(lines) + "\n")
    videos, captions = actions.read_hmdb(tmp_path, "fold2")
    assert split_counts(videos) == {"train": 54, "val": 6, "test": 60}
    sources = sources_by_split(videos)
    assert len(sources["val"]) == 2 and not sources["val"] & sources["train"]
    assert {c["text"] for c in captions} == {"brush hair", "cartwheel"}
    (folder / "cartwheel_test_split2.txt").write_text("cartwheel_0.avi train\n")
    with pytest.raises(ManifestError, match=r"line 1 is not '<video>\.avi <0\|1\|2>'"):
        actions.read_hmdb(tmp_path, "fold2")


def test_ucf101_folds_class_names_and_val_groups(tmp_path: Path) -> None:
    """Groups g01-g07 test, g08-g25 train, 4 clips each, as in UCF-101's fold 1."""
    lists = tmp_path / "ucfTrainTestlist"
    lists.mkdir()
    (lists / "classInd.txt").write_text("1 ApplyEyeMakeup\r\n2 YoYo\r\n")
    clips = {name: [f"{c}/v_{c}_g{g:02d}_c{k:02d}.avi" for c in ("ApplyEyeMakeup", "YoYo")
                    for g in groups for k in range(1, 5)]
             for name, groups in (("train", range(8, 26)), ("test", range(1, 8)))}  # fmt: skip
    (lists / "trainlist01.txt").write_text("".join(f"{c} 1\r\n" for c in clips["train"]))
    (lists / "testlist01.txt").write_text("".join(f"{c}\r\n" for c in clips["test"]))
    videos, captions = actions.read_ucf(tmp_path, "fold1")
    assert videos[0]["video_id"] == "v_ApplyEyeMakeup_g08_c01"
    assert split_counts(videos) == {"train": 132, "val": 12, "test": 56}
    sources = sources_by_split(videos)
    assert len(sources["val"]) == 3 and not sources["val"] & sources["train"]
    assert {c["text"] for c in captions} == {"apply eye makeup", "yo yo"}
    (lists / "testlist01.txt").write_text("Juggling/v_Juggling_g01_c01.avi\n")
    with pytest.raises(ManifestError, match=r"line 1 is not '<Class>/<video>\.avi'"):
        actions.read_ucf(tmp_path, "fold1")


def test_every_adapter_names_its_files_and_default_split(tmp_path: Path) -> None:
    for name, adapter in ADAPTERS.items():
        assert adapter.choose_split("") == adapter.splits[0], name
        assert adapter.files(tmp_path, adapter.splits[0]) or name == "hmdb51", name


PUBLISHED_PROTOCOLS = {
    ("demo", "standard"): "multi-caption",
    ("manifest", "standard"): "multi-caption",
    ("msrvtt", "1k-A"): "one-caption",  # JSFusion's one sentence per test video
    ("msrvtt", "7k"): "one-caption",  # the same 1,000 JSFusion pairs
    ("msrvtt", "1k-B"): "one-caption",  # CE (after Miech et al.): the first caption
    ("msrvtt", "full"): "multi-caption",  # CE: all 20 captions (num_test_captions 20)
    ("msvd", "standard"): "multi-caption",  # CE: num_test_captions 81
    ("vatex", "hgr"): "multi-caption",  # HGR: every reference caption
    ("activitynet", "val_1"): "paragraph",  # the paper: segments joined into a paragraph
    ("howto100m", "caption"): "multi-caption",
    ("howto100m", "raw_caption"): "multi-caption",
    **{(name, fold): None for name in ("hmdb51", "ucf101") for fold in actions.SPLITS},
    ("demo", "events"): None,  # scored by classification accuracy
}


def test_each_split_choice_has_its_published_protocol() -> None:
    from supportset.retrieval.metrics import PROTOCOLS

    table = {
        (name, split): adapter.protocol(split)
        for name, adapter in ADAPTERS.items()
        for split in adapter.splits
    }
    assert table == PUBLISHED_PROTOCOLS
    assert {protocol for protocol in table.values() if protocol} == set(PROTOCOLS)
    assert ADAPTERS["msrvtt"].protocol("") == "one-caption"
    with pytest.raises(ValueError, match="unknown split 'testing'"):
        ADAPTERS["msrvtt"].protocol("testing")


def test_msrvtt_1k_b_one_caption_queries_are_the_first_captions(msrvtt_folder: Path) -> None:
    from supportset.retrieval.metrics import apply_protocol

    videos, captions = msrvtt.read(msrvtt_folder, ADAPTERS["msrvtt"].choose_split("1k-B"))
    test = [c for c in captions if c["split"] == "test"]
    test_videos = [v["video_id"] for v in videos if v["split"] == "test"]
    ids, video_ids, _ = apply_protocol(
        ADAPTERS["msrvtt"].protocol("1k-B"),
        test_videos,
        [c["caption_id"] for c in test],
        [c["video_id"] for c in test],
        np.zeros((len(test), 1)),
    )
    text_of = {c["caption_id"]: c["text"] for c in test}
    assert video_ids == test_videos == MIECH_TEST
    assert [text_of[i] for i in ids] == [f"clip {v[5:]} caption 0" for v in MIECH_TEST]


def test_activitynet_finds_videos_named_with_or_without_v(tmp_path: Path) -> None:
    """The ActivityNet download and CE name files v_<YouTube id>, CLIP4Clip <YouTube id>."""
    entry = {"duration": 9.0, "timestamps": [[0.0, 9.0]], "sentences": ["A dog runs."]}
    ids = ["v_aaaaaaaaaaa", "v_bbbbbbbbbbb", "v_v_ccccccccc", "v_ddddddddddd"]
    (tmp_path / "train.json").write_text(json.dumps(dict.fromkeys(ids[:3], entry)))
    (tmp_path / "val_1.json").write_text(json.dumps(dict.fromkeys(ids[3:], entry)))
    folder = tmp_path / "videos" / "part1"
    folder.mkdir(parents=True)
    for name in ("v_aaaaaaaaaaa.mp4", "aaaaaaaaaaa.mp4", "bbbbbbbbbbb.webm", "v_ccccccccc.mkv"):
        (folder / name).touch()
    videos, _ = activitynet.read(tmp_path, "val_1")
    assert [v["path"] for v in videos] == [
        str(folder / "v_aaaaaaaaaaa.mp4"), str(folder / "bbbbbbbbbbb.webm"),
        str(folder / "v_ccccccccc.mkv"), str(tmp_path / "videos" / "v_ddddddddddd.mp4"),
    ]  # fmt: skip
