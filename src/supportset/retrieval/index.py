"""FAISS indices for top-K search over embeddings: exact by default, IVF or HNSW for
galleries too large to scan (about 100,000 items and up), with their recall against exact
search measured on the queries at hand.

Vectors are L2-normalised, so inner product is cosine similarity. An approximate index
gives a top-K list, not a rank for every query, so R@K from it is reported beside the exact
metrics and never replaces them (MdR and MnR always come from ``search.ranks_of_positives``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from supportset.retrieval.search import l2_normalise

INDEX_KINDS = ("flat", "ivf", "hnsw")
GPU_MAX_K = 2048  # GPU FAISS returns at most this many results per query


@dataclass(frozen=True)
class IndexConfig:
    kind: str = "flat"  # flat (exact) | ivf | hnsw
    ivf_lists: int = 0  # IVF cells; 0 = 4 * sqrt(N), at most N / 39 (FAISS's training rule)
    ivf_probe: int = 32  # IVF cells visited per query
    hnsw_neighbours: int = 32  # HNSW links per node (M)
    hnsw_ef_search: int = 128  # HNSW candidate list length while searching


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
            "FAISS is needed for evaluation.index and retrieval.index: pip install "
            "'supportset[cpu]' (faiss-cpu) or 'supportset[cuda]' (faiss-gpu-cu12)"
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
        index.hnsw.efSearch = config.hnsw_ef_search
    else:
        lists = config.ivf_lists or max(1, min(round(4 * math.sqrt(n_items)), n_items // 39))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, lists, faiss.METRIC_INNER_PRODUCT)
        index.train(vectors)
        index.nprobe = min(config.ivf_probe, lists)
    index.add(vectors)
    if use_gpu and config.kind != "hnsw" and getattr(faiss, "get_num_gpus", lambda: 0)() > 0:
        index = faiss.index_cpu_to_all_gpus(index)
    return index


def top_k(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(Q, k) scores in decreasing order and the (Q, k) gallery rows they belong to
    (-1 where an approximate index found fewer than k items)."""
    k = min(k, index.ntotal)
    if k > GPU_MAX_K and type(index).__name__.startswith("Gpu"):
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
