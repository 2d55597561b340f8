"""FAISS indices: exact search equals numpy; approximate ones report their recall."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from supportset.retrieval.index import IndexConfig, build_index, recall_against_exact, top_k


def clustered(n: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((20, dim))
    return (centres[rng.integers(0, 20, n)] + 0.3 * rng.standard_normal((n, dim))).astype(
        np.float32
    )


def numpy_top_k(queries: np.ndarray, gallery: np.ndarray, k: int) -> tuple:
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    g = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
    scores = q @ g.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), order


def test_flat_index_equals_numpy_exact_search() -> None:
    gallery = np.random.default_rng(1).standard_normal((300, 24)).astype(np.float32) * 4
    queries = np.random.default_rng(2).standard_normal((40, 24)).astype(np.float32)
    scores, ids = top_k(build_index(gallery), queries, 10)
    expected_scores, expected_ids = numpy_top_k(queries, gallery, 10)
    np.testing.assert_array_equal(ids, expected_ids)
    np.testing.assert_allclose(scores, expected_scores, atol=1e-5)


def test_flat_index_holds_unit_vectors() -> None:
    index = build_index(np.random.default_rng(2).standard_normal((9, 8)).astype(np.float32) * 7)
    assert (index.ntotal, index.d) == (9, 8)
    np.testing.assert_allclose(np.linalg.norm(index.reconstruct_n(0, 9), axis=1), 1.0, rtol=1e-6)


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_indices_find_most_of_the_exact_top_k(kind: str) -> None:
    gallery, queries = clustered(4000), clustered(200, seed=1)
    _, exact = top_k(build_index(gallery), queries, 10)
    _, approximate = top_k(build_index(gallery, IndexConfig(kind)), queries, 10)
    recall = recall_against_exact(approximate, exact)
    assert 80.0 <= recall <= 100.0
    stingy = IndexConfig(kind, ivf_lists=64, ivf_probe=1, hnsw_neighbours=4, hnsw_ef_search=10)
    _, worse = top_k(build_index(gallery, stingy), queries, 10)
    assert recall_against_exact(worse, exact) < recall


def test_recall_against_exact_by_hand() -> None:
    exact = np.array([[0, 1, 2, 3], [4, 5, 6, 7]])
    approximate = np.array([[3, 2, 9, 8], [4, 5, 6, -1]])
    assert recall_against_exact(approximate, exact) == pytest.approx(100 * (2 / 4 + 3 / 4) / 2)


def test_unknown_index_kind_is_an_error() -> None:
    with pytest.raises(ValueError, match="index kind"):
        build_index(np.eye(3, dtype=np.float32), IndexConfig("lsh"))


def test_missing_faiss_says_how_to_install_it(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "faiss", None)  # what a missing package looks like
    with pytest.raises(ImportError, match=r"supportset\[cpu\].*faiss-cpu.*supportset\[cuda\]"):
        build_index(np.eye(3, dtype=np.float32), IndexConfig("hnsw"))


def test_loading_faiss_logs_no_missing_module_at_info() -> None:
    """faiss's loader reports each SIMD build it lacks at INFO, which read as a failure."""
    script = (
        "import logging; logging.basicConfig(level=logging.INFO); "
        "from supportset.retrieval.index import load_faiss; load_faiss()"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "faiss.loader" not in result.stderr and "ModuleNotFoundError" not in result.stderr
