"""Exact cosine-similarity retrieval with FAISS and the rank of the correct answers.

Each query (caption or video) ranks the whole gallery (videos or captions) by cosine
similarity, computed as the inner product of L2-normalised float32 vectors in an exact
``faiss.IndexFlatIP``. The rank of a query is that of its best-ranked positive (correct)
gallery item, 1-based.

Ties. Widely used retrieval evaluation code ranks with ``argsort`` and reads off the position
of the positive, so a positive that ties with other items gets whatever position the sort
happens to give it (often the best one: an optimistic count), and some variants miscount
ties altogether. A model that maps everything to the same vector would then score perfectly.
The default here, ``ties="average"``, is the expected rank of the positive when tied items
are ordered at random::

    rank(p) = 1 + #{negatives with score > s_p} + #{negatives with score == s_p} / 2

where negatives are the gallery items that are not positives of the query: other positives
never push a positive down, as they are correct answers too. A query's rank is the minimum
of ``rank(p)`` over its positives. ``ties="optimistic"`` drops the equal term. Every score,
the positives' included, is read from the same FAISS result row so that equal scores are
compared bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import faiss
import numpy as np

TieMode = Literal["average", "optimistic"]
TIE_MODES: tuple[TieMode, ...] = ("average", "optimistic")
GPU_MAX_K = 2048


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Return ``vectors`` (N, D) as a C-contiguous float32 copy with unit-L2-norm rows.

    Raises ``ValueError`` naming the rows whose norm is zero or not finite.
    """
    matrix = np.asarray(vectors, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[1] == 0:
        raise ValueError(f"expected vectors of shape (N, D) with D > 0, got {matrix.shape}")
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    invalid = np.flatnonzero(~np.isfinite(norms[:, 0]) | (norms[:, 0] == 0))
    if invalid.size:
        raise ValueError(f"rows {invalid[:5].tolist()} have zero or non-finite norm")
    return np.ascontiguousarray(matrix / norms)


def build_index(gallery: np.ndarray, use_gpu: bool = False) -> faiss.Index:
    """Exact inner-product index over the L2-normalised ``gallery`` (N, D): cosine similarity.

    With ``use_gpu`` and a visible GPU the index is copied to all GPUs, unless N exceeds
    ``GPU_MAX_K``: ranking needs k = N results and GPU FAISS returns at most 2048 per query.
    """
    vectors = l2_normalise(gallery)
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    if use_gpu and faiss.get_num_gpus() > 0 and index.ntotal <= GPU_MAX_K:
        index = faiss.index_cpu_to_all_gpus(index)
    return index


def _positive_id_arrays(
    positives: Sequence[np.ndarray], n_queries: int, n_gallery: int
) -> list[np.ndarray]:
    """Check ``positives`` (one array of gallery indices per query) and return int64 copies."""
    if len(positives) != n_queries:
        raise ValueError(f"{len(positives)} positive sets for {n_queries} queries")
    id_arrays = [np.asarray(ids, dtype=np.int64).reshape(-1) for ids in positives]
    for query, ids in enumerate(id_arrays):
        if ids.size == 0:
            raise ValueError(f"query {query} has no positive")
        if ids.min() < 0 or ids.max() >= n_gallery:
            raise ValueError(f"query {query} has positives outside the gallery [0, {n_gallery})")
    return id_arrays


def _best_positive_rank(
    scores: np.ndarray, ids: np.ndarray, positive_ids: np.ndarray, ties: TieMode
) -> float:
    """1-based rank of the best positive in one FAISS result row.

    ``scores`` (N,): cosine similarities sorted in decreasing order, as FAISS returns them;
    ``ids`` (N,): the gallery index of each score; ``positive_ids``: the query's positives.
    Negating the scores makes them ascending, the order ``np.searchsorted`` needs.
    """
    is_positive = np.isin(ids, positive_ids)
    negated_negatives = -scores[~is_positive]
    negated_positives = -scores[is_positive]
    n_greater = np.searchsorted(negated_negatives, negated_positives, side="left")
    n_greater_or_equal = np.searchsorted(negated_negatives, negated_positives, side="right")
    ranks = 1.0 + n_greater
    if ties == "average":
        ranks += (n_greater_or_equal - n_greater) / 2.0
    return float(ranks.min())


def ranks_of_positives(
    queries: np.ndarray,
    gallery: np.ndarray,
    positives: Sequence[np.ndarray],
    block: int = 1024,
    ties: TieMode = "average",
    use_gpu: bool = False,
) -> np.ndarray:
    """Rank of each query's best-ranked positive when it ranks the whole gallery.

    ``queries`` (Q, D) and ``gallery`` (N, D): embeddings, compared by cosine similarity;
    ``positives``: Q arrays of gallery row indices, the correct answers of each query;
    ``block``: queries searched at once, which bounds memory to about 12 * block * N bytes;
    ``ties``: ``"average"`` or ``"optimistic"`` (see the module docstring).

    Returns (Q,) float64 ranks, 1-based; averaged ties can give halves.
    """
    if ties not in TIE_MODES:
        raise ValueError(f"ties must be one of {TIE_MODES}, got {ties!r}")
    if block < 1:
        raise ValueError(f"block must be at least 1, got {block}")
    query_vectors = l2_normalise(queries)
    index = build_index(gallery, use_gpu=use_gpu)
    if query_vectors.shape[1] != index.d:
        raise ValueError(f"queries have D={query_vectors.shape[1]}, gallery has D={index.d}")
    n_queries, n_gallery = len(query_vectors), index.ntotal
    positive_ids = _positive_id_arrays(positives, n_queries, n_gallery)
    ranks = np.empty(n_queries, dtype=np.float64)
    for start in range(0, n_queries, block):
        scores, ids = index.search(query_vectors[start : start + block], n_gallery)
        for offset, (row_scores, row_ids) in enumerate(zip(scores, ids, strict=True)):
            query = start + offset
            ranks[query] = _best_positive_rank(row_scores, row_ids, positive_ids[query], ties)
    return ranks
