"""HowTo100M's training input at full size: the id index, reader workers, the training
split, clips per second.

a. The id index of the text shards at 1, 3, 10 and 100% of HowTo100M's 136M captions
   (caption ids as the adapter names segments, `{video}_{k:05d}`, 11-character video
   ids, about 110 per video), in id-only Parquet shards of 68K rows (2,000 shards at
   full size). Each size is indexed in a fresh process: the build time, bytes per id
   held once built and at the peak of the build (RSS above that of a process that only
   imports the modules), and lookups per second, for `ShardIndex` (sorted NumPy bytes,
   binary search) and, up to 10%, for the dict of str -> (shard, row) that
   ShardSequences held before (rebuilt here as it was).
b. A reader worker's start-up over the 10% index: the time to fork a worker and have it
   look up 10,000 ids, and the memory it then holds privately after a garbage-collector
   pass (copy-on-write pages it had to copy from its parent).
c. Clips per second of the training loader (2 reader workers, as `supportset train`
   runs) reading 4-second clips of HowTo100M-shaped videos (6.5 min mean, 2560-d float16
   a second) with their captions' token ids (a token-id text shard, as pre-training
   reads), from a store whose pages are evicted from the page cache first
   (posix_fadvise DONTNEED), so that every read goes to the disk as it would from a
   store larger than memory. Stores: Parquet with row groups of 16 videos (the layout
   before `bytes_per_group`), Parquet with groups of at most 1 MB, and HDF5; each read
   both ways: every clip's whole video then cut (the loader before ShardSequences.steps)
   and the clip's steps alone.
d. With --manifests (synthetic HowTo100M manifests prepared by benchmarks/scale_prepare.py):
   the time and memory of FeatureBank.load and of the training split (SplitData: the ids,
   captions of each video and clip windows as Python objects) over id-only shards.

    python benchmarks/scale_loader.py [--work /tmp/scale/loader] [--sizes 0.01 0.03 0.1 1]
        [--stores parquet hdf5] [--manifests /tmp/scale/manifest_0.01 ...]
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import numpy as np
from machine import cpu_model, peak_memory_mb, tree_memory_mb

CAPTIONS = 136_000_000  # HowTo100M's narrated clips (Miech et al., ICCV 2019)
VIDEOS = 1_220_000  # its videos
VIDEOS_PER_SHARD = VIDEOS // 2000  # 610 videos, 68K captions: 2,000 text shards in all
ALPHABET = np.frombuffer(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", np.uint8
)
# (folder, suffix, Parquet row groups end at bytes_per_group)
STORES = (
    ("parquet-16-videos-a-group", ".parquet", False),
    ("parquet", ".parquet", True),
    ("hdf5", ".h5", True),
)
VIDEO_DIM, MEAN_SECONDS, SEGMENT_SECONDS, TOKENS, BATCH = 2560, 390, 4.0, 20, 64


def caption_ids(videos: int, seed: int) -> np.ndarray:
    """(N, 17) uint8: `{video}_{k:05d}` for k < the video's segment count (mean 111)."""
    rng = np.random.default_rng(seed)
    video_ids = ALPHABET[rng.integers(0, 64, (videos, 11))]
    counts = np.clip(rng.poisson(CAPTIONS / VIDEOS, videos), 1, 99_999)
    owner = np.repeat(np.arange(videos), counts)
    index = np.arange(len(owner)) - np.repeat(np.cumsum(counts) - counts, counts)
    digits = (index[:, None] // 10 ** np.arange(4, -1, -1)) % 10 + ord("0")
    underscore = np.full((len(owner), 1), ord("_"), np.uint8)
    return np.hstack([video_ids[owner], underscore, digits.astype(np.uint8)])


def write_id_shards(folder: Path, fraction: float) -> list[Path]:
    """Id-only Parquet shards (caption_id) of `fraction` of HowTo100M's captions, each
    generated on its own (memory stays that of one shard)."""
    import pyarrow as pa

    from supportset.integrity import write_parquet

    paths = sorted(folder.glob("*.parquet"))
    if paths:
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    for shard in range(max(1, round(VIDEOS * fraction / VIDEOS_PER_SHARD))):
        block = caption_ids(VIDEOS_PER_SHARD, seed=shard)
        offsets = pa.py_buffer((np.arange(len(block) + 1) * block.shape[1]).astype(np.int32))
        strings = pa.StringArray.from_buffers(len(block), offsets, pa.py_buffer(block))
        write_parquet(pa.table({"caption_id": strings}), folder / f"{shard:05d}.parquet")
    return sorted(folder.glob("*.parquet"))


def dict_index(paths: list[Path]) -> dict[str, tuple[int, int]]:
    """What ShardSequences held before: every id as a str key of (shard, row)."""
    from supportset.features.store import open_shard

    located: dict[str, tuple[int, int]] = {}
    for shard, path in enumerate(paths):
        file = open_shard(path)
        for row, row_id in enumerate(file.read(["caption_id"]).column("caption_id").to_pylist()):
            located.setdefault(row_id, (shard, row))
        file.close()
    return located


def private_mb() -> float:
    """This process's private (copied or own) memory, MB."""
    lines = Path("/proc/self/smaps_rollup").read_text().splitlines()
    fields = ("Private_Clean:", "Private_Dirty:")
    return sum(int(line.split()[1]) for line in lines if line.startswith(fields)) / 1024


def _worker(lookup, probes: list[str], started: float, queue) -> None:
    before = private_mb()
    for probe in probes:
        lookup(probe)
    ready = time.perf_counter() - started
    gc.collect()
    queue.put({"ready_s": ready, "private_mb_after_gc": private_mb() - before})


def index_child(folder: Path, kind: str, fork_worker: bool) -> dict:
    """Build one index over the shards in this process; time it, look ids up, fork."""
    from supportset.features.store import ShardIndex

    paths = sorted(folder.glob("*.parquet"))
    started = time.perf_counter()
    if kind == "arrays":
        index = ShardIndex(paths, "caption_id")
        lookup, count, sample = index.locate, len(index), index.sorted_ids
    else:
        index = dict_index(paths)
        lookup, count, sample = index.__getitem__, len(index), None
    built = time.perf_counter() - started
    gc.collect()
    resident = tree_memory_mb(os.getpid())
    rng = np.random.default_rng(0)
    if sample is not None:
        probes = [value.decode() for value in sample[rng.integers(0, count, 200_000)]]
    else:
        keys = list(index)
        probes = [keys[i] for i in rng.integers(0, count, 200_000)]
        del keys
    started = time.perf_counter()
    for probe in probes:
        lookup(probe)
    result = {
        "ids": count,
        "build_s": round(built, 1),
        "resident_mb": round(resident),
        "lookups_per_s": round(len(probes) / (time.perf_counter() - started)),
    }
    if fork_worker:
        context = multiprocessing.get_context("fork")
        queue = context.Queue()
        worker = context.Process(
            target=_worker, args=(lookup, probes[:10_000], time.perf_counter(), queue)
        )
        worker.start()
        report = queue.get(timeout=600)
        worker.join()
        result["worker"] = {key: round(value, 2) for key, value in report.items()}
    return result


def measure_index(folder: Path, kind: str, fork_worker: bool) -> dict:
    """`index_child` in a fresh process; its peak RSS above an interpreter's baseline."""
    command = [sys.executable, __file__, "--child", "index", str(folder), kind, str(fork_worker)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    peak = peak_memory_mb(process, "rss", 0.2)
    result = json.loads(process.stdout.read())
    result["peak_rss_mb"] = round(peak)
    baseline = baseline_mb()
    result["baseline_mb"] = round(baseline)
    result["bytes_per_id"] = round((result["resident_mb"] - baseline) * 2**20 / result["ids"], 1)
    result["peak_bytes_per_id"] = round((peak - baseline) * 2**20 / result["ids"], 1)
    return result


def baseline_mb() -> float:
    """Peak RSS of a process that imports what the index children import and stops."""
    code = "import numpy, pyarrow, supportset.features.store"
    return peak_memory_mb(subprocess.Popen([sys.executable, "-c", code]), "rss", 0.05)


def write_store(folder: Path, videos: int, suffix: str, group_bytes: bool) -> None:
    """HowTo100M-shaped visual shards (250 videos each) and the clips.json of one 4 s clip
    a video (video, caption, start, end). Without `group_bytes`, Parquet row groups hold 16
    videos whatever their size (the layout before `bytes_per_group`)."""
    from supportset.features.store import ShardWriter, visual_schema

    schema = visual_schema(VIDEO_DIM, "float16")
    if not group_bytes:
        schema = replace(schema, bytes_per_group=0)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    lengths = np.clip(rng.gamma(2.0, MEAN_SECONDS / 2.0, videos).astype(int), 8, 3600)
    clips = []
    for shard, start in enumerate(range(0, videos, 250)):
        with ShardWriter(folder / f"visual{shard:03d}{suffix}", schema, {}) as writer:
            for index in range(start, min(start + 250, videos)):
                steps = int(lengths[index])
                features = rng.standard_normal((steps, VIDEO_DIM), np.float32).astype(np.float16)
                writer.write((f"v{index}",), (np.arange(steps, dtype=np.float32), features))
                begin = float(rng.uniform(0, steps - SEGMENT_SECONDS))
                clips.append((f"v{index}", f"c{index}", begin, begin + SEGMENT_SECONDS))
    (folder / "clips.json").write_text(json.dumps(clips))


def write_token_ids(folder: Path, suffix: str) -> None:
    """The clips' captions as a token-id text shard, the layout pre-training reads
    (`embed-text --token-ids-only`), TOKENS ids each."""
    from supportset.features.store import ShardWriter, token_ids_schema

    path = folder / f"text{suffix}"
    if path.exists():
        return
    clips = json.loads((folder / "clips.json").read_text())
    with ShardWriter(path, token_ids_schema(), {"token_ids_only": True}) as writer:
        for video_id, caption_id, *_ in clips:
            writer.write((caption_id, video_id), (np.arange(TOKENS, dtype=np.int32),), (TOKENS,))


def evict(paths: list[Path]) -> None:
    """Drop the files' pages from the page cache: the next reads go to the disk."""
    for path in paths:
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fsync(descriptor)
            os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(descriptor)


class WholeRows(Mapping):
    """The store without its `steps` reader: every clip reads its whole video, as the
    training loader did before it read clips' steps alone."""

    def __init__(self, rows: Mapping) -> None:
        self.rows = rows

    def __getitem__(self, row_id: str):
        return self.rows[row_id]

    def __iter__(self):
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)


def loader_child(folder: Path, workers: int, batches: int, whole_rows: bool) -> dict:
    """Batches/s of the training loader over `batches` random clip batches, cold cache;
    `whole_rows`: read each clip's whole video (the loader before clip steps)."""
    from supportset.features.bank import FeatureBank
    from supportset.features.store import ShardSequences
    from supportset.train.loader import EpochPlan, batch_loader
    from supportset.train.plan import BatchKey

    visual, text = sorted(folder.glob("visual*")), sorted(folder.glob("text*"))
    evict([*visual, *text])
    started = time.perf_counter()
    bank = FeatureBank(
        ShardSequences(visual, "video_id", "features", cache_bytes=512 << 20),
        {},
        ShardSequences(text, "caption_id", "token_ids", np.int64, 64 << 20),
        timestamps=ShardSequences(visual, "video_id", "timestamps", cache_bytes=1 << 20),
    )
    if whole_rows:
        bank.videos = WholeRows(bank.videos)
    clips = json.loads((folder / "clips.json").read_text())
    order = np.random.default_rng(1).permutation(len(clips))[: batches * BATCH]
    plan = EpochPlan()
    for chunk in np.array_split(order, batches):
        rows = [clips[i] for i in chunk]
        plan.keys.append(
            BatchKey(
                tuple(row[0] for row in rows),
                tuple(row[1] for row in rows),
                tuple((row[2], row[3]) for row in rows),
                tuple(range(len(rows))),
            )
        )
    loader = batch_loader(bank, plan, 32.0, workers, text_states=False)
    iterator = iter(loader)
    next(iterator)
    first = time.perf_counter() - started
    counted = time.perf_counter()
    rest = sum(1 for _ in iterator)
    return {
        "first_batch_s": round(first, 2),
        "batches_per_s": round(rest / (time.perf_counter() - counted), 2),
    }


def measure_loader(folder: Path, workers: int, batches: int, whole_rows: bool) -> dict:
    """`loader_child` in a fresh process; the peak PSS of its process tree."""
    arguments = ["loader", str(folder), str(workers), str(batches), str(whole_rows)]
    process = subprocess.Popen(
        [sys.executable, __file__, "--child", *arguments], stdout=subprocess.PIPE, text=True
    )
    peak = peak_memory_mb(process, "pss", 0.2)
    result = json.loads(process.stdout.read())
    result["clips_per_s"] = round(result["batches_per_s"] * BATCH, 1)
    return {**result, "peak_pss_mb": round(peak)}


def write_split_store(folder: Path, manifest: Path) -> None:
    """Shards for `FeatureBank.split` over a prepared synthetic HowTo100M manifest: one
    visual shard of every video (one 1-d step each) and token-id text shards of every
    caption (one token each), 68K captions a shard; only their ids matter here."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from supportset.features.store import METADATA_KEY, ShardWriter, visual_schema
    from supportset.integrity import write_parquet

    if (folder / "done").exists():
        return
    folder.mkdir(parents=True, exist_ok=True)
    videos = pq.read_table(manifest / "videos.parquet", columns=["video_id"]).column(0)
    with ShardWriter(folder / "visual.parquet", visual_schema(1, "float16"), {}) as writer:
        for video_id in videos.to_pylist():
            writer.write((video_id,), (np.zeros(1, np.float32), np.zeros((1, 1))))
    metadata = {METADATA_KEY: json.dumps({"token_ids_only": True})}
    captions = pq.ParquetFile(manifest / "captions.parquet")
    batches = captions.iter_batches(CAPTIONS // 2000, columns=["caption_id", "video_id"])
    for shard, batch in enumerate(batches):
        ones = pa.array(np.ones(batch.num_rows, np.int32))
        offsets = pa.array(np.arange(batch.num_rows + 1, dtype=np.int32))
        table = pa.table(
            {
                "caption_id": batch.column(0),
                "video_id": batch.column(1),
                "token_ids": pa.ListArray.from_arrays(offsets, ones),
                "n_tokens": pa.array(np.ones(batch.num_rows, np.int64)),
            }
        ).replace_schema_metadata(metadata)
        write_parquet(table, folder / f"text{shard:05d}.parquet")
    (folder / "done").touch()


def split_child(folder: Path, manifest: Path) -> dict:
    """Time and memory of FeatureBank.load and of the training split's SplitData."""
    from supportset.features.bank import FeatureBank

    text = sorted(folder.glob("text*.parquet"))
    started, before = time.perf_counter(), tree_memory_mb(os.getpid())
    bank = FeatureBank.load([folder / "visual.parquet"], text)
    loaded, after_load = time.perf_counter(), tree_memory_mb(os.getpid())
    split = bank.split(manifest / "videos.parquet", manifest / "captions.parquet", "train")
    gc.collect()
    return {
        "captions": len(split.caption_ids),
        "load_s": round(loaded - started, 1),
        "load_mb": round(after_load - before),
        "split_s": round(time.perf_counter() - loaded, 1),
        "split_mb": round(tree_memory_mb(os.getpid()) - after_load),
    }


def measure_split(folder: Path, manifest: Path) -> dict:
    """`split_child` in a fresh process, with bytes per caption of the SplitData."""
    write_split_store(folder, manifest)
    process = subprocess.Popen(
        [sys.executable, __file__, "--child", "split", str(folder), str(manifest)],
        stdout=subprocess.PIPE,
        text=True,
    )
    peak = peak_memory_mb(process, "rss", 0.2)
    result = json.loads(process.stdout.read())
    result["split_bytes_per_caption"] = round(result["split_mb"] * 2**20 / result["captions"])
    return {**result, "peak_rss_mb": round(peak)}


def required_clips_per_s() -> float:
    """Clips per second each GPU consumed in the paper's pre-training: 20 epochs of 1.2M
    videos, one clip each (training.epoch_unit videos), in 160 V100-hours (appendix 6.1:
    "Pre-training on 1.2 million HowTo100M videos takes around 160 GPU hours (NVIDIA V100)
    for 20 epochs")."""
    return round(20 * 1.2e6 / (160 * 3600), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/scale/loader"))
    parser.add_argument("--sizes", type=float, nargs="*", default=[0.01, 0.03, 0.1, 1.0])
    parser.add_argument("--dict-up-to", type=float, default=0.1)
    parser.add_argument(
        "--manifests",
        type=Path,
        nargs="*",
        default=[],
        help="prepared synthetic HowTo100M "
        "manifest folders (benchmarks/scale_prepare.py) to measure FeatureBank.split on",
    )
    parser.add_argument("--store-videos", type=int, default=2000)
    parser.add_argument(
        "--stores", nargs="*", default=[store[0] for store in STORES], help="loader stores"
    )
    parser.add_argument("--batches", type=int, default=20)
    args = parser.parse_args()
    results: dict = {"machine": f"{cpu_model()}, {os.cpu_count()} cores"}
    for fraction in args.sizes:
        folder = args.work / f"ids-{fraction:g}"
        write_id_shards(folder, fraction)
        fork = fraction == args.dict_up_to
        rows = {"arrays": measure_index(folder, "arrays", fork)}
        if fraction <= args.dict_up_to:
            rows["dict"] = measure_index(folder, "dict", fork)
        results[f"index {fraction:g}"] = rows
        print(json.dumps({f"index {fraction:g}": rows}), flush=True)
    for manifest in args.manifests:
        row = measure_split(args.work / f"split-{manifest.name}", manifest)
        results[f"split {manifest.name}"] = row
        print(json.dumps({f"split {manifest.name}": row}), flush=True)
    results["required_clips_per_s_per_gpu"] = required_clips_per_s()
    for name, suffix, group_bytes in (store for store in STORES if store[0] in args.stores):
        folder = args.work / name
        if not (folder / "clips.json").exists():
            write_store(folder, args.store_videos, suffix, group_bytes)
        write_token_ids(folder, suffix)
        store_mb = sum(path.stat().st_size for path in folder.iterdir()) / 2**20
        rows = {"store_mb": round(store_mb)}
        for whole_rows in (True, False):
            rows["whole videos" if whole_rows else "clip steps"] = measure_loader(
                folder, 2, args.batches, whole_rows
            )
        results[f"loader {name}"] = rows
        print(json.dumps({f"loader {name}": rows}), flush=True)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    if sys.argv[1:3] == ["--child", "index"]:
        folder, kind, fork = sys.argv[3:]
        print(json.dumps(index_child(Path(folder), kind, fork == "True")))
    elif sys.argv[1:3] == ["--child", "split"]:
        folder, manifest = sys.argv[3:]
        print(json.dumps(split_child(Path(folder), Path(manifest))))
    elif sys.argv[1:3] == ["--child", "loader"]:
        folder, workers, batches, whole = sys.argv[3:]
        print(json.dumps(loader_child(Path(folder), int(workers), int(batches), whole == "True")))
    else:
        main()
