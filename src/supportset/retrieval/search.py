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

Identical rows tie exactly. A BLAS may round the product of two vectors differently by their
row or column position in a matrix product (OpenBLAS's Haswell sgemm kernel and MKL's AVX2
one do, by a few 1e-7 for unit vectors), which would break ties between identical items.
So each side is reduced to its distinct rows before anything is computed: rows are identical
when their float32 values are equal (+0.0 and -0.0 alike). Each distinct row is normalised
once, each distinct pair is multiplied once, and every copy of a row reads its scores from
that one product: identical vectors get bit-identical scores on every BLAS, thread count and
device, and equal scores are then compared bit for bit.

Speed and memory. Scores come from matrix products (NumPy's BLAS on the CPU, torch on a
GPU) and a rank is two counts per query, ``score > s*`` and ``score == s*`` against the best
positive's score s*: no sort, no argsort, no top-k. ``ranks_both_ways`` computes the
caption-video score matrix once for both directions when it fits in ``BLOCK_BYTES``;
otherwise each direction scores a block of queries at a time (about ``4 * block * N``
bytes; when rows repeat, the block's distinct products and their copies share that budget),
so a 100,000 x 100,000 evaluation runs in bounded memory. Finding the distinct rows hashes
each row's first values, and whole rows only where those repeat: a small cost next to the
products. torch is imported only for a torch device.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

TieMode = Literal["average", "optimistic"]
TIE_MODES: tuple[TieMode, ...] = ("average", "optimistic")
BLOCK_BYTES = 256 << 20  # scores held at once, per block of queries
KEY_PREFIX = 16  # leading values of a row that group candidate identical rows


@dataclass(frozen=True)
class DistinctRows:
    """An (N, D) embedding matrix as its distinct rows, L2-normalised.

    ``unit`` (U, D) float32: the distinct rows in order of first occurrence, with unit L2
    norm; ``inverse`` (N,) int64: the row of ``unit`` that input row i equals. Without
    repeats (U == N), ``unit`` is the normalised matrix itself and ``inverse`` is 0..N-1.
    """

    unit: np.ndarray
    inverse: np.ndarray

    @property
    def copy_index(self) -> np.ndarray | None:
        """``inverse``, or None when every row is distinct (nothing to copy)."""
        return self.inverse if len(self.unit) < len(self.inverse) else None


def distinct_rows(vectors: np.ndarray) -> DistinctRows:
    """The distinct rows of ``vectors`` (N, D), each normalised once (see ``DistinctRows``).

    Rows are identical when their float32 values are equal, +0.0 and -0.0 alike. Raises
    ``ValueError`` naming the rows whose norm is zero or not finite.
    """
    matrix = np.asarray(vectors, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[1] == 0:
        raise ValueError(f"expected vectors of shape (N, D) with D > 0, got {matrix.shape}")
    # a C-ordered copy, normalised in place; -0.0 + 0.0 is +0.0, so equal rows get equal bytes
    matrix = np.add(matrix, np.float32(0.0), order="C")
    first, inverse = _first_occurrences(matrix)
    unit = matrix[first] if len(first) < len(matrix) else matrix
    norms = np.linalg.norm(unit, axis=1, keepdims=True)
    invalid = ~np.isfinite(norms[:, 0]) | (norms[:, 0] == 0)
    if invalid.any():
        rows = np.flatnonzero(invalid[inverse])
        raise ValueError(f"rows {rows[:5].tolist()} have zero or non-finite norm")
    unit /= norms
    return DistinctRows(unit, inverse)


def _first_occurrences(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of an (N, D) matrix, compared by their bytes: (U,) the index of each
    one's first occurrence, ascending, and (N,) which of them each row is.

    Rows are first grouped by their first ``KEY_PREFIX`` values (short keys, quick to hash); only
    rows whose group has others are compared whole.
    """
    n_rows = len(matrix)
    first_of_row = _first_equal(_row_keys(matrix[:, :KEY_PREFIX]))
    shared = np.flatnonzero(np.bincount(first_of_row, minlength=n_rows)[first_of_row] > 1)
    first_of_row[shared] = shared[_first_equal(_row_keys(matrix[shared]))]
    first = np.flatnonzero(first_of_row == np.arange(n_rows))
    return first, np.searchsorted(first, first_of_row)


def _row_keys(matrix: np.ndarray) -> list[bytes]:
    """The bytes of each row of an (N, D) array."""
    rows = np.ascontiguousarray(matrix)
    return rows.view(np.dtype((np.void, rows.shape[1] * rows.itemsize)))[:, 0].tolist()


def _first_equal(keys: list[bytes]) -> np.ndarray:
    """(len(keys),) int64: the index of the first key equal to each key."""
    first_seen: dict[bytes, int] = {}
    return np.fromiter(map(first_seen.setdefault, keys, range(len(keys))), np.int64, len(keys))


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Return ``vectors`` (N, D) as a C-contiguous float32 copy with unit-L2-norm rows;
    identical rows (see ``distinct_rows``) come out bit for bit identical.

    Raises ``ValueError`` naming the rows whose norm is zero or not finite.
    """
    rows = distinct_rows(vectors)
    return rows.unit if rows.copy_index is None else rows.unit[rows.inverse]


def cosine_scores(queries: np.ndarray, gallery: np.ndarray, device: str = "cpu") -> np.ndarray:
    """(Q, N) float32 cosine similarities, computed as the ranking functions compute them:
    identical query rows with identical gallery rows get bit-identical scores."""
    query_rows, gallery_rows = distinct_pair(queries, gallery)
    scores = _as_numpy(_scores(query_rows.unit, _on(gallery_rows.unit, device)))
    return _copies(scores, query_rows.copy_index, gallery_rows.copy_index)


def _on(vectors: np.ndarray, device: str):
    """The array on `device`: NumPy for "cpu" (its BLAS and counts are the faster ones
    there), else a torch tensor on that torch device ("cuda", "cuda:1"; "cpu:0" runs the
    torch path on the CPU, which is how the tests check it without a GPU)."""
    if device == "cpu":
        return vectors
    import torch  # only the torch path needs it

    return torch.from_numpy(vectors).to(device)


def _like(scores, values: np.ndarray | None):
    """`values` where `scores` lives (a torch device, or NumPy); None stays None."""
    if values is None or isinstance(scores, np.ndarray):
        return values
    import torch  # scores is a tensor: torch is loaded

    return torch.from_numpy(values).to(scores.device)


def _as_numpy(values) -> np.ndarray:
    return values if isinstance(values, np.ndarray) else values.cpu().numpy()


def _scores(query_vectors: np.ndarray, gallery):
    """(b, N) inner products of unit query rows (b, D) with the unit gallery (N, D)."""
    return _like(gallery, query_vectors) @ gallery.T


def _copies(scores, rows, columns):
    """``scores[rows][:, columns]`` in one gather, where rows and columns are index arrays
    on the scores' device, or None for all of them in order."""
    if rows is None:
        return scores if columns is None else scores[:, columns]
    return scores[rows] if columns is None else scores[rows[:, None], columns[None, :]]


def _gather(scores, columns: np.ndarray) -> np.ndarray:
    """scores[i, columns[i, j]] as a (b, P) NumPy array."""
    if isinstance(scores, np.ndarray):
        return np.take_along_axis(scores, columns, axis=1)
    return scores.gather(1, _like(scores, columns)).cpu().numpy()


def _count(mask, axis: int):
    if isinstance(mask, np.ndarray):
        return np.count_nonzero(mask, axis=axis)
    return mask.count_nonzero(dim=axis).cpu().numpy()


def padded_positives(
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


def distinct_pair(queries: np.ndarray, gallery: np.ndarray) -> tuple[DistinctRows, DistinctRows]:
    query_rows, gallery_rows = distinct_rows(queries), distinct_rows(gallery)
    query_dim, gallery_dim = query_rows.unit.shape[1], gallery_rows.unit.shape[1]
    if query_dim != gallery_dim:
        raise ValueError(f"queries have D={query_dim}, gallery has D={gallery_dim}")
    return query_rows, gallery_rows


def _repeats(*sides: DistinctRows) -> bool:
    return any(side.copy_index is not None for side in sides)


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
    query_rows, gallery_rows = distinct_pair(queries, gallery)
    return _ranks_of_positives(query_rows, gallery_rows, positives, block, ties, device)


def _ranks_of_positives(
    query_rows: DistinctRows,
    gallery_rows: DistinctRows,
    positives: Sequence[np.ndarray],
    block: int,
    ties: TieMode,
    device: str,
) -> np.ndarray:
    """``ranks_of_positives`` of queries and gallery already reduced to distinct rows."""
    n_queries, n_gallery = len(query_rows.inverse), len(gallery_rows.inverse)
    padded, real = padded_positives(positives, n_queries, n_gallery)
    ranks = np.empty(n_queries, dtype=np.float64)
    for rows, scores in distinct_score_blocks(query_rows, gallery_rows, block, device):
        positive_scores = _gather(scores, padded[rows])  # (b, P)
        best = positive_scores.max(axis=1)  # (b,): no positive is above the best one
        on_best = (positive_scores == best[:, None]) & real[rows]
        threshold = _like(scores, best[:, None])
        greater = _count(scores > threshold, 1)
        equal = _count(scores == threshold, 1) - on_best.sum(axis=1)
        ranks[rows] = _ranks(greater, equal, ties)
    return ranks


def distinct_score_blocks(
    query_rows: DistinctRows, gallery_rows: DistinctRows, block: int, device: str
) -> Iterator[tuple[np.ndarray, Any]]:
    """Yield (query indices (b,), their (b, N) scores) for every query once, b <= ``block``.

    Queries come grouped by distinct row, ``block`` distinct rows at a time: each distinct
    query row is multiplied with the distinct gallery rows in one product, and the scores of
    its copies, and of the gallery's copies, are copied from that product.
    """
    n_distinct, n_gallery = len(query_rows.unit), len(gallery_rows.inverse)
    if not block:  # the distinct products, and their copies when rows repeat, fit BLOCK_BYTES
        held = len(gallery_rows.unit) + (n_gallery if _repeats(query_rows, gallery_rows) else 0)
        block = max(1, BLOCK_BYTES // (4 * held))
    gallery = _on(gallery_rows.unit, device)
    columns = _like(gallery, gallery_rows.copy_index)
    by_distinct_row = np.argsort(query_rows.inverse, kind="stable")
    sorted_inverse = query_rows.inverse[by_distinct_row]
    for first in range(0, n_distinct, block):
        distinct_scores = _scores(query_rows.unit[first : first + block], gallery)  # (u, U_g)
        low, high = np.searchsorted(sorted_inverse, [first, first + block])
        for start in range(low, high, block):
            rows = by_distinct_row[start : min(start + block, high)]
            copied = None if query_rows.copy_index is None else query_rows.inverse[rows] - first
            yield rows, _copies(distinct_scores, _like(gallery, copied), columns)


def caption_owners(video_ids: Sequence[str], caption_video_ids: Sequence[str]) -> np.ndarray:
    """(N_c,) int64: the row in `video_ids` of each caption's video."""
    row_of_video = {video: row for row, video in enumerate(video_ids)}
    return np.array([row_of_video[video] for video in caption_video_ids], dtype=np.int64)


def captions_of_videos(owners: np.ndarray, n_videos: int) -> list[np.ndarray]:
    """The caption rows of each of `n_videos` videos, ascending, from each caption's video
    row `owners` (N_c,): one stable sort, O(N_c log N_c)."""
    by_video = np.argsort(owners, kind="stable")
    return np.split(by_video, np.cumsum(np.bincount(owners, minlength=n_videos))[:-1])


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
    direction is ranked block by block as ``ranks_of_positives`` does. Either way each side
    is reduced to its distinct rows once.
    """
    _check_options(ties, 0)
    owners = np.asarray(owners, dtype=np.int64)
    caption_rows, video_rows = distinct_pair(captions, videos)
    n_videos = len(video_rows.inverse)
    distinct_bytes = 4 * len(caption_rows.unit) * len(video_rows.unit)
    copied_bytes = 4 * len(owners) * n_videos if _repeats(caption_rows, video_rows) else 0
    if distinct_bytes + copied_bytes > max_bytes:
        return (
            _ranks_of_positives(caption_rows, video_rows, list(owners[:, None]), 0, ties, device),
            _ranks_of_positives(
                video_rows, caption_rows, captions_of_videos(owners, n_videos), 0, ties, device
            ),
        )
    distinct_scores = _scores(caption_rows.unit, _on(video_rows.unit, device))
    rows, columns = caption_rows.copy_index, video_rows.copy_index
    scores = _copies(distinct_scores, _like(distinct_scores, rows), _like(distinct_scores, columns))
    own = _gather(scores, owners[:, None])[:, 0]  # (N_c,) score of each caption's video
    t2v_greater = _count(scores > _like(scores, own[:, None]), 1)
    t2v_equal = _count(scores == _like(scores, own[:, None]), 1) - 1
    best = np.full(n_videos, -np.inf, dtype=own.dtype)
    np.maximum.at(best, owners, own)  # (N_v,) each video's best caption score
    on_best = np.bincount(owners[own == best[owners]], minlength=n_videos)
    v2t_greater = _count(scores > _like(scores, best[None, :]), 0)
    v2t_equal = _count(scores == _like(scores, best[None, :]), 0) - on_best
    return _ranks(t2v_greater, t2v_equal, ties), _ranks(v2t_greater, v2t_equal, ties)
