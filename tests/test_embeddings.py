"""Embedding Parquet files: round trips, schema, validation and atomic writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from supportset.io import atomic_path
from supportset.retrieval.embeddings import (
    check_pair,
    read_caption_embeddings,
    read_video_embeddings,
    write_caption_embeddings,
    write_video_embeddings,
)

DIM = 8


def random_embeddings(n_rows: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n_rows, DIM)).astype(np.float32)


def test_video_embeddings_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "test_videos.parquet"
    emb = random_embeddings(5)
    write_video_embeddings(path, ["a", "b", "c", "d", "e"], emb)
    ids, read_back = read_video_embeddings(path)
    assert ids == ["a", "b", "c", "d", "e"]
    assert read_back.dtype == np.float32
    np.testing.assert_array_equal(read_back, emb)


def test_caption_embeddings_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "test_captions.parquet"
    emb = random_embeddings(3)
    write_caption_embeddings(path, ["c0", "c1", "c2"], ["a", "a", "b"], emb)
    caption_ids, video_ids, read_back = read_caption_embeddings(path)
    assert (caption_ids, video_ids) == (["c0", "c1", "c2"], ["a", "a", "b"])
    np.testing.assert_array_equal(read_back, emb)


def test_files_follow_the_data_contract(tmp_path: Path) -> None:
    write_video_embeddings(tmp_path / "v.parquet", ["a"], random_embeddings(1))
    write_caption_embeddings(tmp_path / "c.parquet", ["c0"], ["a"], random_embeddings(1))
    videos = pq.read_schema(tmp_path / "v.parquet")
    captions = pq.read_schema(tmp_path / "c.parquet")
    assert videos.names == ["video_id", "embedding"]
    assert captions.names == ["caption_id", "video_id", "embedding"]
    assert videos.field("video_id").type == pa.string()
    assert videos.field("embedding").type == pa.list_(pa.float32())
    assert captions.field("embedding").type == pa.list_(pa.float32())


def test_fixed_size_list_embeddings_are_readable(tmp_path: Path) -> None:
    path = tmp_path / "v.parquet"
    emb = random_embeddings(2)
    column = pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), DIM)
    pq.write_table(pa.table({"video_id": ["a", "b"], "embedding": column}), path)
    np.testing.assert_array_equal(read_video_embeddings(path)[1], emb)


def test_writes_leave_no_temporary_files(tmp_path: Path) -> None:
    write_video_embeddings(tmp_path / "out" / "v.parquet", ["a"], random_embeddings(1))
    assert [item.name for item in (tmp_path / "out").iterdir()] == ["v.parquet"]


def test_failed_atomic_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "v.parquet"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(path) as temporary:
        temporary.write_text("half written")
        raise RuntimeError("interrupted")
    assert path.read_text() == "old"
    assert [item.name for item in tmp_path.iterdir()] == ["v.parquet"]


def with_row(emb: np.ndarray, row: int, values: float | list[float]) -> np.ndarray:
    changed = emb.copy()
    changed[row] = values
    return changed


@pytest.mark.parametrize(
    ("ids", "emb", "message"),
    [
        (["a", "b", "a"], random_embeddings(3), "duplicate video_id 'a'"),
        (["a", "b", "c"], with_row(random_embeddings(3), 1, np.nan), "NaN or inf .*'b'"),
        (["a", "b", "c"], with_row(random_embeddings(3), 2, np.inf), "NaN or inf .*'c'"),
        (["a", "b", "c"], with_row(random_embeddings(3), 0, 0.0), "all-zero .*'a'"),
        ([], np.zeros((0, DIM), dtype=np.float32), "no rows"),
        (["a", "b"], random_embeddings(3), "3 embeddings for 2 ids"),
        (["a", ""], random_embeddings(2), "non-empty strings"),
        (["a"], np.ones(DIM, dtype=np.float32), "shape"),
    ],
)
def test_bad_video_embeddings_are_rejected_on_write(
    tmp_path: Path, ids: list[str], emb: np.ndarray, message: str
) -> None:
    path = tmp_path / "v.parquet"
    with pytest.raises(ValueError, match=message):
        write_video_embeddings(path, ids, emb)
    assert not path.exists()


def test_bad_caption_embeddings_are_rejected_on_write(tmp_path: Path) -> None:
    path = tmp_path / "c.parquet"
    with pytest.raises(ValueError, match="duplicate caption_id 'c1'"):
        write_caption_embeddings(path, ["c1", "c1"], ["a", "b"], random_embeddings(2))
    with pytest.raises(ValueError, match="1 video ids for 2 captions"):
        write_caption_embeddings(path, ["c1", "c2"], ["a"], random_embeddings(2))
    with pytest.raises(ValueError, match="captions 'c2' have no valid video_id"):
        write_caption_embeddings(path, ["c1", "c2"], ["a", None], random_embeddings(2))
    with pytest.raises(ValueError, match=r"all-zero .*'c2'"):
        write_caption_embeddings(
            path, ["c1", "c2"], ["a", "a"], with_row(random_embeddings(2), 1, 0)
        )


def write_raw_videos(path: Path, ids: list, embeddings: list) -> Path:
    """Write a videos file directly with pyarrow, bypassing validation."""
    column = pa.array(embeddings, type=pa.list_(pa.float32()))
    pq.write_table(
        pa.table({"video_id": pa.array(ids, type=pa.string()), "embedding": column}), path
    )
    return path


@pytest.mark.parametrize(
    ("ids", "embeddings", "message"),
    [
        (["a", "b", "b"], [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], "duplicate video_id 'b'"),
        (["a", "b"], [[1.0, 0.0], [float("nan"), 1.0]], "NaN or inf .*'b'"),
        (["a", "b"], [[1.0, 0.0], [1.0, None]], "NaN or inf .*'b'"),
        (["a", "b"], [[0.0, 0.0], [1.0, 1.0]], "all-zero .*'a'"),
        (["a", "b", "c"], [[1.0, 0.0], [1.0, 1.0, 1.0], [1.0]], "'b', 'c' are not of the first"),
        (["a", "b"], [[1.0, 0.0], None], "missing embeddings for 'b'"),
        (["a", None], [[1.0, 0.0], [0.0, 1.0]], "non-empty strings, got None"),
        ([], [], "no rows"),
        (["a", "b"], [[], []], "D > 0"),
    ],
)
def test_bad_video_files_are_rejected_on_read(
    tmp_path: Path, ids: list, embeddings: list, message: str
) -> None:
    path = write_raw_videos(tmp_path / "v.parquet", ids, embeddings)
    with pytest.raises(ValueError, match=message):
        read_video_embeddings(path)


def test_missing_columns_are_named(tmp_path: Path) -> None:
    path = tmp_path / "c.parquet"
    pq.write_table(pa.table({"caption_id": ["c0"], "embedding": [[1.0]]}), path)
    with pytest.raises(ValueError, match=r"missing column.*video_id"):
        read_caption_embeddings(path)


def pair(n_videos: int = 3, dim: int = DIM) -> tuple:
    video_ids = [f"v{i}" for i in range(n_videos)]
    caption_ids = [f"c{i}" for i in range(n_videos)]
    embeddings = random_embeddings(n_videos)[:, :dim]
    return video_ids, embeddings, caption_ids, list(video_ids), embeddings.copy()


def test_check_pair_accepts_a_consistent_pair() -> None:
    check_pair(*pair())


def test_check_pair_rejects_different_dimensions() -> None:
    video_ids, video_emb, caption_ids, caption_video_ids, _ = pair()
    caption_emb = random_embeddings(3)[:, :4]
    with pytest.raises(ValueError, match="videos D=8, captions D=4"):
        check_pair(video_ids, video_emb, caption_ids, caption_video_ids, caption_emb)


def test_check_pair_names_captions_of_unknown_videos() -> None:
    video_ids, video_emb, caption_ids, _, caption_emb = pair()
    with pytest.raises(ValueError, match=r"captions 'c2' refer to videos .*: 'v9'"):
        check_pair(video_ids, video_emb, caption_ids, ["v0", "v1", "v9"], caption_emb)


def test_check_pair_names_videos_without_captions() -> None:
    video_ids, video_emb, caption_ids, _, caption_emb = pair()
    with pytest.raises(ValueError, match="videos without any caption: 'v2'"):
        check_pair(video_ids, video_emb, caption_ids, ["v0", "v1", "v1"], caption_emb)


def test_check_pair_runs_the_single_file_checks() -> None:
    video_ids, video_emb, _, caption_video_ids, caption_emb = pair()
    with pytest.raises(ValueError, match="duplicate caption_id 'c0'"):
        check_pair(video_ids, video_emb, ["c0", "c0", "c2"], caption_video_ids, caption_emb)


def test_long_id_lists_are_abbreviated() -> None:
    ids = [f"v{i}" for i in range(8)]
    emb = np.zeros((8, DIM), dtype=np.float32)
    with pytest.raises(ValueError, match=r"'v4' and 3 more$"):
        write_video_embeddings("unused.parquet", ids, emb)
