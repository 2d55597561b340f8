"""Shards of per-video and per-caption sequences, in Parquet or HDF5 (by file suffix).

Visual shard: video_id, timestamps (float32 seconds, one per step), features (one D-dim
vector per step) and, extracted with `features.crops` K above 0, crops (one K*D-dim
vector per step: K crop features, see features/visual.py). Text shard: caption_id,
video_id, token_ids (int32, one per token), embeddings (one D-dim vector per token),
n_tokens (the caption's length before truncation). Rejects (Parquet): id, reason.

Parquet: one row per video or caption; a sequence is a list column, vectors are
fixed-size lists; metadata is JSON in the schema under b"supportset".
HDF5 (`.h5`): one dataset per id column (fixed-length UTF-8), `offsets` (N + 1,) and one
flat dataset per sequence column; the rows of item i are offsets[i]:offsets[i + 1];
metadata is JSON in the file attribute "supportset".

Both formats carry checksums, verified on every read (see supportset.integrity): a shard changed
after it was written, truncated or not a shard at all is an error naming it, and so is a
shard written without checksums by an older version.
"""

from __future__ import annotations

import itertools
import json
import os
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from supportset.integrity import (
    CheckedHDF5,
    CheckedParquet,
    ParquetWriter,
    create_hdf5,
    write_parquet,
)
from supportset.io import atomic_path

METADATA_KEY = "supportset"
# The layout of shards on disk. The workflow passes it to the rules that write shards, so
# that a new layout (2: checksums) rebuilds the shards of an older one, which readers refuse.
SHARD_FORMAT = 2


@dataclass(frozen=True)
class SequenceColumn:
    """A column holding one value (dim None) or one dim-vector per step of each row."""

    name: str
    dtype: str
    dim: int | None = None


@dataclass(frozen=True)
class ShardSchema:
    """Id columns (strings), sequence columns sharing each row's length, scalar ints, and
    the rows per Parquet row group (the unit a random read of one row decodes)."""

    ids: tuple[str, ...]
    sequences: tuple[SequenceColumn, ...]
    scalars: tuple[str, ...] = ()
    rows_per_group: int = 64


def visual_schema(dim: int, dtype: str, crops: int = 0) -> ShardSchema:
    """Timestamps and dim-wide features per step, and with `crops` K above 0 a crops
    column of K * dim per step."""
    sequences = (SequenceColumn("timestamps", "float32"), SequenceColumn("features", dtype, dim))
    if crops:
        sequences += (SequenceColumn("crops", dtype, crops * dim),)
    return ShardSchema(
        ("video_id",),
        sequences,
        rows_per_group=16,  # a video is ~100 KB-2 MB of features: keep random reads small
    )


def text_schema(dim: int, dtype: str) -> ShardSchema:
    return ShardSchema(
        ("caption_id", "video_id"),
        (SequenceColumn("token_ids", "int32"), SequenceColumn("embeddings", dtype, dim)),
        ("n_tokens",),
        rows_per_group=16,  # a random read of one caption decodes 16
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

    Rows keep the order of `write` calls; memory holds at most `rows_per_group` rows (and,
    for HDF5, the ids of all rows). Use as a context manager: the file appears under its
    name only if the block succeeds.
    """

    def __init__(
        self,
        path: str | Path,
        schema: ShardSchema,
        metadata: dict,
        rows_per_group: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.schema = schema
        self.metadata = json.dumps(metadata, sort_keys=True)
        self.rows_per_group = rows_per_group or schema.rows_per_group
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
        if error_type is None:
            try:
                self._flush()
                self._sink.finish()
            except BaseException as failure:  # publish nothing, as for an error in the block
                self._sink.close()
                self._atomic.__exit__(type(failure), failure, failure.__traceback__)
                raise
        self._sink.close()
        self._atomic.__exit__(error_type, error, traceback)

    def _flush(self) -> None:
        self._sink.append(self.rows)
        self.rows = []


class _ParquetSink:
    def __init__(self, writer: ShardWriter) -> None:
        self.writer = writer
        self.file: ParquetWriter | None = None

    def append(self, rows: list) -> None:
        if self.file is not None and not rows:
            return
        table = _arrow_table(self.writer.schema, rows)
        table = table.replace_schema_metadata({METADATA_KEY: self.writer.metadata})
        if self.file is None:
            self.file = ParquetWriter(  # no dictionary for vectors: it only slows reads
                self.writer.temporary, table.schema, use_dictionary=list(self.writer.schema.ids)
            )
        self.file.write(table)

    def finish(self) -> None:
        """Complete the file: its schema (even without rows) and checksums."""
        if self.file is None:  # no row yet: write the empty table with its schema
            self.append([])
        self.file.close()

    def close(self) -> None:
        if self.file is not None:
            self.file.abort()


class _HDF5Sink:
    """Every dataset chunked with a Fletcher-32 checksum per chunk; the id columns are
    written by `finish`, as fixed-length strings as long as the longest id."""

    def __init__(self, writer: ShardWriter) -> None:
        self.schema = writer.schema
        self.ids: list[list[str]] = [[] for _ in writer.schema.ids]
        self.file = create_hdf5(writer.temporary)
        self.file.attrs[METADATA_KEY] = np.bytes_(writer.metadata)  # fixed-length: checksummed
        for name in writer.schema.scalars:
            self._create(name, np.zeros(0, np.int64), (4096,))
        self._create("offsets", np.zeros(1, np.int64), (4096,))
        for column in writer.schema.sequences:
            shape = (0,) if column.dim is None else (0, column.dim)
            # a read verifies whole chunks: 16 steps read fastest (benchmarks/checksums.py)
            chunks = (4096,) if column.dim is None else (16, column.dim)
            self._create(column.name, np.zeros(shape, column.dtype), chunks)

    def _create(self, name: str, values: np.ndarray, chunks: tuple[int, ...]) -> None:
        """A dataset holding `values`, growable along its first axis."""
        maxshape = (None, *values.shape[1:])
        self.file.create_dataset(
            name, data=values, maxshape=maxshape, chunks=chunks, fletcher32=True
        )

    def append(self, rows: list) -> None:
        if not rows:
            return
        for position, values in enumerate(self.ids):
            values.extend(ids[position] for ids, _, _ in rows)
        for position, name in enumerate(self.schema.scalars):
            _extend(self.file[name], np.array([scalars[position] for _, _, scalars in rows]))
        lengths = np.array([len(sequences[0]) for _, sequences, _ in rows], dtype=np.int64)
        _extend(self.file["offsets"], self.file["offsets"][-1] + np.cumsum(lengths))
        for position, column in enumerate(self.schema.sequences):
            values = np.concatenate([sequences[position] for _, sequences, _ in rows])
            _extend(self.file[column.name], values.astype(column.dtype))

    def finish(self) -> None:
        """Write the id columns."""
        for name, values in zip(self.schema.ids, self.ids, strict=True):
            encoded = np.array([value.encode() for value in values], dtype=bytes)
            self._create(name, encoded.astype(f"S{max(encoded.itemsize, 1)}"), (4096,))

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
    (T_i,) for scalars, as `dtype` (None: as stored)."""
    array = column.combine_chunks()
    values = array.flatten()
    if pa.types.is_fixed_size_list(values.type):
        dim = values.type.list_size
        values = values.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim)
    else:
        values = values.to_numpy(zero_copy_only=False)
    if dtype is not None:
        values = values.astype(dtype)
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
    write_parquet(pa.Table.from_pylist(rows, schema=schema), path)


class ShardSequences(Mapping[str, np.ndarray]):
    """id -> array of one sequence column over shards ((T, D) vectors or (T,) values, as
    `dtype`), read on demand so that a store larger than memory can be used.

    Only the ids (and, for HDF5, the row offsets) are held in memory. An HDF5 row is read
    by slicing its own steps. A Parquet row is read with its whole row group, and the most
    recently used row groups are kept, decoded in their stored dtype, up to `cache_bytes`.
    Files are opened per process, so a copy made by fork (a data-loader worker) opens its
    own. Ids must be unique across the shards.
    """

    def __init__(
        self,
        paths: Iterable[str | Path],
        id_column: str,
        value_column: str,
        dtype=np.float32,
        cache_bytes: int = 256 << 20,
    ) -> None:
        self.paths = [Path(path) for path in paths]
        self.value_column = value_column
        self.dtype = np.dtype(dtype)
        self.cache_bytes = cache_bytes
        self._locations: dict[str, tuple[int, int]] = {}  # id -> (shard, row)
        self._group_starts: list[np.ndarray] = []  # Parquet: first row of each row group
        self._offsets: list[np.ndarray] = []  # HDF5: step offsets (N + 1,)
        for shard, path in enumerate(self.paths):
            ids = self._index(path, id_column)
            for row, row_id in enumerate(ids):
                if self._locations.setdefault(row_id, (shard, row)) != (shard, row):
                    raise ValueError(
                        f"{id_column} {row_id!r} is in both "
                        f"{self.paths[self._locations[row_id][0]]} and {path}"
                    )
        self._open: dict[int, CheckedHDF5 | CheckedParquet] = {}
        self._pid = os.getpid()
        self._cache: OrderedDict[tuple[int, int], list[np.ndarray]] = OrderedDict()
        self._cached_bytes = 0

    def _index(self, path: Path, id_column: str) -> list[str]:
        file = open_shard(path)
        try:
            if isinstance(file, CheckedHDF5):
                self._offsets.append(file.read("offsets"))
                self._group_starts.append(np.zeros(0, np.int64))
                return [value.decode() for value in file.read(id_column)]
            metadata = file.metadata
            sizes = [metadata.row_group(g).num_rows for g in range(metadata.num_row_groups)]
            self._group_starts.append(np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64))
            self._offsets.append(np.zeros(0, np.int64))
            return file.read([id_column]).column(id_column).to_pylist()
        finally:
            file.close()

    def __len__(self) -> int:
        return len(self._locations)

    def __iter__(self) -> Iterator[str]:
        return iter(self._locations)

    def __contains__(self, row_id: object) -> bool:
        return row_id in self._locations

    def __getitem__(self, row_id: str) -> np.ndarray:
        shard, row = self._locations[row_id]
        if self.paths[shard].suffix == ".h5":
            start, stop = self._offsets[shard][row : row + 2]
            return self._file(shard).read(self.value_column, start, stop).astype(self.dtype)
        starts = self._group_starts[shard]
        group = int(np.searchsorted(starts, row, side="right")) - 1
        return self._row_group(shard, group)[row - starts[group]].astype(self.dtype)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_open": {}, "_cache": OrderedDict(), "_cached_bytes": 0}

    def _file(self, shard: int) -> CheckedHDF5 | CheckedParquet:
        if self._pid != os.getpid():  # a forked copy: never share the parent's handles
            self._open, self._pid = {}, os.getpid()
        if shard not in self._open:
            self._open[shard] = open_shard(self.paths[shard])
        return self._open[shard]

    def _row_group(self, shard: int, group: int) -> list[np.ndarray]:
        key = (shard, group)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        column = self._file(shard).read([self.value_column], row_group=group)
        rows = sequences_from_column(column.column(self.value_column), dtype=None)
        self._cache[key] = rows
        self._cached_bytes += sum(row.nbytes for row in rows)
        while self._cached_bytes > self.cache_bytes and len(self._cache) > 1:
            _, evicted = self._cache.popitem(last=False)
            self._cached_bytes -= sum(row.nbytes for row in evicted)
        return rows


def read_sequences(
    paths: Iterable[str | Path], id_column: str, value_column: str, dtype=np.float32
) -> dict[str, np.ndarray]:
    """All of one sequence column in memory: id -> array, as `ShardSequences` reads it."""
    return dict(ShardSequences(paths, id_column, value_column, dtype))


def open_shard(path: str | Path) -> CheckedHDF5 | CheckedParquet:
    """A shard opened for verified reads: HDF5 for a `.h5` path, else Parquet; a shard
    without checksums is refused."""
    return CheckedHDF5(path) if Path(path).suffix == ".h5" else CheckedParquet(path)


def read_metadata(path: str | Path) -> dict:
    """The supportset metadata stored in a shard (Parquet schema or HDF5 attribute)."""
    file = open_shard(path)
    try:
        if isinstance(file, CheckedHDF5):
            raw = file.attribute(METADATA_KEY)
        else:
            raw = (file.schema.metadata or {}).get(METADATA_KEY.encode())
    finally:
        file.close()
    return json.loads(raw or "{}")
