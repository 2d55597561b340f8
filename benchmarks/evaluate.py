"""Evaluation speed and memory: exact tie-aware ranks without sorting, against argsort.

a. 5,000 x 5,000 (paper's Table 3 size of the full MSR-VTT test, 1,024-d embeddings),
   both directions: `supportset`'s exact ranks (blocked matrix products and two counts
   per query, ties averaged) against a straightforward numpy implementation that
   argsorts every row of the score matrix and reads off the positive's position, in
   one run, with the ranks compared;
b. repeated rows: a. again, with every caption's embedding also given to the next video's
   caption (a caption text shared by two videos), against a. as it is, in one run: identical
   rows are scored once and copied (see `search`), which must not cost much;
c. 100,000 x 100,000 (256-d), both directions, in a fresh process: wall time and peak
   RSS, against the memory a full score matrix and its argsort would take.

  python benchmarks/evaluate.py [--large 100000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np
from machine import peak_memory_mb


def embeddings(
    n: int, dim: int, noise: float = 12.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(n, dim) videos and one caption each: its video plus noise (a realistic, imperfect
    retrieval problem)."""
    rng = np.random.default_rng(seed)
    videos = rng.standard_normal((n, dim), dtype=np.float32)
    captions = videos + noise * rng.standard_normal((n, dim), dtype=np.float32)
    return videos, captions


def argsort_ranks(queries: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """The common recipe: full score matrix, argsort each row, position of the diagonal."""
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    g = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
    order = np.argsort(-(q @ g.T), axis=1)
    return np.where(order == np.arange(len(q))[:, None])[1] + 1.0


def our_ranks(videos: np.ndarray, captions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """supportset's exact (t2v, v2t) ranks, as `supportset evaluate` computes them."""
    from supportset.retrieval.search import ranks_both_ways

    return ranks_both_ways(videos, captions, np.arange(len(captions)))


def baseline_ranks(videos: np.ndarray, captions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return argsort_ranks(captions, videos), argsort_ranks(videos, captions)


def compare(n: int, dim: int) -> dict:
    videos, captions = embeddings(n, dim)
    timings = {}
    ranks = {}
    for name, function in (("argsort", baseline_ranks), ("supportset", our_ranks)):
        function(videos[:100], captions[:100])  # warm-up
        started = time.perf_counter()
        ranks[name] = function(videos, captions)
        timings[name] = time.perf_counter() - started
    differing = sum(int((a != b).sum()) for a, b in zip(*ranks.values(), strict=True))
    return {
        "size": f"{n} x {n}, {dim}-d, both directions",
        "argsort_s": round(timings["argsort"], 3),
        "supportset_s": round(timings["supportset"], 3),
        "speed_up": round(timings["argsort"] / timings["supportset"], 1),
        "ranks_differing": differing,  # only where scores tie: argsort counts optimistically
        "t2v_R@1": round(100 * float(np.mean(ranks["supportset"][0] <= 1)), 2),
        "t2v_MdR": float(np.median(ranks["supportset"][0])),
    }


def repeated_captions(n: int, dim: int) -> dict:
    """Time of our ranks with half the captions copies of the other half, against none."""
    videos, captions = embeddings(n, dim)
    shared = captions.copy()
    shared[1::2] = shared[0::2][: n // 2]  # captions 2i and 2i + 1: one text, two videos
    timings = {}
    for name, caption_rows in (("distinct", captions), ("repeated", shared)):
        our_ranks(videos[:100], caption_rows[:100])  # warm-up
        started = time.perf_counter()
        our_ranks(videos, caption_rows)
        timings[name] = time.perf_counter() - started
    return {
        "size": f"{n} x {n}, {dim}-d, both directions, {n - n // 2} distinct captions",
        "distinct_s": round(timings["distinct"], 3),
        "repeated_s": round(timings["repeated"], 3),
        "repeated_over_distinct": round(timings["repeated"] / timings["distinct"], 2),
    }


def large_child(n: int, dim: int) -> dict:
    videos, captions = embeddings(n, dim)
    started = time.perf_counter()
    t2v, v2t = our_ranks(videos, captions)
    return {
        "seconds": round(time.perf_counter() - started, 1),
        "t2v_MdR": float(np.median(t2v)),
        "v2t_MdR": float(np.median(v2t)),
    }


def large(n: int, dim: int) -> dict:
    command = [sys.executable, __file__, "--child", str(n), str(dim)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    peak = peak_memory_mb(process)
    embeddings_mb = 2 * n * dim * 4 / 2**20
    return {
        "size": f"{n} x {n}, {dim}-d, both directions",
        **json.loads(process.stdout.read()),
        "peak_rss_mb": round(peak),
        "embeddings_mb": round(embeddings_mb),
        "argsort_needs_mb": round(n * n * (4 + 8) / 2**20),  # float32 scores + int64 order
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=5000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--large-dim", type=int, default=256)
    args = parser.parse_args()
    print(json.dumps(compare(args.size, args.dim)), flush=True)
    print(json.dumps(repeated_captions(args.size, args.dim)), flush=True)
    print(json.dumps(large(args.large, args.large_dim)), flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        print(json.dumps(large_child(int(sys.argv[2]), int(sys.argv[3]))))
    else:
        main()
