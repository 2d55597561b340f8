"""Exact cosine-similarity ranks of the correct answers, without sorting.

Each query (caption or video) ranks the whole gallery (videos or captions) by cosine
similarity, the inner product of L2-normalised float32 vectors. The rank of a query is
that of its best-ranked positive (correct) gallery item, 1-based.

Ties. Widely used retrieval evaluation code ranks with ``argsort`` and reads off the position
of the positive, so a positive that ties with other items gets whatever position the sort
happens to give it (often the best one: an optimistic count), and some variants miscount
ties altogether. A model that maps everything to the same vector would then score perfectly.
The default here, ``ties="average"``, is the expected rank of the positive when tied items
are ordered at random::

    rank(p) = 1 + #{negatives with score > s_p} + #{negatives with score == s_p} / 2

where negatives are the gallery items that are not positives of the query: other positives
never push a positive down, as they are correct answers too. A query's rank is the minimum
of ``rank(p)`` over its positives, which is the rank of its highest-scoring positive (the
count above can only grow as s_p falls). ``ties="optimistic"`` drops the equal term.

Speed and memory. Scores come from matrix products (NumPy's BLAS on the CPU, torch on a
GPU) and a rank is two counts per query, ``score > s*`` and ``score == s*`` against the best
positive's score s*: no sort, no argsort, no top-k. ``ranks_both_ways`` computes the
caption-video score matrix once for both directions when it fits in ``BLOCK_BYTES``;
otherwise each direction scores a block of queries at a time (about ``4 * block * N``
bytes), so a 100,000 x 100,000 evaluation runs in bounded memory. Every score, the
positives' included, comes from the same product, so equal scores are compared bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

TieMode = Literal["average", "optimistic"]
TIE_MODES: tuple[TieMode, ...] = ("average", "optimistic")
BLOCK_BYTES = 256 << 20  # scores held at once, per block of queries


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


def cosine_scores(queries: np.ndarray, gallery: np.ndarray, device: str = "cpu") -> np.ndarray:
    """(Q, N) float32 cosine similarities, computed as the ranking functions compute them."""
    return _as_numpy(_scores(l2_normalise(queries), _on(l2_normalise(gallery), device)))


def _on(vectors: np.ndarray, device: str):
    """The array on `device`: NumPy for "cpu" (its BLAS and counts are the faster ones
    there), else a torch tensor on that torch device ("cuda", "cuda:1"; "cpu:0" runs the
    torch path on the CPU, which is how the tests check it without a GPU)."""
    return vectors if device == "cpu" else torch.from_numpy(vectors).to(device)


def _as_numpy(values) -> np.ndarray:
    return values.cpu().numpy() if isinstance(values, torch.Tensor) else values


def _scores(query_vectors: np.ndarray, gallery):
    """(b, N) inner products of unit query rows (b, D) with the unit gallery (N, D)."""
    if isinstance(gallery, torch.Tensor):
        return torch.from_numpy(query_vectors).to(gallery.device) @ gallery.T
    return query_vectors @ gallery.T


def _gather(scores, columns: np.ndarray) -> np.ndarray:
    """scores[i, columns[i, j]] as a (b, P) NumPy array."""
    if isinstance(scores, torch.Tensor):
        index = torch.from_numpy(columns).to(scores.device)
        return torch.gather(scores, 1, index).cpu().numpy()
    return np.take_along_axis(scores, columns, axis=1)


def _like(scores, values: np.ndarray):
    """`values` where `scores` lives (a GPU tensor, or NumPy)."""
    if isinstance(scores, torch.Tensor):
        return torch.from_numpy(values).to(scores.device)
    return values


def _count(mask, axis: int):
    if isinstance(mask, torch.Tensor):
        return torch.count_nonzero(mask, dim=axis).cpu().numpy()
    return np.count_nonzero(mask, axis=axis)


def _padded_positives(
    positives: Sequence[np.ndarray], n_queries: int, n_gallery: int
) -> tuple[np.ndarray, np.ndarray]:
    """``positives`` (one array of gallery indices per query) as a (Q, P) int64 matrix
    padded by repeating each row's first index, and the (Q, P) mask of real entries."""
    if len(positives) != n_queries:
        raise ValueError(f"{len(positives)} positive sets for {n_queries} queries")
    id_arrays = [np.unique(np.asarray(ids, dtype=np.int64).reshape(-1)) for ids in positives]
    for query, ids in enumerate(id_arrays):
        if ids.size == 0:
            raise ValueError(f"query {query} has no positive")
        if ids.min() < 0 or ids.max() >= n_gallery:
            raise ValueError(f"query {query} has positives outside the gallery [0, {n_gallery})")
    width = max(len(ids) for ids in id_arrays)
    padded = np.empty((n_queries, width), dtype=np.int64)
    real = np.zeros((n_queries, width), dtype=bool)
    for query, ids in enumerate(id_arrays):
        padded[query] = ids[0]
        padded[query, : len(ids)] = ids
        real[query, : len(ids)] = True
    return padded, real


def _check_options(ties: str, block: int) -> None:
    if ties not in TIE_MODES:
        raise ValueError(f"ties must be one of {TIE_MODES}, got {ties!r}")
    if block < 0:
        raise ValueError(f"block must be 0 (automatic) or positive, got {block}")


def _normalised_pair(queries: np.ndarray, gallery: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    query_vectors, gallery_vectors = l2_normalise(queries), l2_normalise(gallery)
    if query_vectors.shape[1] != gallery_vectors.shape[1]:
        raise ValueError(
            f"queries have D={query_vectors.shape[1]}, gallery has D={gallery_vectors.shape[1]}"
        )
    return query_vectors, gallery_vectors


def _ranks(greater: np.ndarray, equal: np.ndarray, ties: TieMode) -> np.ndarray:
    """1-based float64 ranks from the counts of negatives above and level with s*."""
    ranks = 1.0 + greater.astype(np.float64)
    if ties == "average":
        ranks += equal / 2.0
    return ranks


def ranks_of_positives(
    queries: np.ndarray,
    gallery: np.ndarray,
    positives: Sequence[np.ndarray],
    block: int = 0,
    ties: TieMode = "average",
    device: str = "cpu",
) -> np.ndarray:
    """Rank of each query's best-ranked positive when it ranks the whole gallery.

    ``queries`` (Q, D) and ``gallery`` (N, D): embeddings, compared by cosine similarity;
    ``positives``: Q arrays of gallery row indices, the correct answers of each query;
    ``block``: queries scored at once (0: as many as fit in ``BLOCK_BYTES`` of scores);
    ``ties``: ``"average"`` or ``"optimistic"`` (see the module docstring);
    ``device``: where the scores are computed ("cuda" for a GPU).

    Returns (Q,) float64 ranks, 1-based; averaged ties can give halves.
    """
    _check_options(ties, block)
    query_vectors, gallery_vectors = _normalised_pair(queries, gallery)
    n_queries, n_gallery = len(query_vectors), len(gallery_vectors)
    padded, real = _padded_positives(positives, n_queries, n_gallery)
    block = block or max(1, BLOCK_BYTES // (4 * n_gallery))
    gallery_on_device = _on(gallery_vectors, device)
    ranks = np.empty(n_queries, dtype=np.float64)
    for start in range(0, n_queries, block):
        rows = slice(start, start + block)
        scores = _scores(query_vectors[rows], gallery_on_device)  # (b, N)
        positive_scores = _gather(scores, padded[rows])  # (b, P)
        best = positive_scores.max(axis=1)  # (b,): no positive is above the best one
        on_best = (positive_scores == best[:, None]) & real[rows]
        threshold = _like(scores, best[:, None])
        greater = _count(scores > threshold, 1)
        equal = _count(scores == threshold, 1) - on_best.sum(axis=1)
        ranks[rows] = _ranks(greater, equal, ties)
    return ranks


def ranks_both_ways(
    videos: np.ndarray,
    captions: np.ndarray,
    owners: np.ndarray,
    ties: TieMode = "average",
    device: str = "cpu",
    max_bytes: int = BLOCK_BYTES,
) -> tuple[np.ndarray, np.ndarray]:
    """Text-to-video ranks (N_c,) and video-to-text ranks (N_v,) of one split.

    ``videos`` (N_v, D), ``captions`` (N_c, D); ``owners`` (N_c,): the video row of each
    caption, every video owning at least one. A caption's positive is its video; a video's
    positives are its captions. With at most ``max_bytes`` of scores the (N_c, N_v) matrix
    is computed once and counted along rows (t2v) and columns (v2t); otherwise each
    direction is ranked block by block by ``ranks_of_positives``.
    """
    _check_options(ties, 0)
    owners = np.asarray(owners, dtype=np.int64)
    n_videos = len(videos)
    if len(captions) * n_videos * 4 > max_bytes:
        captions_of_video = [np.flatnonzero(owners == v) for v in range(n_videos)]
        options = {"ties": ties, "device": device}
        return (
            ranks_of_positives(captions, videos, list(owners[:, None]), **options),
            ranks_of_positives(videos, captions, captions_of_video, **options),
        )
    caption_vectors, video_vectors = _normalised_pair(captions, videos)
    scores = _scores(caption_vectors, _on(video_vectors, device))  # (N_c, N_v)
    own = _gather(scores, owners[:, None])[:, 0]  # (N_c,) score of each caption's video
    t2v_greater = _count(scores > _like(scores, own[:, None]), 1)
    t2v_equal = _count(scores == _like(scores, own[:, None]), 1) - 1
    best = np.full(n_videos, -np.inf, dtype=own.dtype)
    np.maximum.at(best, owners, own)  # (N_v,) each video's best caption score
    on_best = np.bincount(owners[own == best[owners]], minlength=n_videos)
    v2t_greater = _count(scores > _like(scores, best[None, :]), 0)
    v2t_equal = _count(scores == _like(scores, best[None, :]), 0) - on_best
    return _ranks(t2v_greater, t2v_equal, ties), _ranks(v2t_greater, v2t_equal, ties)
