"""HowTo100M at scale: the streaming JSON reader, the streamed `prepare`, and the synthetic
corpus generator (small sizes here; benchmarks/scale_prepare.py runs the large ones)."""

from __future__ import annotations

import csv
import gc
import json
import random
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from supportset.data.adapters import howto100m
from supportset.data.adapters.files import iter_json_object
from supportset.data.manifest import (
    CAPTIONS_SCHEMA,
    CaptionStream,
    ManifestError,
    read_captions,
    read_videos,
    write_tables,
)
from supportset.data.prepare import _write_streamed, prepare
from supportset.data.synthetic_howto100m import ID_LENGTH, write_synthetic_howto100m

# The streaming reader ---------------------------------------------------------------------


def random_value(rng: random.Random, depth: int = 0) -> Any:
    """A JSON value with numbers that chunk boundaries can cut ("1.5e-07"), non-ASCII and
    escaped strings, and nesting."""
    kind = rng.randrange(7 if depth < 3 else 4)
    if kind == 0:
        return rng.randrange(-(10**6), 10**6)
    if kind == 1:
        return rng.random() * 10 ** rng.randrange(-9, 9)
    if kind == 2:
        return "".join(rng.choice('ab é"\\\n€😀') for _ in range(rng.randrange(8)))
    if kind == 3:
        return rng.choice([True, False, None])
    if kind in (4, 5):
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {f"k{n}": random_value(rng, depth + 1) for n in range(rng.randrange(4))}


def test_reader_yields_the_members_json_loads_finds_whatever_the_chunks(tmp_path: Path) -> None:
    rng = random.Random(0)
    path = tmp_path / "object.json"
    for trial in range(60):
        text = json.dumps(
            {f"video{n}é": random_value(rng) for n in range(rng.randrange(6))},
            ensure_ascii=trial % 2 == 0,
            indent=1 if trial % 3 == 0 else None,
        )
        path.write_bytes((b"\xef\xbb\xbf" if trial % 4 == 0 else b"") + text.encode())
        for chunk_bytes in (1, 5, 64, 2**20):  # 1: the reader's floor of 4 bytes
            members = list(iter_json_object(path, chunk_bytes=chunk_bytes))
            assert members == list(json.loads(text).items()), (text, chunk_bytes)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"a": 1, "b": 2, "a": 3}', r"repeated key\(s\) a$"),
        ('{"a": {"x": 1, "x": 2}}', r"the value of key 'a': repeated key\(s\) x"),
        ('{"a": [1, 2}', r"malformed JSON: .* at character 11 \(line 1\)"),
        (
            '{"a": 1,\n "b": 12',
            r"malformed JSON: expected ',' or '}' .* at character 17 \(line 2\)",
        ),
        ('{"a": 1.}', r"expected ',' or '}' after the value of key 'a' at character 7"),
        ('{"a": 1} {}', r"extra data after the object at character 9"),
        ('["a"]', r"expected an object .* at character 0"),
        ("", r"expected an object .* at character 0"),
        ('{"a": "' + "x" * 99 + "}", r"the value of key 'a', at character 6, is longer than 50"),
    ],
)
def test_reader_errors_name_the_file_key_and_place(tmp_path: Path, text: str, message: str):
    path = tmp_path / "bad.json"
    path.write_text(text)
    for chunk_bytes in (4, 2**20):
        with pytest.raises(ManifestError, match=message) as error:
            list(iter_json_object(path, chunk_bytes=chunk_bytes, value_chars=50))
        assert str(error.value).startswith(str(path))


def test_reader_keeps_no_window_alive_after_a_value_cut_by_a_chunk(tmp_path: Path) -> None:
    """A value cut by a chunk's end fails to decode first; nothing may keep that window (a
    failure's traceback would, in a cycle only the garbage collector frees)."""
    path = tmp_path / "long.json"
    path.write_text(json.dumps({f"v{n}": list(range(n % 50)) for n in range(2000)}))
    collecting = gc.isenabled()
    gc.disable()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        assert sum(1 for _ in iter_json_object(path, chunk_bytes=4096)) == 2000
        assert tracemalloc.get_traced_memory()[0] - before < 4 * 4096
    finally:
        tracemalloc.stop()
        if collecting:
            gc.enable()


def test_reader_names_the_byte_offset_of_bytes_that_are_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.json"
    path.write_bytes(b'\xef\xbb\xbf{"caf\xe9": 1}')  # a BOM, then é in Latin-1 at byte 8
    for chunk_bytes in (4, 2**20):
        with pytest.raises(ManifestError, match=r"byte b'\\xe9' at byte offset 8"):
            list(iter_json_object(path, chunk_bytes=chunk_bytes))


# The streamed prepare ---------------------------------------------------------------------


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A synthetic HowTo100M of 50 videos whose caption.json is reordered (videos backwards,
    segments shuffled), holds a blank and an integer-timed segment and an unlisted video."""
    root = tmp_path / "howto100m"
    write_synthetic_howto100m(root, 50, seed=3, segments_per_video=20)
    captions = json.loads((root / "caption.json").read_text())
    rng = np.random.default_rng(0)
    for entry in captions.values():
        order = rng.permutation(len(entry["start"])).tolist()
        for key in ("start", "end", "text"):
            entry[key] = [entry[key][i] for i in order]
    first = next(iter(captions.values()))
    first["start"].append(3)
    first["end"].append(4)
    first["text"].append(" \t")
    captions["unlistedxyz"] = {"start": [0.0], "end": [1.0], "text": ["stray"]}
    (root / "caption.json").write_text(json.dumps(dict(reversed(captions.items()))))
    return root


def reference_captions(root: Path, split_of: dict[str, str]) -> list[dict]:
    """The adapter's rules applied to caption.json loaded whole: per video of `split_of`, in
    file order, segments sorted by (start, end, text), numbered, blank ones left out."""
    rows = []
    for video_id, entry in json.loads((root / "caption.json").read_text()).items():
        if video_id not in split_of:
            continue
        segments = sorted(zip(entry["start"], entry["end"], entry["text"], strict=True))
        rows += [
            {"caption_id": f"{video_id}_{number:05d}", "video_id": video_id,
             "text": text.strip(), "split": split_of[video_id],
             "start": float(start), "end": float(end)}
            for number, (start, end, text) in enumerate(segments)
            if text.strip()
        ]  # fmt: skip
    return rows


def listed_ids(root: Path) -> list[str]:
    with (root / "HowTo100M_v1.csv").open() as handle:
        return [row["video_id"] for row in csv.DictReader(handle)]


def test_prepare_streams_the_rows_the_rules_give(corpus: Path, tmp_path: Path, caplog) -> None:
    out = tmp_path / "manifest"
    assert prepare("howto100m", corpus, out) == (50, len(read_captions(out / "captions.parquet")))
    videos = read_videos(out / "videos.parquet")
    assert [video["video_id"] for video in videos] == listed_ids(corpus)  # the CSV's order
    split_of = {video["video_id"]: video["split"] for video in videos}
    assert read_captions(out / "captions.parquet") == reference_captions(corpus, split_of)
    assert "1 captioned videos are not in HowTo100M_v1.csv" in caplog.text
    rows = out / "rows"  # the same rows written as the other adapters' are: the same schema
    write_tables(videos, read_captions(out / "captions.parquet"), rows)
    for name in ("videos.parquet", "captions.parquet"):
        assert pq.read_schema(out / name).equals(pq.read_schema(rows / name), check_metadata=True)
        assert pq.ParquetFile(out / name).schema.equals(pq.ParquetFile(rows / name).schema)


def test_missing_videos_leave_with_their_captions(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "manifest"
    gone = listed_ids(corpus)[10:12]
    for video_id in gone:
        next((corpus / "videos").rglob(f"{video_id}.mp4")).unlink()
    with pytest.raises(ManifestError, match="2 of 50 listed videos are missing"):
        prepare("howto100m", corpus, out)
    assert not (out / "captions.parquet").exists()
    assert prepare("howto100m", corpus, out, missing_videos="skip")[0] == 48
    kept = {caption["video_id"] for caption in read_captions(out / "captions.parquet")}
    assert len(kept) == 48 and not kept & set(gone)
    missing = (out / "missing_videos.csv").read_text()
    assert all(video_id in missing for video_id in gone)


def test_an_uncaptioned_video_or_a_bad_segment_leaves_no_manifest(corpus: Path, tmp_path: Path):
    out = tmp_path / "manifest"
    captions = json.loads((corpus / "caption.json").read_text())
    bare = listed_ids(corpus)[7]
    captions[bare]["text"] = [" "] * len(captions[bare]["text"])
    (corpus / "caption.json").write_text(json.dumps(captions))
    with pytest.raises(ManifestError, match=f"1 video\\(s\\) have no caption .*: {bare}"):
        prepare("howto100m", corpus, out)
    captions[bare] = {"start": [5.0], "end": [2.0], "text": ["reversed"]}
    (corpus / "caption.json").write_text(json.dumps(captions))
    with pytest.raises(ManifestError, match=f"video '{bare}' segment 0 runs from 5.0 to 2.0 s"):
        prepare("howto100m", corpus, out)
    assert sorted(path.name for path in out.iterdir()) == ["missing_videos.csv"]


def test_batches_are_cut_between_videos_once_they_are_full(corpus: Path) -> None:
    videos, stream = howto100m.read(corpus, "caption")
    split_of = {video["video_id"]: video["split"] for video in videos}
    small = howto100m.CaptionFile(stream.path, stream.listed, batch_rows=100)
    batches = list(small.batches(split_of))
    assert all(batch.num_rows >= 100 for batch in batches[:-1]) and len(batches) > 3
    owners = [set(batch.column("video_id").to_pylist()) for batch in batches]
    assert sum(map(len, owners)) == len(set().union(*owners)) == 50  # no video in two
    assert pa.Table.from_batches(batches).equals(pa.Table.from_batches(stream.batches(split_of)))


# The synthetic corpus ---------------------------------------------------------------------


def test_the_generator_is_deterministic_and_writes_the_real_formats(tmp_path: Path) -> None:
    written = write_synthetic_howto100m(tmp_path / "a", 300, seed=1, video_files=False)
    write_synthetic_howto100m(tmp_path / "b", 300, seed=1, video_files=False)
    write_synthetic_howto100m(tmp_path / "c", 300, seed=2, video_files=False)
    for name in ("caption.json", "HowTo100M_v1.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
        assert (tmp_path / "a" / name).read_bytes() != (tmp_path / "c" / name).read_bytes()
    assert not (tmp_path / "a" / "videos").exists()
    with (tmp_path / "a" / "caption.json").open() as handle:
        captions = json.load(handle)
    assert list(captions) == listed_ids(tmp_path / "a")
    assert {len(video_id) for video_id in captions} == {ID_LENGTH}
    counts = [len(entry["start"]) for entry in captions.values()]
    assert written.segments == sum(counts) and abs(np.mean(counts) - 110) < 12  # paper: 110
    starts = np.concatenate([entry["start"] for entry in captions.values()])
    ends = np.concatenate([entry["end"] for entry in captions.values()])
    assert abs(np.mean(ends - starts) - 4.0) < 0.1  # paper: 4 s per clip
    assert all(np.all(np.diff(entry["start"]) >= 0) for entry in captions.values())
    words = [len(text.split()) for entry in captions.values() for text in entry["text"]]
    assert abs(np.mean(words) - 4.0) < 0.1 and min(words) >= 1  # paper: 4 words per caption


def test_the_generator_places_a_file_for_every_video(tmp_path: Path) -> None:
    write_synthetic_howto100m(tmp_path, 40, segments_per_video=5)
    files = {path.stem: path for path in (tmp_path / "videos").rglob("*.mp4")}
    with (tmp_path / "HowTo100M_v1.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(files) == len(rows) == 40
    assert all(files[row["video_id"]].parent.name == row["category_1"] for row in rows)
    assert all(1 <= int(row["rank"]) <= 200 for row in rows)


class _Rows(CaptionStream):
    """A stream of given caption rows, in one batch."""

    def __init__(self, rows: list[dict]) -> None:
        self.rows = rows

    def batches(self, split_of):
        yield pa.RecordBatch.from_pylist(self.rows, schema=CAPTIONS_SCHEMA)


@pytest.mark.parametrize(
    ("video_id", "split", "message"),
    [("elsewhere", "train", "unknown videos: elsewhere"), ("v0", "val", "another split")],
)
def test_a_streamed_caption_of_an_unknown_video_or_split_is_refused(
    tmp_path: Path, video_id: str, split: str, message: str
):
    videos = [{"video_id": "v0", "path": "v0.mp4", "split": "train"}]
    rows = [
        {"caption_id": "c0", "video_id": "v0", "text": "a", "split": "train"},
        {"caption_id": "c1", "video_id": video_id, "text": "b", "split": split},
    ]
    with pytest.raises(ManifestError, match=message):
        _write_streamed(videos, _Rows(rows), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_killed_writer_s_leftover_captions_go_with_the_next_prepare(tmp_path: Path):
    leftover = tmp_path / ".captions.parquet.k1ll3d.tmp"
    leftover.write_bytes(b"half a manifest")
    videos = [{"video_id": "v0", "path": "v0.mp4", "split": "train"}]
    rows = [{"caption_id": "c0", "video_id": "v0", "text": "a", "split": "train"}]
    assert _write_streamed(videos, _Rows(rows), tmp_path) == 1
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "captions.parquet",
        "videos.parquet",
    ]
