import numpy as np
import pyarrow.parquet as pq
import pytest

from supportset.features.store import (
    ShardWriter,
    read_metadata,
    read_sequences,
    text_schema,
    write_rejects,
    write_visual_shard,
)


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
