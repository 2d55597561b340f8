"""What checksums cost: writing and reading a paper-shaped visual shard with and without.

A shard of 500 videos x 30 s x 2560-d float16 (77 MB of features) is written with the
production writer (checksums: Parquet page, column-chunk and footer CRC-32s; HDF5 1.10
format with Fletcher-32 on chunks of 16 steps) and, as "plain", with plain pyarrow / h5py
calls and the layout used before checksums (HDF5: chunks of 64 steps), in both formats.
Reads are what training does beyond its cache, in a random order: Parquet decodes one row
group's features (16 videos) at a time, HDF5 slices one video's steps; "checked" goes
through supportset.integrity's readers. For Parquet, pyarrow's own page checksum verification
(on the checked file) is timed as well. Files are in the page cache. Times are the best
of `--repeats`, taken in turn; ratios are checked / plain from the same run.

  python benchmarks/checksums.py [--videos 500] [--work /tmp/checksums-bench]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from machine import cpu_model

from supportset.features.store import (
    METADATA_KEY,
    ShardWriter,
    _arrow_table,
    check_storable,
    visual_schema,
)
from supportset.integrity import CheckedHDF5, CheckedParquet

SECONDS, DIM, DTYPE = 30, 2560, "float16"


def videos(count: int) -> list[tuple[tuple[str], tuple[np.ndarray, np.ndarray]]]:
    """(ids, (timestamps, features)) of `count` paper-shaped videos."""
    rng = np.random.default_rng(0)
    times = np.arange(SECONDS, dtype=np.float32)
    return [
        ((f"v{index:05d}",), (times, rng.normal(size=(SECONDS, DIM)).astype(DTYPE)))
        for index in range(count)
    ]


def write_checked(path: Path, rows: list) -> None:
    with ShardWriter(path, visual_schema(DIM, DTYPE), {"stage": "benchmark"}) as writer:
        for ids, sequences in rows:
            writer.write(ids, sequences)


def write_plain_parquet(path: Path, rows: list) -> None:
    """The production layout (16-video row groups, dictionary ids only) and value checks,
    no checksums."""
    schema = visual_schema(DIM, DTYPE)
    for ids, (_, features) in rows:
        check_storable(ids[0], features, DTYPE)
    writer = None
    for start in range(0, len(rows), schema.rows_per_group):
        group = [
            (ids, sequences, ()) for ids, sequences in rows[start : start + schema.rows_per_group]
        ]
        table = _arrow_table(schema, group).replace_schema_metadata({METADATA_KEY: "{}"})
        writer = writer or pq.ParquetWriter(path, table.schema, use_dictionary=["video_id"])
        writer.write_table(table)
    writer.close()


def write_plain_hdf5(path: Path, rows: list) -> None:
    """The layout before checksums (chunks of 64 steps, default file format, no filter,
    variable-length ids), with the production's value checks."""
    for ids, (_, features) in rows:
        check_storable(ids[0], features, DTYPE)
    lengths = [len(times) for _, (times, _) in rows]
    with h5py.File(path, "w") as handle:
        handle.attrs[METADATA_KEY] = "{}"
        ids = np.array([ids[0] for ids, _ in rows], object)
        handle.create_dataset("video_id", data=ids, dtype=h5py.string_dtype(), maxshape=(None,))
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        handle.create_dataset("offsets", data=offsets, maxshape=(None,))
        times = np.concatenate([times for _, (times, _) in rows])
        handle.create_dataset("timestamps", data=times, maxshape=(None,), chunks=(4096,))
        features = handle.create_dataset(
            "features", (0, DIM), DTYPE, maxshape=(None, DIM), chunks=(64, DIM)
        )
        for start in range(0, len(rows), 16):  # appended 16 videos at a time, as the writer
            values = np.concatenate([values for _, (_, values) in rows[start : start + 16]])
            features.resize(features.shape[0] + len(values), axis=0)
            features[-len(values) :] = values


def best_times(functions: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """The best of `repeats` wall times of each function, run in turn in each repeat (so
    that a busy spell of the machine touches them all)."""
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            started = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - started)
    return {name: min(values) for name, values in times.items()}


def read_parquet_groups(path: Path, mode: str, order: np.ndarray) -> None:
    """Every row group's features in `order`: "plain", "pages" (pyarrow verifies page
    checksums) or "checked" (supportset's reader)."""
    if mode == "checked":
        file = CheckedParquet(path)
        for group in order:
            file.read(["features"], row_group=int(group))
        file.close()
        return
    file = pq.ParquetFile(path, page_checksum_verification=mode == "pages")
    for group in order:
        file.read_row_group(int(group), columns=["features"])


def read_hdf5_videos(path: Path, checked: bool, order: np.ndarray) -> None:
    """Every video's features by slicing its steps, in `order`."""
    if checked:
        file = CheckedHDF5(path)
        offsets = file.read("offsets")
        for video in order:
            file.read("features", offsets[video], offsets[video + 1])
        file.close()
        return
    with h5py.File(path, "r") as handle:
        offsets, features = handle["offsets"][:], handle["features"]
        for video in order:
            features[offsets[video] : offsets[video + 1]]


def row(what: str, plain: float, checked: float) -> str:
    return f"| {what} | {plain:.3f} | {checked:.3f} | {checked / plain:.2f} |"


def write_rows(work: Path, rows: list, repeats: int) -> list[str]:
    lines = []
    for suffix, write_plain in (("parquet", write_plain_parquet), ("h5", write_plain_hdf5)):
        plain, checked = work / f"plain.{suffix}", work / f"checked.{suffix}"
        timed = best_times(
            {"plain": lambda p=plain, w=write_plain: w(p, rows),
             "checked": lambda p=checked: write_checked(p, rows)},
            repeats,
        )  # fmt: skip
        lines.append(row(f"write, {suffix}", timed["plain"], timed["checked"]))
    return lines


def read_rows(work: Path, videos: int, repeats: int) -> list[str]:
    rng = np.random.default_rng(1)
    groups = rng.permutation(pq.ParquetFile(work / "plain.parquet").num_row_groups)
    modes = {"plain": "plain.parquet", "pages": "checked.parquet", "checked": "checked.parquet"}
    parquet = best_times(
        {mode: lambda m=mode, f=work / name: read_parquet_groups(f, m, groups)
         for mode, name in modes.items()},
        repeats,
    )  # fmt: skip
    order = rng.permutation(videos)
    hdf5 = best_times(
        {"plain": lambda: read_hdf5_videos(work / "plain.h5", False, order),
         "checked": lambda: read_hdf5_videos(work / "checked.h5", True, order)},
        repeats,
    )  # fmt: skip
    return [
        row("read row groups, parquet", parquet["plain"], parquet["checked"]),
        row("read row groups, parquet (pyarrow page checks)", parquet["plain"], parquet["pages"]),
        row("read videos, h5", hdf5["plain"], hdf5["checked"]),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--work", type=Path, default=Path("/tmp/checksums-bench"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    lines = [
        f"{cpu_model()}, {os.cpu_count()} cores; pyarrow {pa.__version__}, h5py "
        f"{h5py.__version__} (HDF5 {h5py.version.hdf5_version}); {args.videos} videos x "
        f"{SECONDS} s x {DIM} {DTYPE}",
        "",
        "| operation | plain (s) | checked (s) | ratio |",
        "|---|---:|---:|---:|",
        *write_rows(args.work, videos(args.videos), args.repeats),
        *read_rows(args.work, args.videos, args.repeats),
    ]
    sizes = [
        f"{path.name} {path.stat().st_size / 2**20:.1f}" for path in sorted(args.work.iterdir())
    ]
    print("\n".join([*lines, "", "MB on disk: " + ", ".join(sizes)]))


if __name__ == "__main__":
    main()
