"""Parquet shards of per-video and per-caption feature sequences.

Visual shard: video_id, timestamps (list<float32>, seconds), features (list of fixed-size
lists, one D-dim vector per timestamp). Text shard: caption_id, video_id, token_ids
(list<int32>), embeddings (one D-dim vector per token). Rejects: video_id, reason.
Schema metadata (JSON under the key b"supportset") records how the features were made.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from supportset.io import atomic_path

METADATA_KEY = b"supportset"
REJECTS_SCHEMA = pa.schema([("video_id", pa.string()), ("reason", pa.string())])


def sequence_array(sequences: list[np.ndarray], dim: int, dtype: str) -> pa.ListArray:
    """Arrow list<fixed_size_list<dtype, dim>> from arrays of shape (T_i, dim)."""
    lengths = np.array([len(sequence) for sequence in sequences], dtype=np.int32)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    flat = (
        np.concatenate(sequences).astype(dtype).ravel() if sequences else np.zeros(0, dtype=dtype)
    )
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(flat), dim)
    return pa.ListArray.from_arrays(pa.array(offsets), vectors)


def sequences_from_column(column: pa.ChunkedArray) -> list[np.ndarray]:
    """Inverse of `sequence_array`: float32 arrays of shape (T_i, D), one per row."""
    array = column.combine_chunks()
    dim = array.type.value_type.list_size
    flat = array.flatten().flatten().to_numpy(zero_copy_only=False).astype(np.float32)
    vectors = flat.reshape(-1, dim)
    offsets = array.offsets.to_numpy()
    return [vectors[start:stop] for start, stop in itertools.pairwise(offsets)]


def write_visual_shard(
    path: str | Path,
    video_ids: list[str],
    timestamps: list[np.ndarray],
    features: list[np.ndarray],
    dim: int,
    dtype: str,
    metadata: dict,
) -> None:
    """Write one visual shard atomically; features[i] has shape (len(timestamps[i]), dim)."""
    table = pa.table(
        {
            "video_id": pa.array(video_ids, pa.string()),
            "timestamps": pa.array(
                [t.astype(np.float32) for t in timestamps], pa.list_(pa.float32())
            ),
            "features": sequence_array(features, dim, dtype),
        }
    )
    _write(table, path, metadata)


def write_rejects(path: str | Path, rejects: Iterable[tuple[str, str]]) -> None:
    """Write the rejects table (video_id, reason) atomically; it may be empty."""
    rows = [{"video_id": video_id, "reason": reason} for video_id, reason in rejects]
    _write(pa.Table.from_pylist(rows, schema=REJECTS_SCHEMA), path, None)


def write_text_shard(
    path: str | Path,
    caption_ids: list[str],
    video_ids: list[str],
    token_ids: list[np.ndarray],
    embeddings: list[np.ndarray],
    dim: int,
    dtype: str,
    metadata: dict,
) -> None:
    """Write one text shard atomically; embeddings[i] has shape (len(token_ids[i]), dim)."""
    table = pa.table(
        {
            "caption_id": pa.array(caption_ids, pa.string()),
            "video_id": pa.array(video_ids, pa.string()),
            "token_ids": pa.array([t.astype(np.int32) for t in token_ids], pa.list_(pa.int32())),
            "embeddings": sequence_array(embeddings, dim, dtype),
        }
    )
    _write(table, path, metadata)


def read_sequences(
    paths: Iterable[str | Path], id_column: str, value_column: str
) -> dict[str, np.ndarray]:
    """Map id -> float32 array (T, D) over all `paths` (visual or text shards)."""
    sequences: dict[str, np.ndarray] = {}
    for path in paths:
        table = pq.read_table(path, columns=[id_column, value_column])
        ids = table.column(id_column).to_pylist()
        sequences.update(zip(ids, sequences_from_column(table.column(value_column)), strict=True))
    return sequences


def read_metadata(path: str | Path) -> dict:
    """The supportset metadata stored in a shard's schema."""
    raw = pq.read_schema(path).metadata or {}
    return json.loads(raw.get(METADATA_KEY, b"{}"))


def _write(table: pa.Table, path: str | Path, metadata: dict | None) -> None:
    if metadata is not None:
        table = table.replace_schema_metadata({METADATA_KEY: json.dumps(metadata, sort_keys=True)})
    with atomic_path(path) as temporary:
        pq.write_table(table, temporary)
