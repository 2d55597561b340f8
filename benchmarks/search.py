"""Search speed at 100,000 videos: exact (flat) against HNSW FAISS indices, and the whole
`supportset search` path, in one run.

Videos are synthetic unit vectors of d = 1024 (the paper's joint space: "We set the
embedding dimension to 1024", appendix 6.1) in 1,000 clusters, each its cluster's centre
plus as much noise again, so that a query's ten nearest videos are near-ties inside one
cluster and HNSW is not trivially exact. Queries are new points of the same clusters.
Measured:

a. index build time, exact (flat) and HNSW (`search` defaults: M = 32, efSearch = 128);
b. single-query latency (median and p95, one search call per query, the two indices
   taking turns query by query so that a busy spell of this shared machine hits both),
   batched throughput (all queries in one call) and HNSW's recall@10 against exact;
c. end to end: `Searcher.search` on an experiment folder of the 100k videos (model.pt with
   the paper's head sizes, d = 1024, and the demo's tiny T5 as a frozen text encoder; top 5
   with each hit's best second from 8-step, 256-d visual features), per query after
   loading, with each index (taking turns as in b.); and one cold `supportset search`
   process (Python start, imports and loading included).

    python benchmarks/search.py [--videos 100000] [--queries 300] [--work /tmp/search-bench]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from machine import cpu_model

from supportset.data.manifest import write_tables
from supportset.features.store import ShardWriter, visual_schema
from supportset.features.text import TinyT5Settings, tokenizer_sha256
from supportset.features.tiny_t5 import build_tiny_t5
from supportset.model.checkpoint import save_checkpoint
from supportset.model.retrieval_model import ModelConfig, SupportSetModel
from supportset.retrieval.embeddings import write_video_embeddings
from supportset.retrieval.index import (
    IndexConfig,
    build_index,
    load_faiss,
    recall_against_exact,
    top_k,
    write_index,
)
from supportset.retrieval.query import Searcher, experiment_files, load_tokenizer

DIM = 1024
CLUSTERS = 1000
VIDEO_DIM, STEPS = 256, 8  # visual features of the end-to-end folder (float16)
TOP = 10
WORDS = "a man woman dog car red blue green square circle turns runs plays cooks in on the"
INDEX_HEADER = (
    "| index | build s | 1 query, median ms | 1 query, p95 ms | batched queries/s "
    "| recall@10 vs exact, % |\n|---|---:|---:|---:|---:|---:|"
)
END_TO_END_HEADER = (
    "| index | load s | 1 query, median ms | 1 query, p95 ms | batched queries/s |\n"
    "|---|---:|---:|---:|---:|"
)


def unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def clustered(n: int, centres: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(n, DIM) float32 unit vectors: a random centre's direction plus as much noise."""
    noise = unit(rng.standard_normal((n, DIM), dtype=np.float32))
    return unit(centres[rng.integers(0, len(centres), n)] + noise).astype(np.float32)


def sentences(count: int, rng: np.random.Generator) -> list[str]:
    return [
        " ".join(rng.choice(WORDS.split(), size=int(rng.integers(4, 12)))) for _ in range(count)
    ]


def timed(function, *arguments):
    """(what `function(*arguments)` returns, its wall seconds)."""
    started = time.perf_counter()
    result = function(*arguments)
    return result, time.perf_counter() - started


def interleaved_ms(searches: dict, queries) -> dict[str, np.ndarray]:
    """Wall milliseconds of each search on each query alone, the searches taking turns query
    by query, so that a busy spell of the shared machine falls on all of them alike."""
    times: dict[str, list[float]] = {name: [] for name in searches}
    for query in queries:
        for name, search in searches.items():
            times[name].append(1000 * timed(search, query)[1])
    return {name: np.array(values) for name, values in times.items()}


def speed_cells(single_ms: np.ndarray, queries: int, batch_s: float) -> list[float]:
    """1-query median and p95 (ms), batched queries/s."""
    return [float(np.median(single_ms)), float(np.percentile(single_ms, 95)), queries / batch_s]


def ratios(cells: dict[str, list[float]]) -> list[float]:
    return [hnsw / flat for hnsw, flat in zip(cells["hnsw"], cells["flat"], strict=True)]


def index_rows(videos: np.ndarray, queries: np.ndarray) -> tuple[list[str], dict]:
    """Markdown rows of a. and b., and the built indices."""
    indices, build_s = {}, {}
    for kind in ("flat", "hnsw"):
        indices[kind], build_s[kind] = timed(build_index, videos, IndexConfig(kind))
    searches = {
        kind: lambda query, index=index: top_k(index, query[None], TOP)
        for kind, index in indices.items()
    }
    single = interleaved_ms(searches, queries)
    cells, found = {}, {}
    for kind, index in indices.items():
        (_, found[kind]), batch_s = timed(top_k, index, queries, TOP)
        cells[kind] = [build_s[kind], *speed_cells(single[kind], len(queries), batch_s)]
    recall = recall_against_exact(found["hnsw"], found["flat"])
    return [
        "| exact (flat) | {:.1f} | {:.2f} | {:.2f} | {:,.0f} | 100 |".format(*cells["flat"]),
        "| HNSW | {:.1f} | {:.2f} | {:.2f} | {:,.0f} | {:.1f} |".format(*cells["hnsw"], recall),
        "| HNSW / exact | {:.2f} | {:.3f} | {:.3f} | {:.1f} | |".format(*ratios(cells)),
    ], indices


def write_experiment(
    work: Path, videos: np.ndarray, indices: dict, rng: np.random.Generator
) -> Path:
    """An experiment folder over the videos: manifest, visual shard, model.pt, embeddings
    and both indices (index/test.faiss exact, index/test_hnsw.faiss)."""
    dataset = work / "bench"
    ids = [f"video{i:06d}" for i in range(len(videos))]
    rows = [{"video_id": v, "path": f"videos/{v}.mp4", "split": "test"} for v in ids]
    write_tables(rows, [], dataset / "manifest")
    shard = dataset / "features/visual/00000.parquet"
    metadata = {"settings": {"fps": 1.0}}
    with ShardWriter(shard, visual_schema(VIDEO_DIM, "float16"), metadata) as writer:
        times = np.arange(STEPS, dtype=np.float32)
        for video_id in ids:
            features = rng.standard_normal((STEPS, VIDEO_DIM), dtype=np.float32)
            writer.write((video_id,), (times, features))
    text_model = str(dataset / "text_model")
    build_tiny_t5(sentences(2000, rng), TinyT5Settings(), text_model)
    sha256 = tokenizer_sha256(load_tokenizer(text_model))
    record = {"model": text_model, "max_tokens": 32, "dtype": "float16", "tokenizer_sha256": sha256}
    settings = {"settings": {"training": {"max_video_seconds": STEPS}}}
    torch.manual_seed(0)
    model = SupportSetModel(ModelConfig(dropout=0.0, text_encoder="frozen"), VIDEO_DIM, 64)
    folder = dataset / "exp"
    save_checkpoint(folder / "model.pt", model.state_dict(), model, {}, None, record, settings)
    write_video_embeddings(folder / "embeddings/test_videos.parquet", ids, videos)
    write_index(indices["flat"], folder / "index/test.faiss")
    write_index(indices["hnsw"], folder / "index/test_hnsw.faiss")
    return folder


def end_to_end_rows(folder: Path, queries: list[str]) -> list[str]:
    """Markdown rows of c."""
    os.sync()  # the folder's gigabytes are on disk before anything is timed
    files = experiment_files(folder, "test")
    searchers, load_s = {}, {}
    for kind, index in (("flat", files.index), ("hnsw", folder / "index/test_hnsw.faiss")):
        searchers[kind], load_s[kind] = timed(Searcher, replace(files, index=index))
        searchers[kind].search(queries[:2], 5)  # warm-up
    searches = {kind: lambda query, found=found: found.search([query], 5)
                for kind, found in searchers.items()}  # fmt: skip
    single = interleaved_ms(searches, queries)
    cells = {}
    for kind, searcher in searchers.items():
        _, batch_s = timed(searcher.search, queries, 5)
        cells[kind] = [load_s[kind], *speed_cells(single[kind], len(queries), batch_s)]
    supportset = str(Path(sys.executable).with_name("supportset"))
    command = [supportset, "search", "--experiment", str(folder), queries[0]]
    _, cold_s = timed(lambda: subprocess.run(command, check=True, capture_output=True))
    return [
        "| exact (flat) | {:.1f} | {:.1f} | {:.1f} | {:,.1f} |".format(*cells["flat"]),
        "| HNSW | {:.1f} | {:.1f} | {:.1f} | {:,.1f} |".format(*cells["hnsw"]),
        "| HNSW / exact | {:.2f} | {:.3f} | {:.3f} | {:.1f} |".format(*ratios(cells)),
        f"| cold `supportset search` process, 1 query (exact) | | {cold_s:.1f} s | | |",
    ]


def machine_line() -> str:
    faiss = load_faiss()
    return (
        f"{cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"torch {torch.__version__} (threads {torch.get_num_threads()}), faiss {faiss.__version__} "
        f"(OpenMP threads {faiss.omp_get_max_threads()}), no GPU used"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--work", default="/tmp/search-bench")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    centres = unit(rng.standard_normal((CLUSTERS, DIM), dtype=np.float32))
    videos, queries = clustered(args.videos, centres, rng), clustered(args.queries, centres, rng)
    index_table, indices = index_rows(videos, queries)
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    folder = write_experiment(work, videos, indices, rng)
    n_text = min(args.queries, 100)
    end_to_end = end_to_end_rows(folder, sentences(n_text, rng))
    print(f"Machine: {machine_line()}\n")
    print(f"{args.videos:,} videos, d = {DIM}, {args.queries} queries, top {TOP}:\n")
    print(INDEX_HEADER, *index_table, sep="\n")
    print(f"\nEnd to end (encode the text, search, best seconds; top 5), {n_text} queries:\n")
    print(END_TO_END_HEADER, *end_to_end, sep="\n")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
