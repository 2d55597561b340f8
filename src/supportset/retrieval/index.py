"""FAISS indices for top-K search over embeddings: exact by default, IVF or HNSW for
galleries too large to scan (about 100,000 items and up), with their recall against exact
search measured on the queries at hand.

Vectors are L2-normalised, so inner product is cosine similarity. An approximate index
gives a top-K list, not a rank for every query, so R@K from it is reported beside the exact
metrics and never replaces them (MdR and MnR always come from ``search.ranks_of_positives``).

The `index` stage writes one index file per split over the rows of
``embeddings/{split}_videos.parquet`` in file order (row i of the index is the file's i-th
video_id), built with the ``search`` settings (`SearchConfig`) and written atomically by
`write_index`; `read_index` loads it for `supportset search`. A file keeps the search-time
parameters it was built with (HNSW efSearch, IVF nprobe); settings given to `read_index`
replace them, for the file's kind of index.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from supportset.io import atomic_path
from supportset.retrieval.embeddings import read_video_embeddings
from supportset.retrieval.search import l2_normalise
from supportset.settings import from_mapping

log = logging.getLogger(__name__)

INDEX_KINDS = ("flat", "ivf", "hnsw")
GPU_MAX_K = 2048  # GPU FAISS returns at most this many results per query


@dataclass(frozen=True)
class IndexConfig:
    kind: str = "flat"  # flat (exact) | ivf | hnsw
    ivf_lists: int = 0  # IVF cells; 0 = 4 * sqrt(N), at most N / 39 (FAISS's training rule)
    ivf_probe: int = 32  # IVF cells visited per query
    hnsw_neighbours: int = 32  # HNSW links per node (M)
    hnsw_ef_search: int = 128  # HNSW candidate list length while searching


@dataclass(frozen=True)
class SearchConfig:
    """The `search` settings: the index the `index` stage builds over a split's videos."""

    index: str = "flat"  # flat (exact) | ivf | hnsw
    ivf_lists: int = 0  # IVF cells; 0 = 4 * sqrt(N), at most N / 39
    ivf_probe: int = 32  # IVF cells visited per query
    hnsw_neighbours: int = 32  # HNSW links per node (M)
    hnsw_ef_search: int = 128  # HNSW candidate list length while searching

    def index_config(self) -> IndexConfig:
        return IndexConfig(
            self.index, self.ivf_lists, self.ivf_probe, self.hnsw_neighbours, self.hnsw_ef_search
        )


def load_faiss():
    """The faiss module; a clear error saying how to install it when it is missing (exact
    evaluation does not need it, only the indices do)."""
    # faiss's loader logs at INFO each optional SIMD build it does not find, with the
    # ModuleNotFoundError, which reads as a failure in a job log: keep it to warnings.
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    try:
        import faiss
    except ImportError as error:
        raise ImportError(
            "FAISS is needed for an approximate evaluation.index (ivf, hnsw: `supportset "
            "evaluate`) and for the index files of search.index (`supportset index`, "
            "`supportset search`): pip install 'supportset[cpu]' (faiss-cpu) or "
            "'supportset[cuda]' (faiss-gpu-cu12)"
        ) from error
    return faiss


def build_index(gallery: np.ndarray, config: IndexConfig = IndexConfig(), use_gpu: bool = False):
    """An inner-product FAISS index over the L2-normalised ``gallery`` (N, D).

    With ``use_gpu``, faiss-gpu and a visible GPU, flat and IVF indices are moved to all
    GPUs (FAISS has no GPU HNSW).
    """
    if config.kind not in INDEX_KINDS:
        raise ValueError(f"index kind must be one of {INDEX_KINDS}, got {config.kind!r}")
    faiss = load_faiss()
    vectors = l2_normalise(gallery)
    n_items, dim = vectors.shape
    if config.kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif config.kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, config.hnsw_neighbours, faiss.METRIC_INNER_PRODUCT)
    else:
        lists = config.ivf_lists or max(1, min(round(4 * math.sqrt(n_items)), n_items // 39))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, lists, faiss.METRIC_INNER_PRODUCT)
        index.train(vectors)
    set_search_parameters(index, config)
    index.add(vectors)
    return _to_gpus(index) if use_gpu else index


def set_search_parameters(index, config: IndexConfig) -> None:
    """Set what a CPU index of `config.kind` reads while searching: HNSW's candidate list
    length, or the IVF cells visited (at most its cells); a flat index has none."""
    if config.kind == "hnsw":
        index.hnsw.efSearch = config.hnsw_ef_search
    elif config.kind == "ivf":
        index.nprobe = min(config.ivf_probe, index.nlist)


def _to_gpus(index):
    """A flat or IVF CPU index moved to all GPUs when faiss-gpu sees one; otherwise (and
    for HNSW, which FAISS cannot search on a GPU) the index itself."""
    faiss = load_faiss()
    if index_kind(index) == "hnsw" or getattr(faiss, "get_num_gpus", lambda: 0)() == 0:
        return index
    return faiss.index_cpu_to_all_gpus(index)


def _on_gpu(index) -> bool:
    """Whether `index` lives on GPUs (one GPU's index, or one replicated over several)."""
    name = type(index).__name__
    return name.startswith("Gpu") or name in ("IndexReplicas", "IndexShards")


def index_kind(index) -> str:
    """flat, ivf or hnsw: which of the CPU indices `build_index` makes `index` is; a
    ValueError for any other kind."""
    faiss = load_faiss()
    for kind, cls in (
        ("hnsw", faiss.IndexHNSW),
        ("ivf", faiss.IndexIVF),
        ("flat", faiss.IndexFlat),
    ):
        if isinstance(index, cls):
            return kind
    raise ValueError(f"a FAISS {type(index).__name__} is not one of the {INDEX_KINDS} indices")


def write_index(index, path: str | Path) -> None:
    """Write `index` to `path` atomically (a temporary file in its folder, then a rename),
    copied to the CPU first when it lives on GPUs."""
    faiss = load_faiss()
    if _on_gpu(index):
        index = faiss.index_gpu_to_cpu(index)
    with atomic_path(path) as temporary:
        faiss.write_index(index, str(temporary))


def read_index(path: str | Path, settings: Mapping[str, Any] | None = None, use_gpu: bool = False):
    """The index in `path` (written by `write_index`): with `settings`, part of the `search`
    section (`SearchConfig`'s names, e.g. {"hnsw_ef_search": 512}), its search-time
    parameters replace the stored ones, for the file's kind of index (settings naming
    another "index" are a ValueError); with `use_gpu`, a flat or IVF index moves to all
    GPUs when faiss-gpu sees one. A file that is not an inner-product index of
    `INDEX_KINDS` is a ValueError naming it."""
    faiss = load_faiss()
    try:
        index = faiss.read_index(str(path))
    except RuntimeError as error:
        reason = str(error).strip().splitlines()[-1]
        raise ValueError(f"{path} cannot be read as a FAISS index: {reason}") from None
    kind = index_kind(index)
    if index.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise ValueError(f"{path} is not an inner-product index (cosine similarity)")
    if settings is not None:
        config = from_mapping(SearchConfig, {"index": kind, **settings}).index_config()
        if config.kind != kind:
            raise ValueError(
                f"{path} is a {kind} index, the settings ask for {config.kind}: build it again"
            )
        set_search_parameters(index, config)
    return _to_gpus(index) if use_gpu else index


def index_videos(videos: str | Path, config: SearchConfig, out: str | Path) -> None:
    """The `index` stage: an index of `config`'s kind over the video embeddings file
    `videos` (row i = its i-th video_id), written to `out`."""
    video_ids, embeddings = read_video_embeddings(videos)
    write_index(build_index(embeddings, config.index_config()), out)
    log.info("%s index of %d videos (%d-d) written to %s", config.index, len(video_ids),
             embeddings.shape[1], out)  # fmt: skip


def top_k(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(Q, k) scores in decreasing order and the (Q, k) gallery rows they belong to
    (-1 where an approximate index found fewer than k items)."""
    k = min(k, index.ntotal)
    if k > GPU_MAX_K and _on_gpu(index):
        raise ValueError(f"k={k} exceeds the {GPU_MAX_K} results a GPU index returns")
    return index.search(l2_normalise(queries), k)


def recall_against_exact(approximate_ids: np.ndarray, exact_ids: np.ndarray) -> float:
    """Mean fraction (percent) of each query's exact top-k that the approximate top-k
    found; both (Q, k) gallery rows."""
    found = [
        len(np.intersect1d(approx, exact)) / exact.shape[0]
        for approx, exact in zip(approximate_ids, exact_ids, strict=True)
    ]
    return float(100.0 * np.mean(found))
