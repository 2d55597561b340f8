"""Shards of per-video and per-caption sequences, in Parquet or HDF5 (by file suffix).

Visual shard: video_id, timestamps (float32 seconds, one per step), features (one D-dim
vector per step). Text shard: caption_id, video_id, token_ids (int32, one per token),
embeddings (one D-dim vector per token), n_tokens (the caption's length before
truncation). Rejects (Parquet): id, reason.

Parquet: one row per video or caption; a sequence is a list column, vectors are
fixed-size lists; metadata is JSON in the schema under b"supportset".
HDF5 (`.h5`): one dataset per id column, `offsets` (N + 1,) and one flat dataset per
sequence column; the rows of item i are offsets[i]:offsets[i + 1]; metadata is JSON in the
file attribute "supportset".
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from supportset.io import atomic_path

METADATA_KEY = "supportset"


@dataclass(frozen=True)
class SequenceColumn:
    """A column holding one value (dim None) or one dim-vector per step of each row."""

    name: str
    dtype: str
    dim: int | None = None


@dataclass(frozen=True)
class ShardSchema:
    """Id columns (strings), sequence columns sharing each row's length, scalar ints."""

    ids: tuple[str, ...]
    sequences: tuple[SequenceColumn, ...]
    scalars: tuple[str, ...] = ()


def visual_schema(dim: int, dtype: str) -> ShardSchema:
    return ShardSchema(
        ("video_id",),
        (SequenceColumn("timestamps", "float32"), SequenceColumn("features", dtype, dim)),
    )


def text_schema(dim: int, dtype: str) -> ShardSchema:
    return ShardSchema(
        ("caption_id", "video_id"),
        (SequenceColumn("token_ids", "int32"), SequenceColumn("embeddings", dtype, dim)),
        ("n_tokens",),
    )


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


class ShardWriter:
    """Write a shard row by row, atomically; Parquet, or HDF5 for a `.h5` path.

    Rows keep the order of `write` calls; memory holds at most `rows_per_group` rows. Use as
    a context manager: the file appears under its name only if the block succeeds.
    """

    def __init__(
        self, path: str | Path, schema: ShardSchema, metadata: dict, rows_per_group: int = 64
    ) -> None:
        self.path = Path(path)
        self.schema = schema
        self.metadata = json.dumps(metadata, sort_keys=True)
        self.rows_per_group = rows_per_group
        self.rows: list[tuple[tuple[str, ...], tuple[np.ndarray, ...], tuple[int, ...]]] = []
        self._atomic = atomic_path(self.path)
        self.temporary = self._atomic.__enter__()
        self._sink = _HDF5Sink(self) if self.path.suffix == ".h5" else _ParquetSink(self)

    def write(
        self, ids: tuple[str, ...], sequences: tuple[np.ndarray, ...], scalars: tuple[int, ...] = ()
    ) -> None:
        """Append one row: its ids, one array per sequence column ((T,) or (T, dim)) and
        one int per scalar column."""
        length = len(sequences[0])
        for column, values in zip(self.schema.sequences, sequences, strict=True):
            expected = (length,) if column.dim is None else (length, column.dim)
            if values.shape != expected:
                raise ValueError(
                    f"{ids[0]}: {column.name} has shape {values.shape}, not {expected}"
                )
            if column.dim is not None:
                check_storable(ids[0], values, column.dtype)
        self.rows.append((ids, sequences, scalars))
        if len(self.rows) >= self.rows_per_group:
            self._flush()

    def __enter__(self) -> ShardWriter:
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
    def __init__(self, writer: ShardWriter) -> None:
        self.writer = writer
        self.file: pq.ParquetWriter | None = None

    def append(self, rows: list) -> None:
        if self.file is not None and not rows:
            return
        table = _arrow_table(self.writer.schema, rows)
        table = table.replace_schema_metadata({METADATA_KEY: self.writer.metadata})
        if self.file is None:
            self.file = pq.ParquetWriter(self.writer.temporary, table.schema)
        self.file.write_table(table)

    def close(self) -> None:
        if self.file is None:  # no row yet: write the empty table with its schema
            self.append([])
        self.file.close()


class _HDF5Sink:
    def __init__(self, writer: ShardWriter) -> None:
        import h5py

        self.schema = writer.schema
        self.file = h5py.File(writer.temporary, "w")
        self.file.attrs[METADATA_KEY] = writer.metadata
        for name in writer.schema.ids:
            self.file.create_dataset(name, (0,), h5py.string_dtype(), maxshape=(None,))
        for name in writer.schema.scalars:
            self.file.create_dataset(name, (0,), np.int64, maxshape=(None,))
        self.file.create_dataset("offsets", data=np.zeros(1, np.int64), maxshape=(None,))
        for column in writer.schema.sequences:
            shape = (0,) if column.dim is None else (0, column.dim)
            chunks = (4096,) if column.dim is None else (64, column.dim)
            maxshape = (None, *shape[1:])
            self.file.create_dataset(
                column.name, shape, column.dtype, maxshape=maxshape, chunks=chunks
            )

    def append(self, rows: list) -> None:
        if not rows:
            return
        for position, name in enumerate(self.schema.ids):
            _extend(self.file[name], np.array([ids[position] for ids, _, _ in rows], object))
        for position, name in enumerate(self.schema.scalars):
            _extend(self.file[name], np.array([scalars[position] for _, _, scalars in rows]))
        lengths = np.array([len(sequences[0]) for _, sequences, _ in rows], dtype=np.int64)
        _extend(self.file["offsets"], self.file["offsets"][-1] + np.cumsum(lengths))
        for position, column in enumerate(self.schema.sequences):
            values = np.concatenate([sequences[position] for _, sequences, _ in rows])
            _extend(self.file[column.name], values.astype(column.dtype))

    def close(self) -> None:
        self.file.close()


def _extend(dataset, values: np.ndarray) -> None:
    start = dataset.shape[0]
    dataset.resize(start + len(values), axis=0)
    dataset[start:] = values


def _arrow_table(schema: ShardSchema, rows: list) -> pa.Table:
    columns = {
        name: pa.array([ids[position] for ids, _, _ in rows], pa.string())
        for position, name in enumerate(schema.ids)
    }
    for position, column in enumerate(schema.sequences):
        values = [sequences[position] for _, sequences, _ in rows]
        if column.dim is None:
            columns[column.name] = pa.array(
                [value.astype(column.dtype) for value in values],
                pa.list_(pa.from_numpy_dtype(np.dtype(column.dtype))),
            )
        else:
            columns[column.name] = sequence_array(values, column.dim, column.dtype)
    for position, name in enumerate(schema.scalars):
        columns[name] = pa.array([scalars[position] for _, _, scalars in rows], pa.int64())
    return pa.table(columns)


def sequence_array(sequences: list[np.ndarray], dim: int, dtype: str) -> pa.ListArray:
    """Arrow list<fixed_size_list<dtype, dim>> from arrays of shape (T_i, dim)."""
    lengths = np.array([len(sequence) for sequence in sequences], dtype=np.int32)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    flat = (
        np.concatenate(sequences).astype(dtype).ravel() if sequences else np.zeros(0, dtype=dtype)
    )
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(flat), dim)
    return pa.ListArray.from_arrays(pa.array(offsets), vectors)


def sequences_from_column(column: pa.ChunkedArray, dtype=np.float32) -> list[np.ndarray]:
    """Inverse of the writer's list columns: one array per row, (T_i, D) for vectors or
    (T_i,) for scalars, as `dtype`."""
    array = column.combine_chunks()
    values = array.flatten()
    if pa.types.is_fixed_size_list(values.type):
        dim = values.type.list_size
        values = values.flatten().to_numpy(zero_copy_only=False).astype(dtype).reshape(-1, dim)
    else:
        values = values.to_numpy(zero_copy_only=False).astype(dtype)
    offsets = array.offsets.to_numpy()
    return [values[start:stop] for start, stop in itertools.pairwise(offsets)]


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
    with ShardWriter(path, visual_schema(dim, dtype), metadata) as writer:
        for video_id, times, values in zip(video_ids, timestamps, features, strict=True):
            writer.write((video_id,), (times, values))


def write_rejects(path: str | Path, id_column: str, rejects: Iterable[tuple[str, str]]) -> None:
    """Write a rejects table (id, reason) atomically; it may be empty."""
    schema = pa.schema([(id_column, pa.string()), ("reason", pa.string())])
    rows = [{id_column: row_id, "reason": reason} for row_id, reason in rejects]
    with atomic_path(path) as temporary:
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), temporary)


def read_sequences(
    paths: Iterable[str | Path], id_column: str, value_column: str, dtype=np.float32
) -> dict[str, np.ndarray]:
    """Map id -> array of `value_column` ((T, D) vectors or (T,) values, as `dtype`) over
    all `paths`, Parquet or HDF5."""
    sequences: dict[str, np.ndarray] = {}
    for path in paths:
        if Path(path).suffix == ".h5":
            sequences.update(_read_hdf5_sequences(path, id_column, value_column, dtype))
            continue
        table = pq.read_table(path, columns=[id_column, value_column])
        ids = table.column(id_column).to_pylist()
        rows = sequences_from_column(table.column(value_column), dtype)
        sequences.update(zip(ids, rows, strict=True))
    return sequences


def read_token_ids(paths: Iterable[str | Path]) -> dict[str, np.ndarray]:
    """Map caption_id -> int64 token ids (L,) over all text shards `paths`."""
    return read_sequences(paths, "caption_id", "token_ids", np.int64)


def read_metadata(path: str | Path) -> dict:
    """The supportset metadata stored in a shard (Parquet schema or HDF5 attribute)."""
    if Path(path).suffix == ".h5":
        import h5py

        with h5py.File(path, "r") as handle:
            return json.loads(handle.attrs.get(METADATA_KEY, "{}"))
    raw = pq.read_schema(path).metadata or {}
    return json.loads(raw.get(METADATA_KEY.encode(), b"{}"))


def _read_hdf5_sequences(
    path: str | Path, id_column: str, value_column: str, dtype
) -> dict[str, np.ndarray]:
    import h5py

    with h5py.File(path, "r") as handle:
        ids = [value.decode() for value in handle[id_column][:]]
        offsets = handle["offsets"][:]
        values = handle[value_column][:].astype(dtype)
    return {
        row_id: values[start:stop]
        for row_id, (start, stop) in zip(ids, itertools.pairwise(offsets), strict=True)
    }
