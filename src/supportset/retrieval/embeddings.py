"""Embedding files of the evaluation stage: writing, reading and validating them.

Two Parquet files describe one split:

- ``{split}_videos.parquet``: ``video_id`` (string), ``embedding`` (list<float32>, length D);
- ``{split}_captions.parquet``: ``caption_id`` (string), ``video_id`` (string), ``embedding``.

Every reader and writer validates what it handles and raises ``ValueError`` naming the
offending ids: duplicate ids, NaN/inf or all-zero vectors, ragged or empty embeddings.
``check_pair`` adds the checks that need both files (same D, every caption's video present,
every video captioned). Writes are atomic: a temporary file in the destination folder is
moved onto the destination with ``os.replace``. Files carry checksums (``supportset.integrity``),
verified on read; files without them (from other programs) are read too, and any file
that cannot be read is an error naming it.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from supportset.integrity import CheckedParquet, write_parquet

EMBEDDING_COLUMN = "embedding"
VIDEO_COLUMNS = ("video_id", EMBEDDING_COLUMN)
CAPTION_COLUMNS = ("caption_id", "video_id", EMBEDDING_COLUMN)
LIST_TYPE_CHECKS = (pa.types.is_list, pa.types.is_large_list, pa.types.is_fixed_size_list)
SHOWN_IDS = 5


def format_ids(ids: Sequence[object]) -> str:
    """Render up to ``SHOWN_IDS`` ids for an error message, with a count of the rest."""
    shown = ", ".join(repr(item) for item in ids[:SHOWN_IDS])
    hidden = len(ids) - SHOWN_IDS
    return f"{shown} and {hidden} more" if hidden > 0 else shown


def _check_ids(ids: Sequence[object], column: str, where: str) -> list[str]:
    """Return ``ids`` as a list after checking they are non-empty, strings and unique."""
    id_list = list(ids)
    if not id_list:
        raise ValueError(f"{where}: no rows (empty {column} column)")
    not_strings = [item for item in id_list if not isinstance(item, str) or not item]
    if not_strings:
        raise ValueError(
            f"{where}: {column} must be non-empty strings, got {format_ids(not_strings)}"
        )
    duplicates = [item for item, count in Counter(id_list).items() if count > 1]
    if duplicates:
        raise ValueError(f"{where}: duplicate {column} {format_ids(duplicates)}")
    return id_list


def _check_matrix(ids: Sequence[str], emb: np.ndarray, where: str) -> np.ndarray:
    """Return ``emb`` (N, D) as float32 after checking shape, finiteness and non-zero rows."""
    matrix = np.asarray(emb, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[1] == 0:
        raise ValueError(
            f"{where}: embeddings must have shape (N, D) with D > 0, got {matrix.shape}"
        )
    if matrix.shape[0] != len(ids):
        raise ValueError(f"{where}: {matrix.shape[0]} embeddings for {len(ids)} ids")
    non_finite = ~np.isfinite(matrix).all(axis=1)
    if non_finite.any():
        bad = [ids[i] for i in np.flatnonzero(non_finite)]
        raise ValueError(f"{where}: NaN or inf in the embeddings of {format_ids(bad)}")
    all_zero = ~matrix.any(axis=1)
    if all_zero.any():
        bad = [ids[i] for i in np.flatnonzero(all_zero)]
        raise ValueError(f"{where}: all-zero embeddings for {format_ids(bad)}")
    return matrix


def _check_caption_video_ids(
    caption_ids: Sequence[str], video_ids: Sequence[object], where: str
) -> list[str]:
    """Return the captions' ``video_id`` column as a list after checking its length and type."""
    video_id_list = list(video_ids)
    if len(video_id_list) != len(caption_ids):
        raise ValueError(f"{where}: {len(video_id_list)} video ids for {len(caption_ids)} captions")
    bad = [
        caption
        for caption, video in zip(caption_ids, video_id_list, strict=True)
        if not isinstance(video, str) or not video
    ]
    if bad:
        raise ValueError(f"{where}: captions {format_ids(bad)} have no valid video_id")
    return video_id_list


def _embedding_array(matrix: np.ndarray) -> pa.ListArray:
    """Arrow ``list<float32>`` array holding the rows of ``matrix`` (N, D)."""
    n_rows, dim = matrix.shape
    offsets = pa.array(np.arange(0, n_rows * dim + 1, dim, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(matrix.reshape(-1), type=pa.float32()))


def write_video_embeddings(
    path: str | os.PathLike[str], video_ids: Sequence[str], emb: np.ndarray
) -> None:
    """Validate and atomically write a videos file.

    ``video_ids``: N unique strings; ``emb``: (N, D) float32, finite, no all-zero row.
    """
    where = f"video embeddings for {path}"
    ids = _check_ids(video_ids, "video_id", where)
    matrix = _check_matrix(ids, emb, where)
    columns = {
        "video_id": pa.array(ids, type=pa.string()),
        EMBEDDING_COLUMN: _embedding_array(matrix),
    }
    write_parquet(pa.table(columns), path)


def write_caption_embeddings(
    path: str | os.PathLike[str],
    caption_ids: Sequence[str],
    video_ids: Sequence[str],
    emb: np.ndarray,
) -> None:
    """Validate and atomically write a captions file.

    ``caption_ids``: N unique strings; ``video_ids``: N strings, the video of each caption;
    ``emb``: (N, D) float32, finite, no all-zero row.
    """
    where = f"caption embeddings for {path}"
    ids = _check_ids(caption_ids, "caption_id", where)
    videos = _check_caption_video_ids(ids, video_ids, where)
    matrix = _check_matrix(ids, emb, where)
    columns = {
        "caption_id": pa.array(ids, type=pa.string()),
        "video_id": pa.array(videos, type=pa.string()),
        EMBEDDING_COLUMN: _embedding_array(matrix),
    }
    write_parquet(pa.table(columns), path)


def _read_columns(path: str | os.PathLike[str], columns: Sequence[str]) -> pa.Table:
    """Read ``columns`` of a Parquet file, naming any that are missing."""
    file = CheckedParquet(path, checksum_required=False)
    try:
        available = file.schema.names
        missing = [name for name in columns if name not in available]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}, found {available}")
        return file.read(columns)
    finally:
        file.close()


def _read_matrix(table: pa.Table, ids: Sequence[str], where: str) -> np.ndarray:
    """The ``embedding`` column of ``table`` as a (N, D) float32 array, one row per id."""
    column = table.column(EMBEDDING_COLUMN).combine_chunks()
    if not any(is_list(column.type) for is_list in LIST_TYPE_CHECKS):
        raise ValueError(f"{where}: embedding column must be a list of floats, got {column.type}")
    nulls = column.is_null().to_numpy(zero_copy_only=False)
    if nulls.any():
        bad = [ids[i] for i in np.flatnonzero(nulls)]
        raise ValueError(f"{where}: missing embeddings for {format_ids(bad)}")
    lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
    ragged = lengths != lengths[0]
    if ragged.any():
        bad = [ids[i] for i in np.flatnonzero(ragged)]
        raise ValueError(
            f"{where}: embeddings of {format_ids(bad)} are not of the first row's length "
            f"{lengths[0]}"
        )
    values = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
    return _check_matrix(ids, values.reshape(len(ids), int(lengths[0])), where)


def read_video_embeddings(path: str | os.PathLike[str]) -> tuple[list[str], np.ndarray]:
    """Read and validate a videos file: (video ids, (N, D) float32 embeddings)."""
    where = str(path)
    table = _read_columns(path, VIDEO_COLUMNS)
    ids = _check_ids(table.column("video_id").to_pylist(), "video_id", where)
    return ids, _read_matrix(table, ids, where)


def read_caption_embeddings(
    path: str | os.PathLike[str],
) -> tuple[list[str], list[str], np.ndarray]:
    """Read and validate a captions file: (caption ids, their video ids, (N, D) float32)."""
    where = str(path)
    table = _read_columns(path, CAPTION_COLUMNS)
    ids = _check_ids(table.column("caption_id").to_pylist(), "caption_id", where)
    videos = _check_caption_video_ids(ids, table.column("video_id").to_pylist(), where)
    return ids, videos, _read_matrix(table, ids, where)


def check_pair(
    video_ids: Sequence[str],
    video_emb: np.ndarray,
    caption_ids: Sequence[str],
    caption_video_ids: Sequence[str],
    caption_emb: np.ndarray,
) -> None:
    """Check that a videos set (N_v, D) and a captions set (N_c, D) can be evaluated together.

    Runs the single-file checks on both, then requires the same D, every caption's video in
    the videos set and at least one caption per video (video-to-text needs a positive).
    """
    videos = _check_ids(video_ids, "video_id", "videos")
    video_matrix = _check_matrix(videos, video_emb, "videos")
    captions = _check_ids(caption_ids, "caption_id", "captions")
    caption_videos = _check_caption_video_ids(captions, caption_video_ids, "captions")
    caption_matrix = _check_matrix(captions, caption_emb, "captions")
    if video_matrix.shape[1] != caption_matrix.shape[1]:
        raise ValueError(
            f"embedding dimensions differ: videos D={video_matrix.shape[1]}, "
            f"captions D={caption_matrix.shape[1]}"
        )
    known = set(videos)
    orphans = [
        (caption, video)
        for caption, video in zip(captions, caption_videos, strict=True)
        if video not in known
    ]
    if orphans:
        orphan_captions = [caption for caption, _ in orphans]
        missing_videos = sorted({video for _, video in orphans})
        raise ValueError(
            f"captions {format_ids(orphan_captions)} refer to videos not in the videos set: "
            f"{format_ids(missing_videos)}"
        )
    captioned = set(caption_videos)
    uncaptioned = [video for video in videos if video not in captioned]
    if uncaptioned:
        raise ValueError(f"videos without any caption: {format_ids(uncaptioned)}")
