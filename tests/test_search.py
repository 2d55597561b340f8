"""FAISS ranking (supportset.retrieval.search) against a brute-force pure-Python reference."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from supportset.retrieval.search import cosine_scores, l2_normalise, ranks_of_positives

DIM = 6
MAX_ITEMS = 24
MAX_POSITIVES = 4
SEPARATION = 1e-5
PROPERTY_SETTINGS = settings(max_examples=60, deadline=None)


def brute_force_ranks(
    scores: list[list[float]], positives: list[list[int]], ties: str
) -> list[float]:
    """Rank of each query's best positive, by counting negatives above and level with it."""
    ranks = []
    for row, row_positives in zip(scores, positives, strict=True):
        best = math.inf
        for positive in row_positives:
            greater = equal = 0
            for item, score in enumerate(row):
                if item in row_positives:
                    continue
                if score > row[positive]:
                    greater += 1
                elif score == row[positive]:
                    equal += 1
            rank = 1 + greater + (equal / 2 if ties == "average" else 0)
            best = min(best, rank)
        ranks.append(best)
    return ranks


def exact_cosines(queries: np.ndarray, gallery: np.ndarray) -> list[list[float]]:
    """Cosine similarity of every query (Q, D) with every gallery item (N, D), in float64."""

    def norm(vector: list[float]) -> float:
        return math.sqrt(sum(value * value for value in vector))

    return [
        [
            sum(a * b for a, b in zip(query, item, strict=True)) / (norm(query) * norm(item))
            for item in gallery.astype(np.float64).tolist()
        ]
        for query in queries.astype(np.float64).tolist()
    ]


def well_separated(scores: list[list[float]], positives: list[list[int]]) -> bool:
    """Whether every positive's score is either equal to or clearly apart from each other score,
    so that float32 rounding cannot reorder it against the float64 reference."""
    for row, row_positives in zip(scores, positives, strict=True):
        row_array = np.asarray(row)
        for positive in row_positives:
            gaps = np.abs(row_array - row[positive])
            if ((gaps > 0) & (gaps < SEPARATION)).any():
                return False
    return True


def tied_vector(draw: st.DrawFn) -> list[float]:
    """A vector with 1 or 4 entries of +-1 and zeros elsewhere.

    Its norm (1 or 2) is exact, so normalised entries are +-1 or +-0.5 and every cosine
    between such vectors is a multiple of 0.25, exact in float32 whatever the summation
    order: equal scores are real ties, in float32 and in the reference alike.
    """
    support = draw(st.sampled_from([1, 4]))
    positions = draw(
        st.lists(st.integers(0, DIM - 1), min_size=support, max_size=support, unique=True)
    )
    signs = draw(st.lists(st.sampled_from([-1.0, 1.0]), min_size=support, max_size=support))
    vector = [0.0] * DIM
    for position, sign in zip(positions, signs, strict=True):
        vector[position] = sign
    return vector


@st.composite
def tied_matrix(draw: st.DrawFn, n_rows: int) -> np.ndarray:
    return np.array([tied_vector(draw) for _ in range(n_rows)], dtype=np.float32)


@st.composite
def ternary_matrix(draw: st.DrawFn, n_rows: int) -> np.ndarray:
    """Rows with entries in {-1, 0, 1}, not all zero: many ties, some inexact norms."""
    row = st.lists(st.sampled_from([-1.0, 0.0, 1.0]), min_size=DIM, max_size=DIM).filter(any)
    return np.array(draw(st.lists(row, min_size=n_rows, max_size=n_rows)), dtype=np.float32)


@st.composite
def gaussian_matrix(draw: st.DrawFn, n_rows: int) -> np.ndarray:
    seed = draw(st.integers(0, 2**32 - 1))
    return np.random.default_rng(seed).standard_normal((n_rows, DIM)).astype(np.float32)


@st.composite
def retrieval_problem(
    draw: st.DrawFn, matrix: Callable[[int], st.SearchStrategy[np.ndarray]]
) -> tuple:
    """(queries (Q, D), gallery (N, D), positives: Q lists of 1 to 4 gallery indices)."""
    n_queries = draw(st.integers(1, MAX_ITEMS))
    n_gallery = draw(st.integers(1, MAX_ITEMS))
    queries = draw(matrix(n_queries))
    gallery = draw(matrix(n_gallery))
    positive_set = st.lists(
        st.integers(0, n_gallery - 1),
        min_size=1,
        max_size=min(n_gallery, MAX_POSITIVES),
        unique=True,
    )
    positives = draw(st.lists(positive_set, min_size=n_queries, max_size=n_queries))
    return queries, gallery, positives


TIE_MODE = st.sampled_from(["average", "optimistic"])


@PROPERTY_SETTINGS
@given(problem=retrieval_problem(tied_matrix), ties=TIE_MODE)
def test_ranks_match_brute_force_on_heavily_tied_scores(problem: tuple, ties: str) -> None:
    queries, gallery, positives = problem
    expected = brute_force_ranks(exact_cosines(queries, gallery), positives, ties)
    ranks = ranks_of_positives(queries, gallery, [np.array(p) for p in positives], ties=ties)
    assert ranks.tolist() == expected


@PROPERTY_SETTINGS
@given(problem=retrieval_problem(gaussian_matrix), ties=TIE_MODE)
def test_ranks_match_brute_force_on_random_scores(problem: tuple, ties: str) -> None:
    queries, gallery, positives = problem
    scores = exact_cosines(queries, gallery)
    assume(well_separated(scores, positives))
    ranks = ranks_of_positives(queries, gallery, [np.array(p) for p in positives], ties=ties)
    assert ranks.tolist() == brute_force_ranks(scores, positives, ties)


@PROPERTY_SETTINGS
@given(problem=retrieval_problem(ternary_matrix), ties=TIE_MODE)
def test_ranks_match_brute_force_over_the_same_float32_scores(problem: tuple, ties: str) -> None:
    queries, gallery, positives = problem
    scores = cosine_scores(queries, gallery).tolist()
    ranks = ranks_of_positives(queries, gallery, [np.array(p) for p in positives], ties=ties)
    assert ranks.tolist() == brute_force_ranks(scores, positives, ties)


@PROPERTY_SETTINGS
@given(
    problem=st.one_of(retrieval_problem(tied_matrix), retrieval_problem(gaussian_matrix)),
    ties=TIE_MODE,
    block=st.integers(1, 5),
)
def test_small_blocks_equal_one_block(problem: tuple, ties: str, block: int) -> None:
    queries, gallery, positives = problem
    positive_arrays = [np.array(p) for p in positives]
    one_block = ranks_of_positives(queries, gallery, positive_arrays, block=len(queries), ties=ties)
    blocked = ranks_of_positives(queries, gallery, positive_arrays, block=block, ties=ties)
    np.testing.assert_array_equal(blocked, one_block)


def test_ties_with_negatives_average_to_the_middle_of_the_tied_run() -> None:
    queries = np.eye(3, DIM, dtype=np.float32)
    gallery = np.repeat(queries, 4, axis=0)
    positives = [np.array([0]), np.array([4]), np.array([8])]
    averaged = ranks_of_positives(queries, gallery, positives, ties="average")
    optimistic = ranks_of_positives(queries, gallery, positives, ties="optimistic")
    assert averaged.tolist() == [2.5, 2.5, 2.5]
    assert optimistic.tolist() == [1.0, 1.0, 1.0]


def test_identical_embeddings_rank_at_the_middle_when_averaged() -> None:
    same = np.ones((5, DIM), dtype=np.float32)
    positives = [np.array([i]) for i in range(5)]
    averaged = ranks_of_positives(same, same, positives, ties="average")
    optimistic = ranks_of_positives(same, same, positives, ties="optimistic")
    np.testing.assert_array_equal(averaged, np.full(5, 3.0))
    np.testing.assert_array_equal(optimistic, np.ones(5))


def test_other_positives_do_not_push_a_positive_down() -> None:
    gallery = np.array([[1, 0], [1, 0], [1, 0], [0, 1]], dtype=np.float32)
    query = np.array([[1, 0]], dtype=np.float32)
    ranks = ranks_of_positives(query, gallery, [np.array([0, 1])])
    assert ranks.tolist() == [1.5]


def test_scores_equal_numpy_cosine_similarity() -> None:
    rng = np.random.default_rng(1)
    queries = rng.standard_normal((17, 32)).astype(np.float32) * 3.0
    gallery = rng.standard_normal((23, 32)).astype(np.float32) + 0.5
    normalised_queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    normalised_gallery = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
    np.testing.assert_allclose(
        cosine_scores(queries, gallery), normalised_queries @ normalised_gallery.T, atol=1e-5
    )


def test_many_positives_of_one_query_in_one_block() -> None:
    gallery = np.random.default_rng(5).standard_normal((30, DIM)).astype(np.float32)
    positives = [np.arange(0, 30, 3), np.array([7]), np.array([29, 0, 29])]
    scores = cosine_scores(gallery[:3], gallery).tolist()
    expected = brute_force_ranks(scores, [sorted(set(p.tolist())) for p in positives], "average")
    assert ranks_of_positives(gallery[:3], gallery, positives).tolist() == expected


def test_ranks_are_float64_and_one_per_query() -> None:
    gallery = np.eye(4, dtype=np.float32)
    ranks = ranks_of_positives(gallery[:3], gallery, [np.array([i]) for i in range(3)])
    assert ranks.dtype == np.float64
    assert ranks.tolist() == [1.0, 1.0, 1.0]


@pytest.mark.parametrize(
    ("positives", "message"),
    [
        ([np.array([0])], "positive sets"),
        ([np.array([0]), np.array([], dtype=np.int64)], "no positive"),
        ([np.array([0]), np.array([4])], "outside the gallery"),
        ([np.array([0]), np.array([-1])], "outside the gallery"),
    ],
)
def test_invalid_positives_are_rejected(positives: list[np.ndarray], message: str) -> None:
    vectors = np.eye(4, dtype=np.float32)
    with pytest.raises(ValueError, match=message):
        ranks_of_positives(vectors[:2], vectors, positives)


def test_invalid_arguments_are_rejected() -> None:
    vectors = np.eye(3, dtype=np.float32)
    positives = [np.array([i]) for i in range(3)]
    with pytest.raises(ValueError, match="ties"):
        ranks_of_positives(vectors, vectors, positives, ties="pessimistic")
    with pytest.raises(ValueError, match="block"):
        ranks_of_positives(vectors, vectors, positives, block=-1)
    with pytest.raises(ValueError, match="D=2"):
        ranks_of_positives(np.ones((3, 2), dtype=np.float32), vectors, positives)


def test_zero_vectors_cannot_be_normalised() -> None:
    vectors = np.array([[1, 0], [0, 0], [np.inf, 1]], dtype=np.float32)
    with pytest.raises(ValueError, match=r"rows \[1, 2\]"):
        l2_normalise(vectors)
