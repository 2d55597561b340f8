"""Exact ranks (supportset.retrieval.search) against a brute-force pure-Python reference."""

from __future__ import annotations

import functools
import math
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from supportset.retrieval.search import (
    cosine_scores,
    distinct_rows,
    l2_normalise,
    ranks_of_positives,
)

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
    vectors = np.array([[1, 0], [0, 0], [np.inf, 1], [0, 0]], dtype=np.float32)
    with pytest.raises(ValueError, match=r"rows \[1, 2, 3\]"):
        l2_normalise(vectors)


def test_distinct_rows_merge_equal_values() -> None:
    vectors = np.array([[3, 0], [0, 1], [3, 0], [-0.0, 1], [0, 2]], dtype=np.float32)
    rows = distinct_rows(vectors)
    np.testing.assert_array_equal(rows.unit, [[1, 0], [0, 1], [0, 1]])
    assert rows.inverse.tolist() == [0, 1, 0, 1, 2]
    assert distinct_rows(vectors[:2]).copy_index is None


def test_rows_alike_in_their_leading_values_stay_distinct() -> None:
    row = np.random.default_rng(7).standard_normal(40).astype(np.float32)
    row[:20] = 0.0
    other = row.copy()
    other[30] += 1.0
    vectors = signed_zero_copies(np.stack([row, other, row, other, row]))
    assert distinct_rows(vectors).inverse.tolist() == [0, 1, 0, 1, 0]


def test_identical_rows_normalise_bit_for_bit_identically() -> None:
    """Copies of one row at every alignment (257 floats a row), half of them with -0.0 for
    its zeros, come out as one bit pattern, with +0.0."""
    row = np.random.default_rng(6).standard_normal(257).astype(np.float32)
    row[::5] = 0.0
    unit = l2_normalise(signed_zero_copies(np.tile(row, (64, 1))))
    assert len(np.unique(unit.view(np.uint32), axis=0)) == 1
    assert not np.signbit(unit[0][row == 0]).any()
    np.testing.assert_allclose(unit[0], row / np.linalg.norm(row), rtol=1e-6)


# Ties between identical rows at realistic sizes. OpenBLAS picks its sgemm kernel by CPU
# (OPENBLAS_CORETYPE overrides it when the library loads) and some kernels give two identical
# unit vectors products that differ in the last bits by their row or column position, so
# these checks run in child processes, one per BLAS setting, on splits of a few hundred
# 256-d rows whose tie groups are known by construction.

TIED_DIM = 256
DIRECTIONS = ("t2v", "v2t")
BLAS_VARIABLES = ("OPENBLAS_", "GOTO_", "OMP_", "MKL_")  # not inherited by the child
# OPENBLAS_CORETYPE values tested: the names OpenBLAS reports for them (scipy-openblas runs
# Prescott as Katmai) and the CPU flags their kernels need
OPENBLAS_CORES = {
    "Haswell": ({"haswell"}, {"avx2", "fma"}),
    "SandyBridge": ({"sandybridge"}, {"avx"}),
    "Prescott": ({"prescott", "katmai"}, {"pni"}),
}
CHILD_SCRIPT = """
import ctypes, sys
import numpy as np
from supportset.retrieval.search import cosine_scores, ranks_both_ways, ranks_of_positives

def openblas_core():
    paths = {line.split()[-1] for line in open("/proc/self/maps") if "openblas" in line}
    for path in sorted(paths):
        library = ctypes.CDLL(path)
        for name in ("openblas_get_corename", "scipy_openblas_get_corename64_"):
            if hasattr(library, name):
                getattr(library, name).restype = ctypes.c_char_p
                return getattr(library, name)().decode()
    return ""

device, folder, *names = sys.argv[1:]
results = {}
for threads in (1, 2) if device != "cpu" else (0,):
    if threads:
        import torch
        torch.set_num_threads(threads)
    for name in names:
        split = np.load(f"{folder}/{name}.npz")
        videos, captions, owners = split["videos"], split["captions"], split["owners"]
        own = [np.flatnonzero(owners == video) for video in range(len(videos))]
        key = f"{name}/{threads}"
        results[f"{key}/scores"] = cosine_scores(captions, videos, device)
        for ties in ("average", "optimistic"):
            for path, max_bytes in (("matrix", 1 << 30), ("blocked", 0)):
                both = ranks_both_ways(videos, captions, owners, ties, device, max_bytes)
                results[f"{key}/{ties}/{path}/t2v"], results[f"{key}/{ties}/{path}/v2t"] = both
            if device == "cpu":  # many small blocks (torch takes the same code path, slowly)
                t2v = ranks_of_positives(captions, videos, list(owners[:, None]), 16, ties)
                v2t = ranks_of_positives(videos, captions, own, 16, ties)
                results[f"{key}/{ties}/block16/t2v"] = t2v
                results[f"{key}/{ties}/block16/v2t"] = v2t
np.savez(f"{folder}/results.npz", **results)
print(openblas_core())
"""


@dataclass(frozen=True)
class TiedSplit:
    """Videos and captions copied from a few distinct base vectors: identical rows by design.

    ``videos`` (N_v, D) copies ``bases[video_groups]`` and ``captions`` (N_c, D) copies
    ``bases[caption_groups]`` (float32; alternate copies hold -0.0 where a base holds 0.0);
    ``owners`` (N_c,): the video row of each caption.
    """

    bases: np.ndarray
    video_groups: np.ndarray
    caption_groups: np.ndarray
    owners: np.ndarray

    @property
    def videos(self) -> np.ndarray:
        return signed_zero_copies(self.bases[self.video_groups])

    @property
    def captions(self) -> np.ndarray:
        return signed_zero_copies(self.bases[self.caption_groups])

    def positives(self) -> tuple[list[list[int]], list[list[int]]]:
        """Each caption's video (t2v) and each video's captions (v2t), as gallery rows."""
        t2v = [[int(owner)] for owner in self.owners]
        v2t = [np.flatnonzero(self.owners == v).tolist() for v in range(len(self.video_groups))]
        return t2v, v2t

    def scores(self) -> np.ndarray:
        """(N_c, N_v) float64 cosines, one per pair of groups: identical rows tie exactly."""
        unit = self.bases.astype(np.float64)
        unit /= np.linalg.norm(unit, axis=1, keepdims=True)
        return (unit @ unit.T)[np.ix_(self.caption_groups, self.video_groups)]

    def expected_ranks(self, ties: str) -> tuple[list[float], list[float]]:
        """Brute-force (t2v, v2t) ranks from the group cosines, which must order every positive
        against every other item beyond float32 rounding (checked)."""
        scores = self.scores()
        t2v_positives, v2t_positives = self.positives()
        assert well_separated(scores.tolist(), t2v_positives)
        assert well_separated(scores.T.tolist(), v2t_positives)
        return (
            brute_force_ranks(scores.tolist(), t2v_positives, ties),
            brute_force_ranks(scores.T.tolist(), v2t_positives, ties),
        )


def signed_zero_copies(rows: np.ndarray) -> np.ndarray:
    """`rows` with every other row's zero entries written as -0.0: equal values, other bits."""
    copies = rows.copy()
    copies[1::2] = np.where(copies[1::2] == 0, np.float32(-0.0), copies[1::2])
    return copies


def scattered_split(seed: int = 8) -> TiedSplit:
    """500 captions of 30 distinct vectors and 200 videos of 40, placed at random rows; 10
    of the vectors are shared by captions and videos, and a tenth of all entries are zero."""
    rng = np.random.default_rng(seed)
    bases = rng.standard_normal((60, TIED_DIM)).astype(np.float32)
    bases[rng.random(bases.shape) < 0.1] = 0.0
    owners = rng.permutation(np.concatenate([np.arange(200), rng.integers(0, 200, 300)]))
    return TiedSplit(bases, rng.integers(0, 40, 200), rng.integers(30, 60, 500), owners)


def demo_like_split(seed: int = 28, shared_texts: int = 31, noise: float = 10.0) -> TiedSplit:
    """The demo's test split: 48 videos with 5 captions each, in file order; `shared_texts`
    caption texts recur under 2 or 3 different videos (one embedding per text). A caption
    embeds its video (or the mean of its videos) plus Gaussian noise."""
    rng = np.random.default_rng(seed)
    n_videos, per_video = 48, 5
    video_bases = rng.standard_normal((n_videos, TIED_DIM))
    owners = np.repeat(np.arange(n_videos), per_video)
    text_of_caption = np.arange(len(owners))  # caption row -> text; row i starts as text i
    free = [list(range(v * per_video, (v + 1) * per_video)) for v in range(n_videos)]
    text_vectors = list(video_bases[owners])
    for _ in range(shared_texts):
        with_free_slots = [video for video in range(n_videos) if free[video]]
        videos = rng.choice(with_free_slots, size=rng.integers(2, 4), replace=False)
        rows = [free[video].pop() for video in videos]
        text_of_caption[rows] = rows[0]
        text_vectors[rows[0]] = video_bases[videos].mean(axis=0)
    texts, caption_groups = np.unique(text_of_caption, return_inverse=True)
    text_bases = np.array(text_vectors)[texts] + noise * rng.standard_normal((len(texts), TIED_DIM))
    bases = np.concatenate([video_bases, text_bases]).astype(np.float32)
    return TiedSplit(bases, np.arange(n_videos), caption_groups + n_videos, owners)


def same_vector_split(n: int = 1000) -> TiedSplit:
    """`n` videos with one caption each, every one the same vector (a collapsed model)."""
    base = np.random.default_rng(4).standard_normal((1, TIED_DIM)).astype(np.float32)
    return TiedSplit(base, np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64), np.arange(n))


TIED_SPLITS: dict[str, Callable[[], TiedSplit]] = {
    "scattered": scattered_split,
    "demo": demo_like_split,
    "same": same_vector_split,
}


@functools.cache
def expected_split_ranks(name: str, ties: str) -> tuple[list[float], list[float]]:
    """(t2v, v2t) reference ranks of a TIED_SPLITS split; for "same", by counting: every
    caption and video ties with all N items, one of them its positive."""
    split = TIED_SPLITS[name]()
    if name != "same":
        return split.expected_ranks(ties)
    n = len(split.owners)
    rank = (n + 1) / 2 if ties == "average" else 1.0
    return [rank] * n, [rank] * n


def first_of_group(groups: np.ndarray) -> np.ndarray:
    """(N,) the first row of each row's group: rows i and first[i] are identical."""
    _, first, inverse = np.unique(groups, return_index=True, return_inverse=True)
    return first[inverse]


def run_child(tmp_path: Path, device: str, environment: dict[str, str]) -> tuple[str, dict]:
    """Rank every TIED_SPLITS split on `device` in a fresh Python with `environment` (BLAS
    settings) set; returns the child's OpenBLAS core name ("" if none) and its results:
    "{split}/{torch threads}/scores" and "{split}/{torch threads}/{ties}/{path}/{direction}"."""
    for name, build in TIED_SPLITS.items():
        split = build()
        np.savez(tmp_path / name, videos=split.videos, captions=split.captions, owners=split.owners)
    inherited = {
        key: value for key, value in os.environ.items() if not key.startswith(BLAS_VARIABLES)
    }
    completed = subprocess.run(
        [sys.executable, "-c", CHILD_SCRIPT, device, str(tmp_path), *TIED_SPLITS],
        env={**inherited, **environment},
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    with np.load(tmp_path / "results.npz") as results:
        return completed.stdout.strip(), {key: results[key] for key in results.files}


def cpu_flags() -> set[str]:
    """The CPU's feature flags as Linux lists them; empty elsewhere."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    return next(
        (set(line.split(":")[1].split()) for line in lines if line.startswith("flags")), set()
    )


def assert_ties_counted_exactly(results: dict[str, np.ndarray], blas: str) -> None:
    """Every rank equals the brute-force reference, and identical pairs share one score."""
    assert results
    wrong = []
    for key, values in results.items():
        name, _, *what = key.split("/")
        if what == ["scores"]:
            split = TIED_SPLITS[name]()
            rows, columns = first_of_group(split.caption_groups), first_of_group(split.video_groups)
            expected = values[np.ix_(rows, columns)]
        else:
            ties, _, direction = what
            expected = expected_split_ranks(name, ties)[DIRECTIONS.index(direction)]
        if not np.array_equal(values, expected):
            wrong.append(key)
    assert not wrong, f"ties miscounted with {blas} in {wrong}"


@pytest.mark.parametrize(
    ("core", "threads"),
    [(None, 2), ("Haswell", 1), ("Haswell", 2), ("SandyBridge", 1), ("Prescott", 2)],
)
def test_identical_rows_tie_exactly_under_each_openblas_kernel(
    tmp_path: Path, core: str | None, threads: int
) -> None:
    environment = {"OPENBLAS_NUM_THREADS": str(threads)}
    if core:
        names, flags = OPENBLAS_CORES[core]
        if not flags <= cpu_flags():
            pytest.skip(f"this CPU lacks {sorted(flags)}, needed by OpenBLAS's {core} kernels")
        environment["OPENBLAS_CORETYPE"] = core
    ran, results = run_child(tmp_path, "cpu", environment)
    if core and ran.lower() not in names:
        pytest.skip(f"numpy's BLAS ran core {ran!r} (empty: not OpenBLAS), not {core}")
    assert_ties_counted_exactly(results, f"OpenBLAS core {ran or '?'}, {threads} thread(s)")


@pytest.mark.parametrize("device", ["cpu:0", "cuda"])
def test_identical_rows_tie_exactly_on_the_torch_path(tmp_path: Path, device: str) -> None:
    """On the CPU, MKL_ENABLE_INSTRUCTIONS=AVX2 makes torch's matmul use an MKL kernel whose
    rounding depends on the column; the child ranks with 1 and 2 torch threads."""
    nvidia = Path("/proc/driver/nvidia/version").exists()  # checked before importing torch
    if device == "cuda" and not (nvidia and pytest.importorskip("torch").cuda.is_available()):
        pytest.skip("no CUDA device")
    _, results = run_child(tmp_path, device, {"MKL_ENABLE_INSTRUCTIONS": "AVX2"})
    assert_ties_counted_exactly(results, f"torch on {device}")
