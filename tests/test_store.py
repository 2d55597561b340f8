import numpy as np
import pyarrow.parquet as pq
import pytest

from supportset.features.store import (
    read_metadata,
    read_sequences,
    write_rejects,
    write_text_shard,
    write_visual_shard,
)


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_visual_shard_round_trip(tmp_path, dtype):
    rng = np.random.default_rng(0)
    features = [rng.normal(size=(n, 6)).astype(np.float32) for n in (3, 1, 5)]
    times = [np.arange(len(f), dtype=np.float64) for f in features]
    path = tmp_path / "00000.parquet"
    write_visual_shard(path, ["a", "b", "c"], times, features, 6, dtype, {"fps": 1.0})
    loaded = read_sequences([path], "video_id", "features")
    assert list(loaded) == ["a", "b", "c"]
    tolerance = 1e-3 if dtype == "float16" else 0
    for key, original in zip("abc", features, strict=True):
        np.testing.assert_allclose(loaded[key], original, atol=tolerance * 4, rtol=tolerance)
    assert read_metadata(path) == {"fps": 1.0}
    schema = pq.read_schema(path)
    assert schema.field("features").type.value_type.list_size == 6
    assert not list(tmp_path.glob(".*tmp"))


def test_empty_visual_shard_is_valid(tmp_path):
    path = tmp_path / "empty.parquet"
    write_visual_shard(path, [], [], [], 4, "float16", {})
    assert read_sequences([path], "video_id", "features") == {}


def test_text_shard_keeps_token_ids(tmp_path):
    path = tmp_path / "t.parquet"
    states = [np.ones((2, 3), np.float32), np.zeros((4, 3), np.float32)]
    ids = [np.array([5, 1]), np.array([7, 8, 9, 1])]
    write_text_shard(path, ["c0", "c1"], ["v0", "v0"], ids, states, 3, "float32", {"model": "m"})
    table = pq.read_table(path)
    assert table.column("token_ids").to_pylist() == [[5, 1], [7, 8, 9, 1]]
    assert read_sequences([path], "caption_id", "embeddings")["c1"].shape == (4, 3)


def test_rejects_table(tmp_path):
    path = tmp_path / "r.parquet"
    write_rejects(path, [("v1", "no such file")])
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
