"""FAISS indices: exact search equals numpy; approximate ones report their recall."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

from supportset.cli import main
from supportset.retrieval.embeddings import write_video_embeddings
from supportset.retrieval.index import (
    INDEX_KINDS,
    IndexConfig,
    build_index,
    load_faiss,
    read_index,
    recall_against_exact,
    top_k,
    write_index,
)


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


def test_missing_faiss_says_how_to_install_it_and_what_needs_it(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "faiss", None)  # what a missing package looks like
    with pytest.raises(ImportError) as error:
        build_index(np.eye(3, dtype=np.float32), IndexConfig("hnsw"))
    message = str(error.value)
    assert re.search(r"supportset\[cpu\].*faiss-cpu.*supportset\[cuda\]", message)
    for needs in ("evaluation.index", "search.index", "`supportset index`", "`supportset search`"):
        assert needs in message
    assert "retrieval.index" not in message  # no such setting


def test_loading_faiss_logs_no_missing_module_at_info() -> None:
    """faiss's loader reports each SIMD build it lacks at INFO, which read as a failure."""
    script = (
        "import logging; logging.basicConfig(level=logging.INFO); "
        "from supportset.retrieval.index import load_faiss; load_faiss()"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "faiss.loader" not in result.stderr and "ModuleNotFoundError" not in result.stderr


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_an_index_file_searches_as_the_index_it_was_written_from(tmp_path, kind) -> None:
    gallery, queries = clustered(2000), clustered(50, seed=1)
    config = IndexConfig(kind, ivf_probe=3, hnsw_ef_search=17)
    index = build_index(gallery, config)
    write_index(index, tmp_path / "index" / "test.faiss")
    assert [item.name for item in (tmp_path / "index").iterdir()] == ["test.faiss"]
    read_back = read_index(tmp_path / "index" / "test.faiss")
    assert read_back.ntotal == 2000
    for expected, found in zip(
        top_k(index, queries, 10), top_k(read_back, queries, 10), strict=True
    ):
        np.testing.assert_array_equal(found, expected)


def test_settings_given_on_reading_replace_the_stored_search_parameters(tmp_path) -> None:
    gallery = clustered(2000)
    for kind in ("hnsw", "ivf"):
        write_index(build_index(gallery, IndexConfig(kind, ivf_probe=3, hnsw_ef_search=17)),
                    tmp_path / f"{kind}.faiss")  # fmt: skip
    hnsw, ivf = (read_index(tmp_path / f"{kind}.faiss") for kind in ("hnsw", "ivf"))
    assert (hnsw.hnsw.efSearch, ivf.nprobe) == (17, 3)
    hnsw = read_index(tmp_path / "hnsw.faiss", {"index": "hnsw", "hnsw_ef_search": 99})
    ivf = read_index(tmp_path / "ivf.faiss", {"index": "ivf", "ivf_probe": 5000})
    assert (hnsw.hnsw.efSearch, ivf.nprobe) == (99, ivf.nlist)  # at most every cell
    # settings that name no kind are for the file's
    hnsw = read_index(tmp_path / "hnsw.faiss", {"hnsw_ef_search": 512, "ivf_probe": 7})
    ivf = read_index(tmp_path / "ivf.faiss", {"hnsw_ef_search": 512, "ivf_probe": 7})
    assert (hnsw.hnsw.efSearch, ivf.nprobe) == (512, 7)


def test_settings_of_another_kind_than_the_file_are_refused(tmp_path) -> None:
    write_index(build_index(clustered(100)), tmp_path / "flat.faiss")
    assert read_index(tmp_path / "flat.faiss", {"hnsw_ef_search": 512}).ntotal == 100
    with pytest.raises(ValueError, match=r"flat.faiss is a flat index, the settings ask for hnsw"):
        read_index(tmp_path / "flat.faiss", {"index": "hnsw", "hnsw_ef_search": 512})
    with pytest.raises(ValueError, match=r"SearchConfig: unknown setting\(s\) ef_search"):
        read_index(tmp_path / "flat.faiss", {"ef_search": 512})


def test_an_interrupted_write_leaves_no_file(tmp_path, monkeypatch) -> None:
    faiss = load_faiss()

    def write_half(index, path: str) -> None:
        with open(path, "wb") as handle:
            handle.write(b"IxFI half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(faiss, "write_index", write_half)
    with pytest.raises(RuntimeError, match="disk full"):
        write_index(build_index(clustered(100)), tmp_path / "test.faiss")
    assert list(tmp_path.iterdir()) == []


def test_a_file_that_is_no_index_is_an_error_naming_it(tmp_path) -> None:
    (tmp_path / "test.faiss").write_bytes(b"not an index at all")
    with pytest.raises(
        ValueError, match=r"test.faiss cannot be read as a FAISS index: .*not recog"
    ):
        read_index(tmp_path / "test.faiss")


def test_the_index_stage_indexes_the_video_file_rows_in_order(tmp_path) -> None:
    gallery = clustered(300)
    ids = [f"v{row}" for row in range(300)]
    write_video_embeddings(tmp_path / "test_videos.parquet", ids, gallery)
    settings = '{"index": "hnsw", "hnsw_neighbours": 8, "hnsw_ef_search": 40}'
    out = tmp_path / "index" / "test.faiss"
    arguments = ["index", "--videos", str(tmp_path / "test_videos.parquet"), "--out", str(out)]
    assert main([*arguments, "--settings", settings]) == 0
    index = read_index(out)
    assert (type(index).__name__, index.hnsw.efSearch, index.ntotal) == ("IndexHNSWFlat", 40, 300)
    assert main(arguments) == 0  # the defaults: exact search
    _, rows = top_k(read_index(out), gallery[:20], 1)
    np.testing.assert_array_equal(rows[:, 0], np.arange(20))


class GpuIndexFlatIP:
    """Stands for faiss-gpu's index of that name (only its class name is looked at)."""

    def __init__(self, cpu_index) -> None:
        self.cpu_index = cpu_index


def test_a_gpu_index_is_copied_to_the_cpu_to_be_written(tmp_path, monkeypatch) -> None:
    faiss = load_faiss()
    monkeypatch.setattr(faiss, "index_gpu_to_cpu", lambda index: index.cpu_index, raising=False)
    gallery = clustered(100)
    write_index(GpuIndexFlatIP(build_index(gallery)), tmp_path / "test.faiss")
    np.testing.assert_array_equal(read_index(tmp_path / "test.faiss").reconstruct_n(0, 100),
                                  build_index(gallery).reconstruct_n(0, 100))  # fmt: skip


def test_reading_for_a_gpu_moves_flat_and_ivf_indices_but_not_hnsw(tmp_path, monkeypatch) -> None:
    faiss = load_faiss()
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 1)
    monkeypatch.setattr(faiss, "index_cpu_to_all_gpus", GpuIndexFlatIP, raising=False)
    for kind in INDEX_KINDS:
        write_index(build_index(clustered(500), IndexConfig(kind)), tmp_path / f"{kind}.faiss")
    moved = {kind: read_index(tmp_path / f"{kind}.faiss", use_gpu=True) for kind in INDEX_KINDS}
    assert {kind: type(index).__name__ for kind, index in moved.items()} == {
        "flat": "GpuIndexFlatIP", "ivf": "GpuIndexFlatIP", "hnsw": "IndexHNSWFlat"
    }  # fmt: skip
    assert type(read_index(tmp_path / "flat.faiss")).__name__ == "IndexFlatIP"
