"""Per-query results of an evaluation: the ranks file, and the block-wise scores behind it.

``results/{dataset}/{experiment}/ranks_{split}.parquet`` holds one row per query of the
evaluation protocol, in both directions, so that failures can be studied without
recomputing anything:

- ``direction`` (string): ``"t2v"`` (the query is a caption) or ``"v2t"`` (a video);
- ``query_id`` (string): the caption_id (t2v) or video_id (v2t);
- ``rank`` (float64): 1-based rank of the best-ranked correct item, the very rank the
  metrics JSON summarises (same tie rule; halves with averaged ties);
- ``correct_ids`` (list<string>): the correct gallery ids (t2v: the caption's video;
  v2t: the video's captions among the queried ones);
- ``top_ids`` (list<string>): the ``TOP`` highest-scoring gallery ids (all of them when the
  gallery is smaller), score descending, ties in gallery order;
- ``top_scores`` (list<float32>): their cosine similarities, aligned with ``top_ids``.

Scores are computed as ``search`` computes them: each side is reduced to its distinct rows,
each distinct pair is multiplied once and every copy reads its scores from that product, so
identical rows get bit-identical scores. Queries are scored a block at a time (about
``max_bytes`` of float32 scores), so a 100,000 x 100,000 split runs in bounded memory. This
runs on the CPU with NumPy.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from supportset.integrity import CheckedParquet, write_parquet
from supportset.retrieval.search import (
    BLOCK_BYTES,
    caption_owners,
    captions_of_videos,
    distinct_pair,
    distinct_score_blocks,
)

TOP = 10  # gallery items kept per query in the ranks file
RANKS_SCHEMA = pa.schema(
    [
        ("direction", pa.string()),
        ("query_id", pa.string()),
        ("rank", pa.float64()),
        ("correct_ids", pa.list_(pa.string())),
        ("top_ids", pa.list_(pa.string())),
        ("top_scores", pa.list_(pa.float32())),
    ]
)


@dataclass(frozen=True)
class Direction:
    """One retrieval direction of a split: every query ranks the whole gallery.

    ``queries`` (Q, D) and ``gallery`` (N, D) embeddings with their ids; ``positives``: Q
    int64 arrays, the gallery rows of each query's correct items (at least one each).
    """

    name: str  # "t2v" (captions rank videos) or "v2t" (videos rank captions)
    query_ids: list[str]
    queries: np.ndarray
    gallery_ids: list[str]
    gallery: np.ndarray
    positives: list[np.ndarray]


def split_directions(
    video_ids: Sequence[str],
    video_emb: np.ndarray,
    caption_ids: Sequence[str],
    caption_video_ids: Sequence[str],
    caption_emb: np.ndarray,
) -> tuple[Direction, Direction]:
    """The t2v and v2t directions of a split already checked by ``embeddings.check_pair``:
    a caption's positive is its video, a video's positives are its captions."""
    owners = caption_owners(video_ids, caption_video_ids)
    captions_of_video = captions_of_videos(owners, len(video_ids))
    return (
        Direction("t2v", list(caption_ids), caption_emb, list(video_ids), video_emb,
                  list(owners[:, None])),
        Direction("v2t", list(video_ids), video_emb, list(caption_ids), caption_emb,
                  captions_of_video),
    )  # fmt: skip


def score_blocks(
    queries: np.ndarray, gallery: np.ndarray, max_bytes: int = BLOCK_BYTES
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (query indices (b,), their (b, N) float32 cosine scores) for every query once,
    on the CPU, as ``search`` scores them (``search.distinct_score_blocks``): as many
    distinct query rows at a time as fit in ``max_bytes`` of scores with their copies."""
    query_rows, gallery_rows = distinct_pair(queries, gallery)
    block = max(1, max_bytes // (4 * (len(gallery_rows.unit) + len(gallery_rows.inverse))))
    yield from distinct_score_blocks(query_rows, gallery_rows, block, "cpu")


def top_k_rows(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` highest scores of each row of a (b, N) block (all N when N < k), score
    descending, equal scores in column order: ((b, k) int64 columns, (b, k) scores).

    No full sort: a partition finds each row's k-th largest score s_k; every column above
    it is kept, and of the columns equal to it the first ones in column order fill the rest.
    """
    k = min(k, scores.shape[1])
    kth = -np.partition(-scores, k - 1, axis=1)[:, k - 1 : k]  # (b, 1)
    above = scores > kth
    level = scores == kth
    room = k - np.count_nonzero(above, axis=1, keepdims=True)  # (b, 1), at least 1
    kept = above | (level & (np.cumsum(level, axis=1, dtype=np.int32) <= room))
    columns = np.nonzero(kept)[1].reshape(len(scores), k)  # column order within each row
    values = np.take_along_axis(scores, columns, axis=1)
    order = np.argsort(-values, axis=1, kind="stable")  # ties keep their column order
    return np.take_along_axis(columns, order, axis=1), np.take_along_axis(values, order, axis=1)


def direction_table(
    direction: Direction, ranks: np.ndarray, top_columns: np.ndarray, top_scores: np.ndarray
) -> pa.Table:
    """The ranks-file rows of one direction: (Q,) ranks, (Q, k) top gallery rows and their
    scores, as computed by ``top_k_rows``."""
    gallery_ids = np.asarray(direction.gallery_ids, dtype=object)
    n_queries = len(direction.query_ids)
    columns = {
        "direction": pa.array([direction.name] * n_queries, pa.string()),
        "query_id": pa.array(direction.query_ids, pa.string()),
        "rank": pa.array(np.asarray(ranks, dtype=np.float64)),
        "correct_ids": pa.array(
            [gallery_ids[rows].tolist() for rows in direction.positives], pa.list_(pa.string())
        ),
        "top_ids": pa.array(gallery_ids[top_columns].tolist(), pa.list_(pa.string())),
        "top_scores": pa.array(
            np.asarray(top_scores, dtype=np.float32).tolist(), pa.list_(pa.float32())
        ),
    }
    return pa.table(columns, schema=RANKS_SCHEMA)


def write_ranks(path: str | os.PathLike[str], table: pa.Table) -> None:
    """Atomically write a ranks table (``RANKS_SCHEMA``) as Parquet with checksums."""
    _check_columns(table.schema, str(path))
    write_parquet(table, path)


def read_ranks(path: str | os.PathLike[str]) -> pa.Table:
    """Read a ranks file (its checksums verified), checking it has the ``RANKS_SCHEMA``
    columns and types: the table of those columns."""
    file = CheckedParquet(path)
    try:
        _check_columns(file.schema, str(path))
        return file.read(RANKS_SCHEMA.names)
    finally:
        file.close()


def _check_columns(schema: pa.Schema, where: str) -> None:
    """Raise ValueError naming `where` and the columns missing from `schema` or of
    another type than ``RANKS_SCHEMA``'s."""
    missing = [name for name in RANKS_SCHEMA.names if name not in schema.names]
    if missing:
        raise ValueError(f"{where}: not a ranks file, missing column(s) {missing}")
    mistyped = [
        f"{field.name} is {schema.field(field.name).type}, expected {field.type}"
        for field in RANKS_SCHEMA
        if not schema.field(field.name).type.equals(field.type)
    ]
    if mistyped:
        raise ValueError(f"{where}: not a ranks file: {'; '.join(mistyped)}")
