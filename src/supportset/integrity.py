"""Files written with checksums, and read back verified.

Writes go through `supportset.io.atomic_path`: a temporary file in the destination folder,
renamed into place when complete.

Parquet files carry Parquet's page checksums (a CRC-32 of each data and dictionary page,
for any reader), and, in the footer's key-value metadata, a CRC-32 of each column chunk
(its pages and page headers: a page header has no checksum of its own, and a changed one
can silently drop values or decode them with another encoding) and one of the footer
itself (schema, row-group layout, metadata), computed with its own value "00000000".
Readers check the footer on opening and each column chunk before decoding it. Parquet
files of other programs, without these, are read with their page checksums verified.

HDF5 files use the 1.10 file format, whose metadata (superblock, object headers and their
attributes, chunk indexes) carries checksums, with Fletcher-32 on every dataset's chunks;
strings are fixed-length, as the global heap of variable-length ones has no checksum.

Every error met reading such a file names it (`CorruptFileError`).
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from supportset.io import atomic_path

FOOTER_CRC_KEY = "supportset.footer_crc32"  # footer key-value pairs: the footer's CRC-32,
CHUNK_CRC_KEY = "supportset.chunk_crc32"  # and that of each column chunk, in file order
UNSEALED = b"00000000"  # a CRC-32 (8 hex digits) not computed yet
PARQUET_MAGIC = b"PAR1"
HDF5_FORMAT = ("v110", "v110")  # library-version bounds: metadata with checksums
NOT_CORRUPTION = (FileNotFoundError, PermissionError, IsADirectoryError)
READ_ERRORS = (OSError, ValueError, KeyError, EOFError, RuntimeError, pa.ArrowException)


class CorruptFileError(ValueError):
    """A file that cannot be read back as it was written; the message names it."""


def corrupt(path: str | Path, problem: str) -> CorruptFileError:
    return CorruptFileError(f"{path}: {problem}; delete it and rerun to rebuild it")


@contextlib.contextmanager
def reading(path: str | Path) -> Iterator[None]:
    """Turn an error of reading `path` (other than its absence) into a CorruptFileError."""
    try:
        yield
    except (CorruptFileError, *NOT_CORRUPTION):
        raise
    except READ_ERRORS as error:
        problem = " ".join(str(error).split()) or type(error).__name__
        raise corrupt(path, f"cannot be read ({problem})") from error


class ParquetWriter:
    """Write a Parquet file with checksums (see the module docstring); each `write` is one
    row group. `close` completes the file; `abort` only releases it."""

    def __init__(self, path: str | Path, schema: pa.Schema, **options) -> None:
        self.path = Path(path)
        self.file = pq.ParquetWriter(self.path, schema, write_page_checksum=True, **options)
        self.chunks_per_group = _leaf_columns(schema)
        self.row_groups = 0

    def write(self, table: pa.Table) -> None:
        self.file.write_table(table, row_group_size=max(table.num_rows, 1))
        self.row_groups += 1

    def close(self) -> None:
        """Close the file, then store the CRC-32 of each column chunk and of the footer."""
        chunks = self.row_groups * self.chunks_per_group
        self.file.add_key_value_metadata(
            {CHUNK_CRC_KEY: (UNSEALED * chunks).decode(), FOOTER_CRC_KEY: UNSEALED.decode()}
        )
        self.file.close()
        metadata = pq.read_metadata(self.path)
        with pa.OSFile(str(self.path)) as source:
            crcs = [_crc(_read_chunk(source, metadata, g, c)) for g, c in _chunks(metadata)]
            start, footer = _footer(self.path, source)
        footer = _fill(footer, CHUNK_CRC_KEY, b"".join(crcs))
        footer = _fill(footer, FOOTER_CRC_KEY, _crc(footer))
        with open(self.path, "r+b") as handle:
            handle.seek(start)
            handle.write(footer)

    def abort(self) -> None:
        """Release the file, whether complete or not (a closed writer stays closed)."""
        self.file.close()


def write_parquet(table: pa.Table, destination: str | Path, **options) -> None:
    """Write `table` atomically to `destination` as one row group, with checksums."""
    with atomic_path(destination) as temporary:
        writer = ParquetWriter(temporary, table.schema, **options)
        writer.write(table)
        writer.close()


def _leaf_columns(schema: pa.Schema | pa.DataType) -> int:
    """Parquet columns of an Arrow schema or type: one per value inside lists and structs."""
    if isinstance(schema, pa.Schema):
        return sum(_leaf_columns(field.type) for field in schema)
    if isinstance(schema, pa.StructType):
        return sum(_leaf_columns(schema.field(i).type) for i in range(schema.num_fields))
    if isinstance(schema, pa.ListType | pa.LargeListType | pa.FixedSizeListType):
        return _leaf_columns(schema.value_type)
    return 1


def _chunks(metadata: pq.FileMetaData) -> list[tuple[int, int]]:
    """(row group, column) of every column chunk, in file order."""
    groups, columns = metadata.num_row_groups, metadata.num_columns
    return [(group, column) for group in range(groups) for column in range(columns)]


def _read_chunk(source: pa.NativeFile, metadata: pq.FileMetaData, group: int, column: int) -> bytes:
    """The bytes of a column chunk: its pages, headers included."""
    chunk = metadata.row_group(group).column(column)
    start = chunk.dictionary_page_offset if chunk.has_dictionary_page else chunk.data_page_offset
    return source.read_at(chunk.total_compressed_size, start)


def _crc(data: bytes) -> bytes:
    return b"%08x" % zlib.crc32(data)


def _varint(value: int) -> bytes:
    """ULEB128, as thrift's compact protocol writes lengths."""
    encoded = bytearray()
    while value >= 0x80:
        encoded.append(value & 0x7F | 0x80)
        value >>= 7
    encoded.append(value)
    return bytes(encoded)


def _value_at(footer: bytes, key: str, length: int) -> int:
    """Offset in `footer` of the `length`-byte value of key-value pair `key` (-1: none):
    thrift compact writes field 1 (binary) the key, then field 2 (binary) the value."""
    prefix = b"\x18" + _varint(len(key)) + key.encode() + b"\x18" + _varint(length)
    found = footer.find(prefix)
    return found if found < 0 else found + len(prefix)


def _fill(footer: bytes, key: str, value: bytes) -> bytes:
    """`footer` with the placeholder value of `key` replaced by `value`."""
    at = _value_at(footer, key, len(value))
    if at < 0 or footer[at : at + len(value)].strip(b"0"):
        raise RuntimeError(f"the Parquet footer holds no placeholder for {key}")
    return footer[:at] + value + footer[at + len(value) :]


def _footer(path: str | Path, source: pa.NativeFile) -> tuple[int, bytes]:
    """(offset, bytes) of the footer of the Parquet file `path`, open as `source`: its
    metadata, their 4-byte length and the closing magic."""
    size = source.size()
    if size < 12:
        raise corrupt(path, f"not a Parquet file: only {size} bytes")
    tail = source.read_at(8, size - 8)
    if tail[4:] != PARQUET_MAGIC:
        raise corrupt(path, "not a Parquet file, or truncated: it does not end in PAR1")
    start = size - 8 - int.from_bytes(tail[:4], "little")
    if start < 4:
        raise corrupt(path, "truncated: its footer is longer than the file")
    return start, source.read_at(size - start, start)


def _footer_sealed(path: str | Path, source: pa.NativeFile) -> bool:
    """Whether the footer of `path` carries a CRC-32 (False: a file of another program);
    raise CorruptFileError if it does not match."""
    _, footer = _footer(path, source)
    at = _value_at(footer, FOOTER_CRC_KEY, len(UNSEALED))
    if at < 0:
        return False
    unsealed = footer[:at] + UNSEALED + footer[at + len(UNSEALED) :]
    if footer[at : at + len(UNSEALED)] != _crc(unsealed):
        raise corrupt(path, "footer checksum mismatch: the file changed after it was written")
    return True


class CheckedParquet:
    """A Parquet file read with its checksums verified; every error names the file.

    The footer is checked on opening, each column chunk before it is decoded. A file
    without checksums (from another program) is refused if `checksum_required`, else read
    with its page checksums verified where it has them.
    """

    def __init__(self, path: str | Path, checksum_required: bool = True) -> None:
        self.path = Path(path)
        with reading(self.path):
            self.source = pa.OSFile(str(self.path))
        try:
            with reading(self.path):
                self._open(checksum_required)
        except BaseException:
            self.source.close()
            raise

    def _open(self, checksum_required: bool) -> None:
        sealed = _footer_sealed(self.path, self.source)
        if checksum_required and not sealed:
            raise corrupt(self.path, "has no checksums (written by an older supportset)")
        self.file = pq.ParquetFile(self.source, page_checksum_verification=not sealed)
        self.metadata = self.file.metadata
        self.schema = self.file.schema_arrow
        self.chunk_crcs = self._chunk_crcs() if sealed else None

    def _chunk_crcs(self) -> dict[tuple[int, int], bytes]:
        stored = (self.metadata.metadata or {}).get(CHUNK_CRC_KEY.encode(), b"")
        chunks = _chunks(self.metadata)
        if len(stored) != len(UNSEALED) * len(chunks):
            raise corrupt(self.path, f"its {CHUNK_CRC_KEY} does not list every column chunk")
        width = len(UNSEALED)
        return {chunk: stored[i * width : (i + 1) * width] for i, chunk in enumerate(chunks)}

    def read(self, columns: Sequence[str] | None = None, row_group: int | None = None) -> pa.Table:
        """`columns` (None: all) of the whole file, or of one row group."""
        groups = range(self.metadata.num_row_groups) if row_group is None else [row_group]
        selected = None if columns is None else list(columns)
        with reading(self.path):
            self._check_chunks(groups, selected)
            if row_group is None:
                return self.file.read(columns=selected)
            return self.file.read_row_group(row_group, columns=selected)

    def _check_chunks(self, groups: Sequence[int], columns: Sequence[str] | None) -> None:
        """Compare the CRC-32 of the column chunks to be read with the stored ones."""
        if self.chunk_crcs is None:
            return
        for column in range(self.metadata.num_columns):
            name = self.metadata.schema.column(column).path.split(".")[0]
            if columns is not None and name not in columns:
                continue
            for group in groups:
                data = _read_chunk(self.source, self.metadata, group, column)
                if _crc(data) != self.chunk_crcs[group, column]:
                    raise corrupt(self.path, f"checksum mismatch in row group {group} of {name}")

    def close(self) -> None:
        self.file.close()
        self.source.close()


def create_hdf5(path: str | Path):
    """A new h5py.File in the checksummed format; create every dataset with
    `fletcher32=True` (which makes it chunked) and fixed-length strings only."""
    import h5py

    return h5py.File(path, "w", libver=HDF5_FORMAT)


class CheckedHDF5:
    """An HDF5 file whose datasets all carry Fletcher-32 checksums, which HDF5 verifies on
    every read, as it does the checksums of the metadata; every error names the file."""

    def __init__(self, path: str | Path) -> None:
        import h5py

        self.path = Path(path)
        with reading(self.path):
            self.file = h5py.File(self.path, "r")
            self.datasets = {name: self.file[name] for name in self.file}
        unchecked = [
            name for name, item in self.datasets.items() if not getattr(item, "fletcher32", 0)
        ]
        if unchecked:
            self.file.close()
            raise corrupt(self.path, f"has no checksums in {unchecked} (an older supportset)")

    def read(self, name: str, start: int | None = None, stop: int | None = None) -> np.ndarray:
        """Rows start:stop of dataset `name` (None: from the first, to the last)."""
        if name not in self.datasets:
            raise corrupt(self.path, f"has no dataset {name!r}, only {list(self.datasets)}")
        with reading(self.path):
            return self.datasets[name][start:stop]

    def attribute(self, name: str) -> bytes | None:
        """The file attribute `name`, or None without one."""
        with reading(self.path):
            return self.file.attrs.get(name)

    def close(self) -> None:
        self.file.close()
