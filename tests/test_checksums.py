"""Checksums of shards and embedding files: a changed, truncated or foreign file is refused
with an error naming it, through the readers that training and `supportset evaluate` use."""

from __future__ import annotations

import contextlib
import gc
import itertools
import multiprocessing
import re
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from supportset.cli import main
from supportset.features.bank import FeatureBank
from supportset.features.store import (
    ShardSequences,
    ShardWriter,
    read_metadata,
    text_schema,
    visual_schema,
    write_rejects,
)
from supportset.integrity import CheckedParquet, CorruptFileError
from supportset.retrieval.embeddings import (
    read_caption_embeddings,
    read_video_embeddings,
    write_caption_embeddings,
    write_video_embeddings,
)
from supportset.train.loader import EpochPlan, batch_loader
from supportset.train.plan import BatchKey

SUFFIXES = [".parquet", ".h5"]
DTYPES = ["float16", "float32"]
METADATA = {"stage": "extract_visual", "settings": {"fps": 1.0}}


def write_videos(path: Path, dtype: str, count: int, dim: int, steps: tuple[int, int]) -> dict:
    """A visual shard of `count` videos of steps[0]..steps[1] steps of dim-d features, with
    the production writer; returns what a reader must get back: id -> (timestamps, features
    in `dtype`), and the metadata."""
    rng = np.random.default_rng(0)
    written = {}
    with ShardWriter(path, visual_schema(dim, dtype), {**METADATA, "dim": dim}) as writer:
        for index in range(count):
            length = int(rng.integers(steps[0], steps[1] + 1))
            times = np.arange(length, dtype=np.float32) + 0.5
            features = rng.normal(size=(length, dim)).astype(dtype)
            writer.write((f"video{index:04d}",), (times, features))
            written[f"video{index:04d}"] = (times, features)
    return {"rows": written, "metadata": {**METADATA, "dim": dim}}


def read_as_training_does(path: Path, dtype: str) -> dict:
    """Every value training reads from a visual shard (ShardSequences, through its row-group
    cache, in the stored dtype), and the metadata."""
    features = ShardSequences([path], "video_id", "features", dtype, cache_bytes=1 << 20)
    times = ShardSequences([path], "video_id", "timestamps", np.float32, cache_bytes=1 << 20)
    rows = {video_id: (times[video_id], features[video_id]) for video_id in features}
    return {"rows": rows, "metadata": read_metadata(path)}


def identical(got, expected) -> bool:
    """Equal, arrays bit for bit (a NaN where a number was is a difference)."""
    if isinstance(expected, np.ndarray):
        return (
            isinstance(got, np.ndarray)
            and (got.dtype, got.shape) == (expected.dtype, expected.shape)
            and got.tobytes() == expected.tobytes()
        )
    if isinstance(expected, dict):
        return got.keys() == expected.keys() and all(identical(got[k], expected[k]) for k in got)
    if isinstance(expected, tuple):
        return len(got) == len(expected) and all(map(identical, got, expected))
    return got == expected


@contextlib.contextmanager
def changed_byte(path: Path, position: int) -> None:
    """Change the byte at `position` (all bits at even positions, the lowest bit at odd
    ones) for the duration of the block."""
    with open(path, "r+b") as handle:
        handle.seek(position)
        original = handle.read(1)[0]
        handle.seek(position)
        handle.write(bytes([original ^ (0x01 if position % 2 else 0xFF)]))
    try:
        yield
    finally:
        with open(path, "r+b") as handle:
            handle.seek(position)
            handle.write(bytes([original]))


def naming(path: Path) -> str:
    """A pattern for an error message that starts with `path`."""
    return f"^{re.escape(str(path))}: "


def assert_names_file(error: BaseException, path: Path, what: str = "") -> None:
    message = str(error)
    assert message.startswith(f"{path}: ") and "delete it and rerun" in message, (what, message)


def outcomes(path: Path, positions, read, expected) -> dict[str, int]:
    """Change each byte of `positions` in turn and read the file with `read`: each copy
    must be refused naming the file, or read back identical to `expected`."""
    assert identical(read(path), expected)  # the file as written reads back
    counts = {"refused": 0, "identical": 0}
    for position in positions:
        with changed_byte(path, position):
            try:
                got = read(path)
            except CorruptFileError as error:
                assert_names_file(error, path)
                counts["refused"] += 1
                continue
            assert identical(got, expected), f"byte {position} changed the data silently"
            counts["identical"] += 1
        # an HDF5 file still open would be shared by the next read, with its caches (other
        # tests' files, e.g. of an in-process `supportset train`, may still be open)
        open_files = h5py.h5f.get_obj_ids(types=h5py.h5f.OBJ_FILE)
        assert Path(path).resolve() not in {Path(f.name.decode()).resolve() for f in open_files}
    return counts


def payload(path: Path) -> list[range]:
    """The byte ranges of the data, each covered by one checksum: Parquet column chunks
    (pages and their headers), HDF5 dataset chunks; the rest of a file is its structure."""
    if path.suffix == ".h5":
        with h5py.File(path, "r") as handle:
            chunks = [
                handle[name].id.get_chunk_info(index)
                for name in handle
                for index in range(handle[name].id.get_num_chunks())
            ]
        return [range(chunk.byte_offset, chunk.byte_offset + chunk.size) for chunk in chunks]
    metadata = pq.read_metadata(path)
    ranges = []
    for group in range(metadata.num_row_groups):
        for column in range(metadata.num_columns):
            chunk = metadata.row_group(group).column(column)
            first_page = chunk.dictionary_page_offset or chunk.data_page_offset
            ranges.append(range(first_page, first_page + chunk.total_compressed_size))
    return ranges


def positions_to_change(path: Path, structure_step: int, payload_count: int) -> list[int]:
    """Every `structure_step`-th byte of the file's structure (Parquet: magic and footer;
    HDF5: superblock, object headers, chunk indexes) and `payload_count` bytes spread over
    its payload, headers of Parquet pages included."""
    data = sorted(itertools.chain.from_iterable(payload(path)))
    in_data = set(data)
    structure = [p for p in range(path.stat().st_size) if p not in in_data]
    return sorted({*structure[::structure_step], *data[:: max(1, len(data) // payload_count)]})


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("suffix", SUFFIXES)
def test_changed_bytes_anywhere_in_a_shard_are_refused(tmp_path, suffix, dtype):
    path = tmp_path / f"00000{suffix}"
    written = write_videos(path, dtype, count=36, dim=2560, steps=(5, 15))  # 3 row groups
    structure_step = 1 if suffix == ".parquet" else 13  # HDF5: ~4 KB, with unused space
    positions = positions_to_change(path, structure_step, payload_count=60)

    counts = outcomes(path, positions, lambda p: read_as_training_does(p, dtype), written)

    assert counts["refused"] > 0.8 * len(positions), counts


def varint_end(data: bytes, position: int) -> int:
    """Where the ULEB128 varint starting at `position` ends."""
    while data[position] & 0x80:
        position += 1
    return position + 1


def encoding_offset(data: bytes, header: int) -> int:
    """Offset of the encoding of the data page whose header starts at `header`, in thrift
    compact: page type, sizes and CRC (each 0x15 then a varint), the data page header
    (0x1c), its value count (0x15, varint), then 0x15 and the encoding."""
    position = header
    for _ in range(4):
        position = varint_end(data, position + 1)
    return varint_end(data, position + 2) + 1


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_page_header_changed_to_another_encoding_is_refused(tmp_path, dtype):
    """Page checksums do not cover page headers: decoding a page of PLAIN floats as
    BYTE_STREAM_SPLIT scrambles every value, without an error from pyarrow."""
    path = tmp_path / "s.parquet"
    write_videos(path, dtype, count=4, dim=64, steps=(4, 8))
    original = pq.read_table(path).column("features")
    features = pq.read_metadata(path).row_group(0).column(2)
    data = bytearray(path.read_bytes())
    at = encoding_offset(data, features.data_page_offset)
    assert data[at] == 0x00  # PLAIN (zigzag 0)
    data[at] = 0x12  # BYTE_STREAM_SPLIT (zigzag 9)
    path.write_bytes(data)
    scrambled = pq.read_table(path, page_checksum_verification=True).column("features")
    assert len(scrambled) == len(original) and not scrambled.equals(original)

    with pytest.raises(CorruptFileError, match=naming(path) + "checksum mismatch"):
        read_as_training_does(path, dtype)


def overwritten_mid_file(data: bytes, length: int = 64) -> bytes:
    middle = len(data) // 2
    return data[:middle] + np.random.default_rng(1).bytes(length) + data[middle + length :]


def overwrite_mid_file(path: Path, length: int = 64) -> None:
    path.write_bytes(overwritten_mid_file(path.read_bytes(), length))


def write_store(folder: Path, suffix: str) -> tuple[Path, Path]:
    """A visual and a text shard of 8 videos, one caption each."""
    visual, text = folder / f"visual{suffix}", folder / f"text{suffix}"
    write_videos(visual, "float16", count=8, dim=512, steps=(20, 30))
    with ShardWriter(text, text_schema(16, "float16"), {"model": "m"}) as writer:
        for index in range(8):
            tokens = np.arange(5, dtype=np.int32)
            states = np.ones((5, 16), np.float32)
            writer.write((f"caption{index}", f"video{index:04d}"), (tokens, states), (5,))
    return visual, text


def test_a_shard_overwritten_mid_file_stops_training_loader_workers(tmp_path):
    visual, text = write_store(tmp_path, ".parquet")  # HDF5: see the forked reader's test
    overwrite_mid_file(visual)
    bank = FeatureBank.load([visual], [text], cache_mb=16)
    plan = EpochPlan()
    videos = tuple(f"video{i:04d}" for i in range(8))
    plan.keys = [BatchKey(videos, tuple(f"caption{i}" for i in range(8)), None, tuple(range(8)))]
    batches = iter(batch_loader(bank, plan, max_video_seconds=30, workers=2))
    try:
        next(batches)
        message = "read without error"
    except CorruptFileError as error:  # raised again in this process, naming the file
        message = str(error)
    del batches  # stop its workers now, not in a later forked process
    gc.collect()
    assert re.fullmatch(re.escape(f"{visual}: ") + ".*delete it and rerun to rebuild it", message)


def _read_in_child(store: ShardSequences, video_id: str, queue) -> None:
    try:
        store[video_id]
    except CorruptFileError as error:
        queue.put(str(error))
    else:
        queue.put("read without error")


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_forked_reader_refuses_a_shard_changed_after_the_fork(tmp_path, suffix):
    visual, _ = write_store(tmp_path, suffix)
    store = ShardSequences([visual], "video_id", "features")  # the ids are read
    overwrite_mid_file(visual)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_read_in_child, args=(store, "video0004", queue))
    child.start()
    message = queue.get(timeout=60)
    child.join(timeout=60)
    assert message.startswith(f"{visual}: ") and "delete it and rerun" in message, message


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_text_shards_are_checked_for_every_column_training_reads(tmp_path, suffix):
    _, text = write_store(tmp_path, suffix)
    overwrite_mid_file(text, length=text.stat().st_size // 3)
    with pytest.raises(CorruptFileError, match=naming(text)):
        for column, dtype in (("embeddings", np.float32), ("token_ids", np.int64)):
            store = ShardSequences([text], "caption_id", column, dtype)
            for caption_id in store:
                store[caption_id]


def damaged_copies(path: Path) -> dict[str, bytes]:
    """Truncated at several lengths, emptied, replaced by garbage or by text."""
    data = path.read_bytes()
    lengths = [1, 4, 8, 12, 100, len(data) // 3, len(data) // 2, len(data) - 9, len(data) - 1]
    copies = {f"truncated to {n} bytes": data[:n] for n in lengths}
    copies["empty"] = b""
    copies["garbage"] = np.random.default_rng(0).bytes(4096)
    copies["text"] = b"video_id,features\nv0,1 2 3\n"
    return copies


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_truncated_empty_and_garbage_shards_are_refused(tmp_path, suffix):
    path = tmp_path / f"00000{suffix}"
    write_videos(path, "float16", count=20, dim=64, steps=(1, 8))
    for index, (what, content) in enumerate(damaged_copies(path).items()):
        damaged = tmp_path / f"damaged{index}{suffix}"  # a new file: HDF5 shares open ones
        damaged.write_bytes(content)
        for read in (read_metadata, lambda p: read_as_training_does(p, "float16")):
            with pytest.raises(CorruptFileError) as caught:
                read(damaged)
            assert_names_file(caught.value, damaged, what)


def test_a_file_of_the_other_format_is_refused(tmp_path):
    write_videos(tmp_path / "a.parquet", "float16", count=3, dim=4, steps=(1, 2))
    write_videos(tmp_path / "b.h5", "float16", count=3, dim=4, steps=(1, 2))
    (tmp_path / "a.parquet").rename(tmp_path / "parquet.h5")
    (tmp_path / "b.h5").rename(tmp_path / "hdf5.parquet")
    for path in (tmp_path / "parquet.h5", tmp_path / "hdf5.parquet"):
        with pytest.raises(CorruptFileError, match=naming(path)):
            ShardSequences([path], "video_id", "features")


def test_a_missing_shard_is_not_called_corrupt(tmp_path):
    for path in (tmp_path / "none.parquet", tmp_path / "none.h5"):
        with pytest.raises(FileNotFoundError, match="none"):
            read_metadata(path)


def test_shards_written_without_checksums_are_refused(tmp_path):
    parquet, hdf5 = tmp_path / "old.parquet", tmp_path / "old.h5"
    features = pa.array([[[1.0, 2.0]]], pa.list_(pa.list_(pa.float16(), 2)))
    table = pa.table({"video_id": ["v0"], "timestamps": [[0.0]], "features": features})
    pq.write_table(table, parquet)  # as supportset wrote shards before checksums
    with h5py.File(hdf5, "w") as handle:
        handle.attrs["supportset"] = "{}"
        handle.create_dataset("video_id", data=["v0"], dtype=h5py.string_dtype())
        handle.create_dataset("offsets", data=np.array([0, 1]))
        handle.create_dataset("features", data=np.ones((1, 2), np.float16))
    for path in (parquet, hdf5):
        with pytest.raises(CorruptFileError, match=naming(path) + ".*no checksums.*delete it"):
            ShardSequences([path], "video_id", "features")


def test_rejects_tables_carry_checksums(tmp_path):
    path = tmp_path / "r.parquet"
    write_rejects(path, "video_id", [("v1", "no such file"), ("v2", "no frame")])
    assert CheckedParquet(path).read().to_pylist()[1] == {"video_id": "v2", "reason": "no frame"}
    overwrite_mid_file(path, length=4)
    with pytest.raises(CorruptFileError, match=naming(path)):
        CheckedParquet(path).read()


def test_other_parquet_readers_can_verify_the_page_checksums(tmp_path):
    shard, embeddings = tmp_path / "s.parquet", tmp_path / "v.parquet"
    write_videos(shard, "float16", count=4, dim=64, steps=(4, 8))
    write_video_embeddings(embeddings, ["a", "b"], np.ones((2, 64), np.float32))
    for path in (shard, embeddings):
        last_page_byte = max(payload(path), key=len)[-1]
        with (
            changed_byte(path, last_page_byte),
            pytest.raises(OSError, match="CRC checksum verification failed"),
        ):
            pq.read_table(path, page_checksum_verification=True)


def write_embeddings(folder: Path) -> tuple[Path, Path, dict]:
    rng = np.random.default_rng(0)
    videos, captions = folder / "test_videos.parquet", folder / "test_captions.parquet"
    video_emb = rng.normal(size=(40, 256)).astype(np.float32)
    video_ids = [f"video{i}" for i in range(40)]
    write_video_embeddings(videos, video_ids, video_emb)
    write_caption_embeddings(captions, [f"c{i}" for i in range(40)], video_ids, video_emb)
    return videos, captions, {"ids": video_ids, "embeddings": video_emb}


def read_videos_file(path: Path) -> dict:
    ids, emb = read_video_embeddings(path)
    return {"ids": ids, "embeddings": emb}


def test_changed_bytes_anywhere_in_an_embeddings_file_are_refused(tmp_path):
    videos, _, written = write_embeddings(tmp_path)
    positions = positions_to_change(videos, structure_step=1, payload_count=200)
    counts = outcomes(videos, positions, read_videos_file, written)
    assert counts["refused"] > 0.8 * len(positions), counts


def test_embeddings_from_other_programs_need_no_checksums(tmp_path):
    path = tmp_path / "v.parquet"
    column = pa.array([[1.0, 0.0], [0.0, 1.0]], pa.list_(pa.float32()))
    pq.write_table(pa.table({"video_id": ["a", "b"], "embedding": column}), path)
    assert read_video_embeddings(path)[0] == ["a", "b"]


def evaluate(videos: Path, captions: Path, out: Path) -> int:
    return main(["evaluate", "--videos", str(videos), "--captions", str(captions),
                 "--out", str(out)])  # fmt: skip


@pytest.mark.parametrize("which", ["videos", "captions"])
def test_evaluate_names_a_damaged_embeddings_file(tmp_path, capsys, which):
    videos, captions, _ = write_embeddings(tmp_path)
    assert evaluate(videos, captions, tmp_path / "metrics.json") == 0
    damaged = videos if which == "videos" else captions
    copies = {"overwritten mid-file": overwritten_mid_file(damaged.read_bytes(), 16)}
    for what, content in {**copies, **damaged_copies(damaged)}.items():
        damaged.write_bytes(content)
        capsys.readouterr()
        assert evaluate(videos, captions, tmp_path / "metrics.json") == 1, what
        error = capsys.readouterr().err
        assert f"error: {damaged}: " in error and "delete it and rerun" in error, (what, error)


def test_caption_embeddings_are_checked_on_read(tmp_path):
    _, captions, _ = write_embeddings(tmp_path)
    overwrite_mid_file(captions, length=8)
    with pytest.raises(CorruptFileError, match=naming(captions)):
        read_caption_embeddings(captions)
