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
from collections.abc import Iterable, Iterator, Mapping, Sequence
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
from supportset.io import atomic_path, remove_leftovers

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
    # a row group also ends once its rows hold this many bytes as stored (0: no limit)
    bytes_per_group: int = 0


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
        # a 6.5-minute HowTo100M video is 2 MB at 2560-d float16: alone in its group, a
        # random clip read decodes one video, not 16 (benchmarks/scale_loader.py); short
        # videos still share a group (MSR-VTT's 15 s are 77 KB: 13 a group)
        bytes_per_group=1 << 20,
    )


def text_schema(dim: int, dtype: str) -> ShardSchema:
    return ShardSchema(
        ("caption_id", "video_id"),
        (SequenceColumn("token_ids", "int32"), SequenceColumn("embeddings", dtype, dim)),
        ("n_tokens",),
        rows_per_group=16,  # a random read of one caption decodes 16
    )


def token_ids_schema() -> ShardSchema:
    """A token-id text shard: `text_schema` without the embeddings (embed_text
    --token-ids-only, the text set a fine-tuned text encoder reads)."""
    return ShardSchema(
        ("caption_id", "video_id"),
        (SequenceColumn("token_ids", "int32"),),
        ("n_tokens",),
        rows_per_group=256,  # ~100 bytes a caption: a random read of one decodes ~25 KB
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

    Rows keep the order of `write` calls; memory holds at most `rows_per_group` rows, or
    fewer holding the schema's `bytes_per_group` (and, for HDF5, the ids of all rows). Use
    as a context manager: the file appears under its name only if the block succeeds. A new
    writer first removes what killed writers of the same path left (`remove_leftovers`).
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
        self.row_bytes = 0  # of self.rows, as stored
        remove_leftovers(self.path)
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
        self.row_bytes += sum(
            values.size * np.dtype(column.dtype).itemsize
            for column, values in zip(self.schema.sequences, sequences, strict=True)
        )
        full = 0 < self.schema.bytes_per_group <= self.row_bytes
        if len(self.rows) >= self.rows_per_group or full:
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
        self.rows, self.row_bytes = [], 0


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


class ShardIndex:
    """Where every id of a list of shards is (its shard and row), and how each shard is laid
    out (Parquet: the first row of each row group; HDF5: the step offsets of its rows).

    The ids are held as one sorted NumPy array of their UTF-8 bytes (fixed width: every
    id takes as many bytes as the longest) with each one's position in shard order, and
    found by binary search. That is (longest id + 4) bytes per id (21.6 at HowTo100M's
    136M captions), where a dict of str -> (shard, row) held 215 (benchmarks/
    scale_loader.py); building it takes about twice that for a moment. It holds no Python
    object per id, so a forked data-loader worker shares it with its parent without
    copying its pages. Ids must be unique across the shards.
    """

    def __init__(self, paths: Iterable[str | Path], id_column: str) -> None:
        self.paths = [Path(path) for path in paths]
        self.id_column = id_column
        self.group_starts: list[np.ndarray] = []  # Parquet: first row of each row group
        self.offsets: list[np.ndarray] = []  # HDF5: step offsets (N + 1,)
        ids = [self._read_shard(path) for path in self.paths]
        counts = [len(shard_ids) for shard_ids in ids]
        self.starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)  # (S + 1,)
        everything = np.concatenate(ids) if ids else np.zeros(0, "S1")
        del ids
        order = np.argsort(everything, kind="stable")
        self.sorted_ids = everything[order]  # (N,) bytes, ascending
        del everything
        position_dtype = np.uint32 if len(order) < 1 << 32 else np.int64
        self.positions = order.astype(position_dtype)  # (N,) shard-order row of each
        del order
        self._refuse_repeats()

    def _read_shard(self, path: Path) -> np.ndarray:
        """The shard's ids as fixed-width UTF-8 bytes (N,), recording its layout."""
        file = open_shard(path)
        try:
            if isinstance(file, CheckedHDF5):
                self.offsets.append(file.read("offsets"))
                self.group_starts.append(np.zeros(0, np.int64))
            else:
                metadata = file.metadata
                sizes = [metadata.row_group(g).num_rows for g in range(metadata.num_row_groups)]
                self.group_starts.append(np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64))
                self.offsets.append(np.zeros(0, np.int64))
            return self._ids_of(file)
        finally:
            file.close()

    def _ids_of(self, file: CheckedHDF5 | CheckedParquet) -> np.ndarray:
        """An open shard's ids as fixed-width UTF-8 bytes (N,)."""
        if isinstance(file, CheckedHDF5):
            return np.asarray(file.read(self.id_column))
        return utf8_bytes(file.read([self.id_column]).column(self.id_column))

    def _refuse_repeats(self) -> None:
        repeated = np.flatnonzero(self.sorted_ids[1:] == self.sorted_ids[:-1])
        if repeated.size:
            first = repeated[0]
            shards = [self.shard_row(int(self.positions[i]))[0] for i in (first, first + 1)]
            raise ValueError(
                f"{self.id_column} {self.sorted_ids[first].decode()!r} is in both "
                f"{self.paths[min(shards)]} and {self.paths[max(shards)]}"
            )

    def __len__(self) -> int:
        return len(self.sorted_ids)

    def position(self, row_id: object) -> int:
        """The id's row in shard order (rows of shard 0, then of shard 1, ...); KeyError
        for an id that is not in the shards."""
        if not isinstance(row_id, str):
            raise KeyError(row_id)
        key = row_id.encode()
        if len(key) > self.sorted_ids.itemsize or not len(self):
            raise KeyError(row_id)
        found = int(np.searchsorted(self.sorted_ids, key))
        if found == len(self) or self.sorted_ids[found] != key:
            raise KeyError(row_id)
        return int(self.positions[found])

    def contains(self, row_ids: Sequence[str]) -> np.ndarray:
        """(N,) bool: which of `row_ids` are in the shards, by one vectorised search (about
        ten times faster than `in` id by id, for the checks over all captions)."""
        keys = np.array([row_id.encode() for row_id in row_ids], dtype=bytes)
        if not len(self) or not len(keys):
            return np.zeros(len(keys), bool)
        found = np.minimum(np.searchsorted(self.sorted_ids, keys), len(self) - 1)
        return self.sorted_ids[found] == keys

    def shard_row(self, position: int) -> tuple[int, int]:
        """(shard, row within the shard) of a row in shard order."""
        shard = int(np.searchsorted(self.starts, position, side="right")) - 1
        return shard, position - int(self.starts[shard])

    def locate(self, row_id: object) -> tuple[int, int]:
        """(shard, row) of an id; KeyError for one that is not in the shards."""
        return self.shard_row(self.position(row_id))

    def __contains__(self, row_id: object) -> bool:
        try:
            self.position(row_id)
        except KeyError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        """The ids in shard order (as the shards hold them), read again shard by shard:
        memory holds one shard's ids, even for `next(iter(...))`."""
        for path in self.paths:
            file = open_shard(path)
            try:
                ids = self._ids_of(file)
            finally:
                file.close()
            for value in ids:
                yield value.decode()


def utf8_bytes(column: pa.ChunkedArray, block_rows: int = 1 << 20) -> np.ndarray:
    """A string column as fixed-width UTF-8 bytes (N,) (NumPy 'S', as wide as its longest
    value), copied from Arrow's buffers without a Python object per value, `block_rows` at
    a time (the copy's gather indices take 8 bytes per byte of a block)."""
    array = column.combine_chunks()
    if isinstance(array, pa.DictionaryArray):
        array = array.dictionary_decode()
    if pa.types.is_string(array.type):
        array = array.cast(pa.large_string())
    _, offsets_buffer, data_buffer = array.buffers()
    offsets = np.frombuffer(offsets_buffer, np.int64)[array.offset :][: len(array) + 1]
    data = np.frombuffer(data_buffer, np.uint8) if data_buffer else np.zeros(0, np.uint8)
    lengths = np.diff(offsets)
    width = max(int(lengths.max()) if len(lengths) else 0, 1)
    values = np.zeros((len(array), width), np.uint8)
    columns = np.arange(width)
    for start in range(0, len(array), block_rows):
        stop = min(start + block_rows, len(array))
        inside = columns < lengths[start:stop, None]  # (rows, width)
        values[start:stop][inside] = data[(offsets[start:stop, None] + columns)[inside]]
    return values.view(f"S{width}").ravel()


class ShardSequences(Mapping[str, np.ndarray]):
    """id -> array of one sequence column over shards ((T, D) vectors or (T,) values, as
    `dtype`), read on demand so that a store larger than memory can be used.

    Only the ids (in a `ShardIndex`, which several columns of the same shards may share)
    are held in memory. An HDF5 row is read by slicing its own steps. A Parquet row is read
    with its whole row group, and the most recently used row groups are kept, decoded in
    their stored dtype, up to `cache_bytes`. Files are opened per process, so a copy made
    by fork (a data-loader worker) opens its own. Ids must be unique across the shards.
    """

    def __init__(
        self,
        paths: Iterable[str | Path],
        id_column: str,
        value_column: str,
        dtype=np.float32,
        cache_bytes: int = 256 << 20,
        index: ShardIndex | None = None,
    ) -> None:
        self.paths = [Path(path) for path in paths]
        self.value_column = value_column
        self.dtype = np.dtype(dtype)
        self.cache_bytes = cache_bytes
        if index is not None and (index.paths != self.paths or index.id_column != id_column):
            raise ValueError("a shared ShardIndex must index the same shards by the same id")
        self.index = index if index is not None else ShardIndex(self.paths, id_column)
        self._open: dict[int, CheckedHDF5 | CheckedParquet] = {}
        self._pid = os.getpid()
        self._cache: OrderedDict[tuple[int, int], list[np.ndarray]] = OrderedDict()
        self._cached_bytes = 0

    def __len__(self) -> int:
        return len(self.index)

    def __iter__(self) -> Iterator[str]:
        return iter(self.index)

    def __contains__(self, row_id: object) -> bool:
        return row_id in self.index

    def __getitem__(self, row_id: str) -> np.ndarray:
        return self._steps(*self.index.locate(row_id), slice(None))

    def steps(self, row_id: str, start: int, stop: int) -> np.ndarray:
        """Steps [start, stop) of a row (clipped to its length), as `self[row_id][start:stop]`
        but reading from an HDF5 shard only those steps' chunks, not the whole row: a
        4-second clip of a 6.5-minute HowTo100M video reads 1-2 chunks of 16 steps instead
        of 25 (benchmarks/scale_loader.py). A Parquet row is read with its row group."""
        return self._steps(*self.index.locate(row_id), slice(start, stop))

    def length(self, row_id: str) -> int:
        """The number of steps of a row: from the index for HDF5 (nothing is read), from its
        (cached) row group for Parquet."""
        shard, row = self.index.locate(row_id)
        if self.paths[shard].suffix == ".h5":
            return int(np.diff(self.index.offsets[shard][row : row + 2])[0])
        return len(self._parquet_row(shard, row))

    def _steps(self, shard: int, row: int, steps: slice) -> np.ndarray:
        """Steps `steps` of row `row` of shard `shard`, as `dtype` (a copy)."""
        if self.paths[shard].suffix != ".h5":
            return self._parquet_row(shard, row)[steps].astype(self.dtype)
        first, last = (int(value) for value in self.index.offsets[shard][row : row + 2])
        begin, end, _ = steps.indices(last - first)
        return (
            self._file(shard)
            .read(self.value_column, first + begin, first + max(begin, end))
            .astype(self.dtype)
        )

    def _parquet_row(self, shard: int, row: int) -> np.ndarray:
        """Row `row` of a Parquet shard as stored, from its cached row group (not a copy)."""
        starts = self.index.group_starts[shard]
        group = int(np.searchsorted(starts, row, side="right")) - 1
        return self._row_group(shard, group)[row - starts[group]]

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
