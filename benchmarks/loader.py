"""Streaming training data: throughput and memory of reading batches from the shards.

A synthetic store of paper-shaped features (32 s x 2560-d float16 per video, 20 x 768-d
T5 states per caption) is written as Parquet (64-row groups) and as HDF5. Each
measurement runs in its own process and reads one epoch of random 64-pair batches through
the training loader, with the row-group cache smaller than the store:

  a. pairs/s of the loader (0 and 2 worker processes) against pairs/s of a paper-size
     training step (triplet only, the fastest objective) measured in the same run;
  b. peak memory (PSS) of the whole process tree when streaming a store of N and of 2N videos,
     against holding the same features in memory (as the trainer did before streaming).

    python benchmarks/loader.py [--videos 1500] [--work /tmp/loader-bench]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from machine import cpu_model, peak_memory_mb

SECONDS, VIDEO_DIM, TOKENS, TEXT_DIM, BATCH = 32, 2560, 20, 768, 64


def write_store(folder: Path, videos: int, suffix: str) -> None:
    from supportset.features.store import ShardWriter, text_schema, visual_schema

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    per_shard = 500
    for shard, start in enumerate(range(0, videos, per_shard)):
        path = folder / f"visual{shard:03d}{suffix}"
        with ShardWriter(path, visual_schema(VIDEO_DIM, "float16"), {}) as writer:
            for index in range(start, min(start + per_shard, videos)):
                features = rng.normal(size=(SECONDS, VIDEO_DIM)).astype(np.float16)
                writer.write((f"v{index}",), (np.arange(SECONDS, dtype=np.float32), features))
    with ShardWriter(folder / f"text{suffix}", text_schema(TEXT_DIM, "float16"), {}) as writer:
        for index in range(videos):
            states = rng.normal(size=(TOKENS, TEXT_DIM)).astype(np.float16)
            ids = np.arange(TOKENS, dtype=np.int32)
            writer.write((f"c{index}", f"v{index}"), (ids, states), (TOKENS,))


def read_epoch(folder: Path, mode: str, workers: int, cache_mb: int) -> dict:
    """One epoch of random batches through the training loader; runs in a child process."""
    from supportset.features.bank import FeatureBank
    from supportset.train.loader import EpochPlan, batch_loader

    visual, text = sorted(folder.glob("visual*")), sorted(folder.glob("text*"))
    bank = FeatureBank.load(visual, text, cache_mb)
    if mode == "memory":
        bank = FeatureBank(dict(bank.videos), dict(bank.texts), dict(bank.token_ids))
    order = np.random.default_rng(1).permutation(len(bank.videos))
    plan = EpochPlan()
    plan.keys = [
        (tuple(f"v{i}" for i in chunk), tuple(f"c{i}" for i in chunk), None)
        for chunk in np.array_split(order, len(order) // BATCH)
    ]
    loader = batch_loader(bank, plan, SECONDS, workers)
    started = time.perf_counter()
    pairs = sum(len(batch.video) for batch in loader)
    return {"pairs_per_s": round(pairs / (time.perf_counter() - started), 1)}


def measure(folder: Path, mode: str, workers: int, cache_mb: int) -> dict:
    """Run `read_epoch` in a fresh process; add the peak RSS of its process tree."""
    arguments = [str(folder), mode, str(workers), str(cache_mb)]
    command = [sys.executable, __file__, "--child", *arguments]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    peak = peak_memory_mb(process, "pss", 0.05)
    return {**json.loads(process.stdout.read()), "peak_pss_mb": round(peak)}


def training_pairs_per_s(steps: int = 2) -> float:
    """Pairs/s of a paper-size triplet-only training step (see benchmarks/train.py)."""
    sys.path.insert(0, str(Path(__file__).parent))
    import torch
    from train import VARIANTS, Shapes, pairs_per_second, random_batch

    shapes = Shapes(batch_size=BATCH)
    batch = random_batch(shapes, torch.device("cpu"))
    return round(pairs_per_second(VARIANTS["triplet_frozen_t5"], shapes, batch, steps), 1)


def machine_line() -> str:
    import torch

    return f"{cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=1500)
    parser.add_argument("--cache-mb", type=int, default=128)
    parser.add_argument("--work", type=Path, default=Path("/tmp/loader-bench"))
    args = parser.parse_args()
    results: dict = {"machine": machine_line(), "videos": args.videos, "cache_mb": args.cache_mb}
    for suffix in (".parquet", ".h5"):
        for videos in (args.videos, 2 * args.videos):
            folder = args.work / f"{videos}{suffix}"
            if not folder.exists():
                write_store(folder, videos, suffix)
            store_mb = sum(p.stat().st_size for p in folder.iterdir()) / 2**20
            rows = {"store_mb": round(store_mb)}
            for workers in (0, 2):
                rows[f"stream_{workers}_workers"] = measure(
                    folder, "stream", workers, args.cache_mb
                )
            rows["memory_0_workers"] = measure(folder, "memory", 0, args.cache_mb)
            results[f"{videos} videos {suffix}"] = rows
            print(json.dumps({f"{videos} videos {suffix}": rows}), flush=True)
    results["training_step_pairs_per_s"] = training_pairs_per_s()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        folder, mode, workers, cache_mb = sys.argv[2:]
        print(json.dumps(read_epoch(Path(folder), mode, int(workers), int(cache_mb))))
    else:
        main()
