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


def check_storable(row_id: str, values: np.ndarray, dtype: str) -> None:
    """Refuse values that are not finite, or that overflow `dtype` (float16 tops at 65504)."""
    if not np.isfinite(values).all():
        raise ValueError(f"{row_id}: features contain NaN or inf")
    with np.errstate(over="ignore"):
        overflows = not np.isfinite(values.astype(dtype)).all()
    if overflows:
        raise ValueError(
            f"{row_id}: features reach {np.abs(values).max():.3g}, beyond {dtype}; "
            "store them as float32 (features.dtype / text.dtype)"
        )


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


class VisualShardWriter:
    """Write a visual shard video by video, atomically (Parquet, or HDF5 for a .h5 path).

    Rows keep the order of `write` calls; memory holds at most `rows_per_group` videos.
    Use as a context manager: the file appears under its name only if the block succeeds.
    """

    def __init__(
        self, path: str | Path, dim: int, dtype: str, metadata: dict, rows_per_group: int = 64
    ) -> None:
        self.path = Path(path)
        self.dim = dim
        self.dtype = dtype
        self.metadata = json.dumps(metadata, sort_keys=True)
        self.rows_per_group = rows_per_group
        self.rows: list[tuple[str, np.ndarray, np.ndarray]] = []
        self._atomic = atomic_path(self.path)
        self.temporary = self._atomic.__enter__()
        self._sink = _HDF5Sink(self) if self.path.suffix == ".h5" else _ParquetSink(self)

    def write(self, video_id: str, timestamps: np.ndarray, features: np.ndarray) -> None:
        """Append one video: timestamps (T,) seconds, features (T, dim)."""
        if features.shape != (len(timestamps), self.dim):
            raise ValueError(f"{video_id}: features {features.shape} for {len(timestamps)} steps")
        check_storable(video_id, features, self.dtype)
        self.rows.append((video_id, timestamps, features))
        if len(self.rows) >= self.rows_per_group:
            self._flush()

    def __enter__(self) -> VisualShardWriter:
        return self

    def __exit__(self, error_type, error, traceback) -> None:
        try:
            if error_type is None:
                self._flush()
        finally:
            self._sink.close()
            self._atomic.__exit__(error_type, error, traceback)

    def _flush(self) -> None:
        self._sink.append(self.rows)
        self.rows = []


class _ParquetSink:
    def __init__(self, writer: VisualShardWriter) -> None:
        self.writer = writer
        self.file: pq.ParquetWriter | None = None

    def append(self, rows: list) -> None:
        if self.file is not None and not rows:
            return
        table = _visual_table(rows, self.writer.dim, self.writer.dtype)
        table = table.replace_schema_metadata({METADATA_KEY: self.writer.metadata})
        if self.file is None:
            self.file = pq.ParquetWriter(self.writer.temporary, table.schema)
        self.file.write_table(table)

    def close(self) -> None:
        if self.file is None:  # no row group yet: write the empty table with its schema
            self.append([])
        self.file.close()


class _HDF5Sink:
    """Datasets video_id (N,), offsets (N + 1,), timestamps (total,), features (total, D);
    the rows of video i are offsets[i]:offsets[i + 1]."""

    def __init__(self, writer: VisualShardWriter) -> None:
        import h5py

        self.file = h5py.File(writer.temporary, "w")
        self.file.attrs[METADATA_KEY.decode()] = writer.metadata
        self.file.create_dataset("video_id", (0,), h5py.string_dtype(), maxshape=(None,))
        self.file.create_dataset("offsets", data=np.zeros(1, np.int64), maxshape=(None,))
        self.file.create_dataset("timestamps", (0,), np.float32, maxshape=(None,), chunks=(4096,))
        self.file.create_dataset(
            "features", (0, writer.dim), writer.dtype, maxshape=(None, writer.dim),
            chunks=(64, writer.dim),
        )  # fmt: skip

    def append(self, rows: list) -> None:
        if not rows:
            return
        lengths = np.array([len(times) for _, times, _ in rows], dtype=np.int64)
        _extend(self.file["video_id"], np.array([video_id for video_id, _, _ in rows], object))
        _extend(self.file["offsets"], self.file["offsets"][-1] + np.cumsum(lengths))
        _extend(self.file["timestamps"], np.concatenate([t for _, t, _ in rows]).astype(np.float32))
        _extend(self.file["features"], np.concatenate([f for _, _, f in rows]))

    def close(self) -> None:
        self.file.close()


def _extend(dataset, values: np.ndarray) -> None:
    start = dataset.shape[0]
    dataset.resize(start + len(values), axis=0)
    dataset[start:] = values


def _visual_table(rows: list, dim: int, dtype: str) -> pa.Table:
    return pa.table(
        {
            "video_id": pa.array([video_id for video_id, _, _ in rows], pa.string()),
            "timestamps": pa.array(
                [times.astype(np.float32) for _, times, _ in rows], pa.list_(pa.float32())
            ),
            "features": sequence_array([features for _, _, features in rows], dim, dtype),
        }
    )


def write_visual_shard(
    path: str | Path,
    video_ids: list[str],
    timestamps: list[np.ndarray],
    features: list[np.ndarray],
    dim: int,
    dtype: str,
    metadata: dict,
) -> None:
    """Write a whole visual shard at once; features[i] has shape (len(timestamps[i]), dim)."""
    with VisualShardWriter(path, dim, dtype, metadata) as writer:
        for row in zip(video_ids, timestamps, features, strict=True):
            writer.write(*row)


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
    for caption_id, values in zip(caption_ids, embeddings, strict=True):
        check_storable(caption_id, values, dtype)
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
    """Map id -> float32 array (T, D) over all `paths` (Parquet or HDF5 visual shards, or
    Parquet text shards)."""
    sequences: dict[str, np.ndarray] = {}
    for path in paths:
        if Path(path).suffix == ".h5":
            sequences.update(_read_hdf5_sequences(path, value_column))
            continue
        table = pq.read_table(path, columns=[id_column, value_column])
        ids = table.column(id_column).to_pylist()
        sequences.update(zip(ids, sequences_from_column(table.column(value_column)), strict=True))
    return sequences


def read_metadata(path: str | Path) -> dict:
    """The supportset metadata stored in a shard (Parquet schema or HDF5 attribute)."""
    if Path(path).suffix == ".h5":
        import h5py

        with h5py.File(path, "r") as handle:
            return json.loads(handle.attrs.get(METADATA_KEY.decode(), "{}"))
    raw = pq.read_schema(path).metadata or {}
    return json.loads(raw.get(METADATA_KEY, b"{}"))


def _read_hdf5_sequences(path: str | Path, value_column: str) -> dict[str, np.ndarray]:
    import h5py

    with h5py.File(path, "r") as handle:
        ids = [value.decode() for value in handle["video_id"][:]]
        offsets = handle["offsets"][:]
        values = handle[value_column][:].astype(np.float32)
    return {
        video_id: values[start:stop]
        for video_id, (start, stop) in zip(ids, itertools.pairwise(offsets), strict=True)
    }


def _write(table: pa.Table, path: str | Path, metadata: dict | None) -> None:
    if metadata is not None:
        table = table.replace_schema_metadata({METADATA_KEY: json.dumps(metadata, sort_keys=True)})
    with atomic_path(path) as temporary:
        pq.write_table(table, temporary)
