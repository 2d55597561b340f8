import multiprocessing
import pickle

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from supportset.features.store import (
    ShardIndex,
    ShardSequences,
    ShardWriter,
    read_metadata,
    read_sequences,
    text_schema,
    utf8_bytes,
    visual_schema,
    write_rejects,
    write_visual_shard,
)
from supportset.integrity import CheckedHDF5


@pytest.mark.parametrize("suffix", [".parquet", ".h5"])
@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_visual_shard_round_trip(tmp_path, dtype, suffix):
    rng = np.random.default_rng(0)
    features = [rng.normal(size=(n, 6)).astype(np.float32) for n in (3, 1, 5)]
    times = [np.arange(len(f), dtype=np.float64) for f in features]
    path = tmp_path / f"00000{suffix}"
    write_visual_shard(path, ["a", "b", "c"], times, features, 6, dtype, {"fps": 1.0})
    loaded = read_sequences([path], "video_id", "features")
    assert list(loaded) == ["a", "b", "c"]
    tolerance = 1e-3 if dtype == "float16" else 0
    for key, original in zip("abc", features, strict=True):
        np.testing.assert_allclose(loaded[key], original, atol=tolerance * 4, rtol=tolerance)
    assert read_metadata(path) == {"fps": 1.0}
    assert not list(tmp_path.glob(".*tmp"))


def test_parquet_schema_is_the_data_contract(tmp_path):
    path = tmp_path / "s.parquet"
    write_visual_shard(path, ["a"], [np.zeros(2)], [np.ones((2, 6), np.float32)], 6, "float16", {})
    schema = pq.read_schema(path)
    assert schema.names == ["video_id", "timestamps", "features"]
    assert str(schema.field("timestamps").type) == "list<element: float>"
    assert schema.field("features").type.value_type.list_size == 6
    assert str(schema.field("features").type.value_type.value_type) == "halffloat"


def test_parquet_vectors_are_stored_for_fast_random_reads(tmp_path):
    path = tmp_path / "s.parquet"
    features = [np.full((2, 6), i, np.float32) for i in range(40)]
    write_visual_shard(
        path, [f"v{i}" for i in range(40)], [np.zeros(2)] * 40, features, 6, "float16", {}
    )
    metadata = pq.ParquetFile(path).metadata
    assert [metadata.row_group(g).num_rows for g in range(metadata.num_row_groups)] == [16, 16, 8]
    encodings = {
        metadata.row_group(0).column(c).path_in_schema: metadata.row_group(0).column(c).encodings
        for c in range(3)
    }
    assert "RLE_DICTIONARY" in encodings["video_id"]
    assert "RLE_DICTIONARY" not in encodings["features.list.element.list.element"]


@pytest.mark.parametrize("suffix", [".parquet", ".h5"])
def test_empty_shard_is_valid(tmp_path, suffix):
    path = tmp_path / f"empty{suffix}"
    write_visual_shard(path, [], [], [], 4, "float16", {})
    assert read_sequences([path], "video_id", "features") == {}


@pytest.mark.parametrize("suffix", [".parquet", ".h5"])
def test_text_shard_keeps_token_ids_and_lengths(tmp_path, suffix):
    path = tmp_path / f"t{suffix}"
    with ShardWriter(path, text_schema(3, "float32"), {"model": "m"}) as writer:
        writer.write(("c0", "v0"), (np.array([5, 1]), np.ones((2, 3), np.float32)), (2,))
        writer.write(("c1", "v0"), (np.array([7, 8, 1]), np.zeros((3, 3), np.float32)), (40,))
    states = read_sequences([path], "caption_id", "embeddings")
    assert list(states) == ["c0", "c1"] and states["c1"].shape == (3, 3)
    assert read_metadata(path) == {"model": "m"}
    if suffix == ".parquet":
        table = pq.read_table(path)
        assert table.column("token_ids").to_pylist() == [[5, 1], [7, 8, 1]]
        assert table.column("n_tokens").to_pylist() == [2, 40]
        assert table.column("video_id").to_pylist() == ["v0", "v0"]


def test_mismatched_lengths_are_refused(tmp_path):
    with (
        pytest.raises(ValueError, match="c0: embeddings has shape"),
        ShardWriter(tmp_path / "t.parquet", text_schema(3, "float32"), {}) as writer,
    ):
        writer.write(("c0", "v0"), (np.array([5, 1]), np.ones((3, 3), np.float32)), (2,))
    assert not (tmp_path / "t.parquet").exists()


def test_rejects_table(tmp_path):
    path = tmp_path / "r.parquet"
    write_rejects(path, "video_id", [("v1", "no such file")])
    assert pq.read_table(path).to_pylist() == [{"video_id": "v1", "reason": "no such file"}]


def test_values_beyond_float16_are_refused_naming_the_video(tmp_path):
    huge = np.full((2, 4), 1e6, np.float32)
    with pytest.raises(ValueError, match=r"v7: features reach 1e\+06, beyond float16"):
        write_visual_shard(tmp_path / "s.parquet", ["v7"], [np.zeros(2)], [huge], 4, "float16", {})
    assert not (tmp_path / "s.parquet").exists()
    write_visual_shard(tmp_path / "s.parquet", ["v7"], [np.zeros(2)], [huge], 4, "float32", {})
    with pytest.raises(ValueError, match="NaN or inf"):
        write_visual_shard(
            tmp_path / "n.h5", ["v8"], [np.zeros(1)], [np.full((1, 4), np.nan)], 4, "float32", {}
        )


def write_many(path, count: int, rows_per_group: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A visual shard of `count` videos of 1-6 steps; returns what was written."""
    rng = np.random.default_rng(seed)
    written = {
        f"{path.stem}-{i}": rng.normal(size=(rng.integers(1, 7), 8)).astype(np.float32)
        for i in range(count)
    }
    with ShardWriter(path, visual_schema(8, "float32"), {}, rows_per_group) as writer:
        for video_id, features in written.items():
            writer.write((video_id,), (np.zeros(len(features), np.float32), features))
    return written


@pytest.mark.parametrize("suffix", [".parquet", ".h5"])
def test_rows_are_read_on_demand_with_a_bounded_cache(tmp_path, suffix):
    written = {
        **write_many(tmp_path / f"a{suffix}", 50, rows_per_group=8),
        **write_many(tmp_path / f"b{suffix}", 30, rows_per_group=8, seed=1),
    }
    one_group = 8 * 6 * 8 * 4  # rows x most steps x dim x bytes
    store = ShardSequences(
        [tmp_path / f"a{suffix}", tmp_path / f"b{suffix}"], "video_id", "features",
        cache_bytes=one_group * 2,
    )  # fmt: skip
    assert len(store) == 80 and "b-29" in store and "c-0" not in store
    order = np.random.default_rng(0).permutation(list(written))
    for video_id in [*order, *order[:10]]:
        np.testing.assert_array_equal(store[video_id], written[video_id])
        assert store._cached_bytes <= one_group * 2
    store[order[0]][:] = 7  # a copy: the cached row is untouched
    np.testing.assert_array_equal(store[order[0]], written[order[0]])


def test_an_id_in_two_shards_is_an_error_naming_both(tmp_path):
    write_many(tmp_path / "b.parquet", 3, 2)
    (tmp_path / "b.parquet").rename(tmp_path / "first.parquet")
    write_many(tmp_path / "b.parquet", 1, 2)
    paths = [tmp_path / "first.parquet", tmp_path / "b.parquet"]
    with pytest.raises(ValueError, match=r"video_id 'b-0' is in both .*first.parquet and .*"):
        ShardSequences(paths, "video_id", "features")


def awkward_ids(count: int, seed: int) -> list[str]:
    """Ids of mixed lengths and scripts: prefixes of each other, multi-byte UTF-8, digits
    that sort differently as text and as numbers."""
    rng = np.random.default_rng(seed)
    stems = ["v", "v_1", "vidéo", "视频", "a" * 40, "Z", "v_10", "v_9"]
    return [f"{stems[i % len(stems)]}-{seed}-{int(rng.integers(1e6))}-{i}" for i in range(count)]


@pytest.mark.parametrize("suffix", [".parquet", ".h5"])
def test_the_index_finds_every_id_as_a_dict_does(tmp_path, suffix):
    """Against a brute-force dict, at a thousand ids over four shards of both formats."""
    located, paths = {}, []
    for shard in range(4):
        ids = awkward_ids(250 + shard, seed=shard)
        paths.append(tmp_path / f"{shard}{suffix}")
        with ShardWriter(paths[-1], text_schema(2, "float32"), {}, rows_per_group=16) as writer:
            for row, caption_id in enumerate(ids):
                writer.write((caption_id, "v"), (np.ones(1, np.int32), np.ones((1, 2))), (1,))
                located[caption_id] = (shard, row)
    index = ShardIndex(paths, "caption_id")
    assert len(index) == len(located) and list(index) == list(located)  # shard order
    assert all(index.locate(caption_id) == where for caption_id, where in located.items())
    for absent in ["", "v", "v-0", "x" * 200, "视频", next(iter(located)) + " ", 3, None]:
        assert absent not in index
        with pytest.raises(KeyError):
            index.locate(absent)
    probes = [*located, "", "v", "x" * 200, "视频", next(iter(located)) + " "]
    assert index.contains(probes).tolist() == [probe in located for probe in probes]
    assert index.contains([]).tolist() == []
    store = ShardSequences(paths, "caption_id", "token_ids", np.int64, index=index)
    assert store.index is index and len(store) == len(located)
    with pytest.raises(ValueError, match="same shards"):
        ShardSequences(paths[:2], "caption_id", "token_ids", index=index)


def test_string_columns_become_the_same_bytes_as_python_encodes():
    column = pa.chunked_array([["b", "", "ä視"], ["a" * 33, "y"]])
    for array in (column, pa.chunked_array([column.combine_chunks().slice(1, 3)])):
        expected = [value.encode() for value in array.to_pylist()]
        assert utf8_bytes(array).tolist() == expected
    dictionary = pa.chunked_array([pa.array(["q", "r", "q"]).dictionary_encode()])
    assert utf8_bytes(dictionary).tolist() == [b"q", b"r", b"q"]


def _read_in_child(store, video_id, queue):
    queue.put(store[video_id])


@pytest.mark.parametrize("suffix", [".parquet", ".h5"])
def test_forked_and_pickled_copies_open_their_own_files(tmp_path, suffix):
    written = write_many(tmp_path / f"s{suffix}", 10, 4)
    store = ShardSequences([tmp_path / f"s{suffix}"], "video_id", "features")
    np.testing.assert_array_equal(store["s-0"], written["s-0"])  # opens the file here
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_read_in_child, args=(store, "s-9", queue))
    child.start()
    np.testing.assert_array_equal(queue.get(timeout=30), written["s-9"])
    child.join(timeout=30)
    assert child.exitcode == 0 and store._open
    copy = pickle.loads(pickle.dumps(store))
    assert not copy._open and not copy._cache
    np.testing.assert_array_equal(copy["s-5"], written["s-5"])


@pytest.mark.parametrize("suffix", [".parquet", ".h5"])
def test_ids_of_any_length_and_script_round_trip(tmp_path, suffix):
    ids = ["a", "vidéo-ß-東京", "x" * 300, "v 7"]
    path = tmp_path / f"s{suffix}"
    write_visual_shard(path, ids, [np.zeros(1)] * 4, [np.ones((1, 4), np.float32)] * 4, 4,
                       "float16", {})  # fmt: skip
    assert list(read_sequences([path], "video_id", "features")) == ids


def test_hdf5_datasets_are_checksummed_chunks_of_16_steps(tmp_path):
    path = tmp_path / "s.h5"
    write_visual_shard(path, ["a"], [np.zeros(3)], [np.ones((3, 6), np.float32)], 6, "float16", {})
    with h5py.File(path, "r") as handle:
        assert all(handle[name].fletcher32 for name in handle)
        assert handle["features"].chunks == (16, 6)
        assert handle["video_id"].dtype.kind == "S"  # fixed length: not in the global heap


@pytest.mark.parametrize("suffix", [".parquet", ".h5"])
def test_a_failure_while_finishing_publishes_no_shard(tmp_path, suffix):
    path = tmp_path / f"s{suffix}"
    with (
        pytest.raises(UnicodeEncodeError),
        ShardWriter(path, visual_schema(4, "float16"), {}) as writer,
    ):
        writer.write(("\ud800",), (np.zeros(1), np.ones((1, 4), np.float32)))  # not UTF-8
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("suffix", [".parquet", ".h5"])
def test_steps_of_a_row_are_its_slice_and_hdf5_reads_only_them(tmp_path, suffix, monkeypatch):
    written = write_many(tmp_path / f"s{suffix}", 20, rows_per_group=4)
    store = ShardSequences([tmp_path / f"s{suffix}"], "video_id", "features")
    spans = [(0, 1), (1, 3), (2, 100), (5, 5), (0, 0), (7, 9)]
    for video_id, features in written.items():
        for start, stop in spans:
            np.testing.assert_array_equal(store.steps(video_id, start, stop), features[start:stop])
    if suffix == ".h5":
        reads = []
        original = CheckedHDF5.read
        monkeypatch.setattr(
            CheckedHDF5,
            "read",
            lambda self, name, start=None, stop=None: (
                reads.append((name, start, stop)) or original(self, name, start, stop)
            ),
        )
        longest = max(written, key=lambda video_id: len(written[video_id]))
        store.steps(longest, 1, 2)
        assert [stop - start for _, start, stop in reads] == [1]


def test_a_row_group_of_long_videos_ends_at_its_byte_limit(tmp_path):
    """A 6.5-minute video at 2560-d float16 (2 MB) has a row group of its own; short
    videos still share groups of 16."""
    long_video = np.zeros((390, 2560), np.float32)
    with ShardWriter(tmp_path / "s.parquet", visual_schema(2560, "float16"), {}) as writer:
        for index in range(3):
            writer.write((f"long{index}",), (np.zeros(390, np.float32), long_video))
        for index in range(20):
            writer.write((f"short{index}",), (np.zeros(2, np.float32), long_video[:2]))
    metadata = pq.ParquetFile(tmp_path / "s.parquet").metadata
    sizes = [metadata.row_group(group).num_rows for group in range(metadata.num_row_groups)]
    assert sizes == [1, 1, 1, 16, 4]
