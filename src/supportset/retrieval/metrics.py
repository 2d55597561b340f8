"""Retrieval metrics: recall at K, median and mean rank, in both directions.

The metrics JSON holds one summary per direction::

    {"t2v": {"R@1": ..., "R@5": ..., "R@10": ..., "R@50": ..., "MdR": ..., "MnR": ...,
             "n_queries": ..., "CI95": {"R@1": [low, high], ...}},
     "v2t": {...},
     "protocol": "multi-caption",
     "index": {"kind": "hnsw", "t2v": {"R@1": ..., "recall@50_vs_exact": ...}, "v2t": {...}},
     "postprocessed": {"dsl": {"t2v": {...}, "v2t": {...}}, "qbnorm": {...}}}

R@K is a percentage, MdR and MnR are 1-based ranks (halves possible with averaged ties, see
``search``) and ``n_queries`` an integer. ``CI95`` (bootstrap intervals over the queries)
appears when asked for; ``index`` when an approximate FAISS index is evaluated beside the
exact metrics, which it never replaces; ``postprocessed`` holds the summaries of the
re-scorings asked for (``postprocess``: dual softmax, querybank normalisation), which never
replace the raw ones either. ``evaluate_split_with_ranks`` also returns the per-query
results of the ranks file (see ``ranks``).

Protocols (which captions are queries): ``multi-caption`` (every caption; MSVD, VATEX and
the demo), ``one-caption`` (each video's first caption in file order; MSR-VTT 1k-A, whose
test videos carry one caption each), ``paragraph`` (ActivityNet: each video must have
exactly one caption, its paragraph).
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from supportset.io import atomic_path
from supportset.retrieval.embeddings import check_pair, format_ids
from supportset.retrieval.index import IndexConfig, build_index, recall_against_exact, top_k
from supportset.retrieval.postprocess import (
    POSTPROCESSORS,
    DualSoftmax,
    QueryBank,
    QueryBankNorm,
    ranks_in_block,
)
from supportset.retrieval.ranks import (
    TOP,
    Direction,
    direction_table,
    score_blocks,
    split_directions,
    top_k_rows,
)
from supportset.retrieval.search import (
    BLOCK_BYTES,
    TieMode,
    caption_owners,
    padded_positives,
    ranks_both_ways,
)

log = logging.getLogger(__name__)

DEFAULT_KS: tuple[int, ...] = (1, 5, 10, 50)
DIRECTIONS: tuple[str, ...] = ("t2v", "v2t")
PROTOCOLS: tuple[str, ...] = ("multi-caption", "one-caption", "paragraph")


@dataclass(frozen=True)
class EvaluationConfig:
    protocol: str = "multi-caption"  # which captions are queries (see the module docstring)
    ties: str = "average"  # average (expected rank among ties) | optimistic
    bootstrap: int = 0  # resamples of the queries for 95% intervals of R@K; 0 = none
    seed: int = 0  # of the bootstrap resampling
    index: str = "flat"  # flat (exact only) | ivf | hnsw: also R@K from that FAISS index
    ivf_lists: int = 0  # IVF cells; 0 = 4 * sqrt(N)
    ivf_probe: int = 32  # IVF cells visited per query
    hnsw_neighbours: int = 32  # HNSW links per node (M)
    hnsw_ef_search: int = 128  # HNSW candidate list length while searching
    postprocess: list[str] = field(default_factory=list)  # also reported apart: dsl | qbnorm
    dsl_temperature: float = 0.01  # DSL prior's softmax temperature on cosines (CLIP's 1/100)
    qbnorm_beta: float = 20.0  # QB-Norm's inverse temperature beta (the official default)
    qbnorm_k: int = 1  # QB-Norm's activation set: each bank query's top k (official default)

    def __post_init__(self) -> None:
        unknown = [name for name in self.postprocess if name not in POSTPROCESSORS]
        if unknown or len(set(self.postprocess)) < len(self.postprocess):
            raise ValueError(
                f"postprocess must name each of {POSTPROCESSORS} at most once, "
                f"got {self.postprocess}"
            )
        if self.dsl_temperature <= 0 or self.qbnorm_beta <= 0 or self.qbnorm_k < 1:
            raise ValueError(
                "dsl_temperature and qbnorm_beta must be positive and qbnorm_k at least 1, "
                f"got {self.dsl_temperature}, {self.qbnorm_beta}, {self.qbnorm_k}"
            )

    def index_config(self) -> IndexConfig:
        return IndexConfig(
            self.index, self.ivf_lists, self.ivf_probe, self.hnsw_neighbours, self.hnsw_ef_search
        )


def recall_summary(ranks: np.ndarray, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float | int]:
    """Summarise (Q,) 1-based ranks.

    Returns ``R@K`` for each K in ``ks`` (percent of queries with rank <= K), ``MdR``
    (median rank), ``MnR`` (mean rank) and ``n_queries`` (Q).
    """
    values = _checked_ranks(ranks)
    summary: dict[str, float | int] = {f"R@{k}": float(100.0 * np.mean(values <= k)) for k in ks}
    summary["MdR"] = float(np.median(values))
    summary["MnR"] = float(np.mean(values))
    summary["n_queries"] = int(values.size)
    return summary


def _checked_ranks(ranks: np.ndarray) -> np.ndarray:
    values = np.asarray(ranks, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"expected a non-empty 1-D array of ranks, got shape {values.shape}")
    if not np.isfinite(values).all() or (values < 1).any():
        raise ValueError("ranks must be finite and at least 1")
    return values


def bootstrap_intervals(
    ranks: np.ndarray, resamples: int, seed: int = 0, ks: Sequence[int] = DEFAULT_KS
) -> dict[str, list[float]]:
    """95% percentile intervals of R@K over `resamples` resamplings of the queries (with
    replacement, the same size): {"R@K": [low, high]} in percent."""
    values = _checked_ranks(ranks)
    rng = np.random.default_rng(seed)
    hits = np.stack([values <= k for k in ks], axis=1).astype(np.float64)  # (Q, K)
    estimates = np.empty((resamples, len(ks)))
    for start in range(0, resamples, 64):  # (64, Q) draws at a time bound the memory
        count = min(64, resamples - start)
        draws = rng.integers(0, len(values), size=(count, len(values)))
        estimates[start : start + count] = 100.0 * hits[draws].mean(axis=1)
    low, high = np.percentile(estimates, [2.5, 97.5], axis=0)
    return {f"R@{k}": [float(a), float(b)] for k, a, b in zip(ks, low, high, strict=True)}


def apply_protocol(
    protocol: str,
    video_ids: Sequence[str],
    caption_ids: Sequence[str],
    caption_video_ids: Sequence[str],
    caption_emb: np.ndarray,
) -> tuple[list[str], list[str], np.ndarray]:
    """The captions that are queries under `protocol`: (ids, video ids, (N, D) rows)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if protocol == "multi-caption":
        return list(caption_ids), list(caption_video_ids), caption_emb
    first: dict[str, int] = {}
    for row, video in enumerate(caption_video_ids):
        first.setdefault(video, row)
    if protocol == "paragraph" and len(first) < len(caption_ids):
        counts = Counter(caption_video_ids)
        several = [video for video in video_ids if counts[video] > 1]
        raise ValueError(
            f"protocol 'paragraph' needs one caption (the paragraph) per video; "
            f"videos {format_ids(several)} have several"
        )
    rows = sorted(first.values())
    if len(rows) < len(caption_ids):
        log.info(
            "protocol %s: %d of %d captions are queries", protocol, len(rows), len(caption_ids)
        )
    return [caption_ids[r] for r in rows], [caption_video_ids[r] for r in rows], caption_emb[rows]


def evaluate_embeddings(
    video_ids: Sequence[str],
    video_emb: np.ndarray,
    caption_ids: Sequence[str],
    caption_video_ids: Sequence[str],
    caption_emb: np.ndarray,
    ties: TieMode = "average",
    device: str = "cpu",
    max_bytes: int = BLOCK_BYTES,
) -> dict[str, dict[str, float | int]]:
    """Text-to-video and video-to-text retrieval metrics of one split.

    ``video_emb`` (N_v, D) and ``caption_emb`` (N_c, D) hold one row per id;
    ``caption_video_ids`` (N_c) names each caption's video. t2v: every caption ranks all
    videos, its own being the positive. v2t: every video ranks all captions; its rank is that
    of its best-ranked caption. ``max_bytes`` bounds the scores held at once (see
    ``search.ranks_both_ways``). Returns the metrics JSON shape (see the module docstring).
    """
    t2v, v2t = direction_ranks(
        video_ids, video_emb, caption_ids, caption_video_ids, caption_emb, ties, device, max_bytes
    )
    return {"t2v": recall_summary(t2v), "v2t": recall_summary(v2t)}


def direction_ranks(
    video_ids: Sequence[str],
    video_emb: np.ndarray,
    caption_ids: Sequence[str],
    caption_video_ids: Sequence[str],
    caption_emb: np.ndarray,
    ties: TieMode = "average",
    device: str = "cpu",
    max_bytes: int = BLOCK_BYTES,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact (N_c,) text-to-video and (N_v,) video-to-text ranks (see evaluate_embeddings)."""
    check_pair(video_ids, video_emb, caption_ids, caption_video_ids, caption_emb)
    owners = caption_owners(video_ids, caption_video_ids)
    return ranks_both_ways(video_emb, caption_emb, owners, ties, device, max_bytes)


def evaluate_split(
    video_ids: Sequence[str],
    video_emb: np.ndarray,
    caption_ids: Sequence[str],
    caption_video_ids: Sequence[str],
    caption_emb: np.ndarray,
    config: EvaluationConfig = EvaluationConfig(),
    device: str = "cpu",
    query_bank: QueryBank | None = None,
) -> dict[str, Any]:
    """The metrics JSON of one split under `config`: protocol, exact metrics, optional
    bootstrap intervals, for an approximate index its own R@K and recall, and the metrics
    of each post-processing asked for (``qbnorm`` needs `query_bank`)."""
    metrics, _ = _evaluate(
        video_ids, video_emb, caption_ids, caption_video_ids, caption_emb,
        config, device, query_bank, False, BLOCK_BYTES,
    )  # fmt: skip
    return metrics


def evaluate_split_with_ranks(
    video_ids: Sequence[str],
    video_emb: np.ndarray,
    caption_ids: Sequence[str],
    caption_video_ids: Sequence[str],
    caption_emb: np.ndarray,
    config: EvaluationConfig = EvaluationConfig(),
    device: str = "cpu",
    query_bank: QueryBank | None = None,
    max_bytes: int = BLOCK_BYTES,
) -> tuple[dict[str, Any], pa.Table]:
    """``evaluate_split``'s metrics and the ranks file's table (``ranks.RANKS_SCHEMA``: t2v
    rows, then v2t rows, queries in protocol order), whose ``rank`` column holds the very
    ranks the metrics summarise. The top items and the post-processed ranks of a direction
    come from one pass over its scores; ``max_bytes`` bounds the scores held at once."""
    metrics, tables = _evaluate(
        video_ids, video_emb, caption_ids, caption_video_ids, caption_emb,
        config, device, query_bank, True, max_bytes,
    )  # fmt: skip
    return metrics, pa.concat_tables(tables)


def _evaluate(
    video_ids: Sequence[str],
    video_emb: np.ndarray,
    caption_ids: Sequence[str],
    caption_video_ids: Sequence[str],
    caption_emb: np.ndarray,
    config: EvaluationConfig,
    device: str,
    query_bank: QueryBank | None,
    with_ranks: bool,
    max_bytes: int,
) -> tuple[dict[str, Any], list[pa.Table]]:
    """The metrics JSON and, when `with_ranks`, the ranks table of each direction (see the
    two callers)."""
    if "qbnorm" in config.postprocess and query_bank is None:
        raise ValueError("postprocess includes 'qbnorm' but no query bank was given")
    caption_ids, caption_video_ids, caption_emb = apply_protocol(
        config.protocol, video_ids, caption_ids, caption_video_ids, caption_emb
    )
    ranks = direction_ranks(
        video_ids, video_emb, caption_ids, caption_video_ids, caption_emb, config.ties, device,
        max_bytes,
    )  # fmt: skip
    metrics: dict[str, Any] = {
        direction: _summary(direction_rank, config)
        for direction, direction_rank in zip(DIRECTIONS, ranks, strict=True)
    }
    metrics["protocol"] = config.protocol
    if config.index != "flat":
        metrics["index"] = index_report(
            config.index_config(), video_ids, video_emb, caption_video_ids, caption_emb, device
        )
    if not (with_ranks or config.postprocess):
        return metrics, []
    directions = split_directions(video_ids, video_emb, caption_ids, caption_video_ids, caption_emb)
    tables = []
    postprocessed: dict[str, dict[str, Any]] = {name: {} for name in config.postprocess}
    for direction, direction_rank in zip(directions, ranks, strict=True):
        revisers = _revisers(config, direction, query_bank, max_bytes)
        top, revised_ranks = _direction_pass(
            direction, revisers, config.ties, with_ranks, max_bytes
        )
        for name, revised in revised_ranks.items():
            postprocessed[name][direction.name] = _summary(revised, config)
        if top is not None:
            tables.append(direction_table(direction, direction_rank, *top))
    if postprocessed:
        metrics["postprocessed"] = postprocessed
    return metrics, tables


def _summary(ranks: np.ndarray, config: EvaluationConfig) -> dict[str, Any]:
    """``recall_summary`` of (Q,) ranks, with ``CI95`` when `config` asks for a bootstrap."""
    summary: dict[str, Any] = recall_summary(ranks)
    if config.bootstrap:
        summary["CI95"] = bootstrap_intervals(ranks, config.bootstrap, config.seed)
    return summary


def _revisers(
    config: EvaluationConfig, direction: Direction, query_bank: QueryBank | None, max_bytes: int
) -> dict[str, DualSoftmax | QueryBankNorm]:
    """The post-processings of `config`, fitted to `direction` (in `config`'s order)."""
    revisers: dict[str, DualSoftmax | QueryBankNorm] = {}
    for name in config.postprocess:
        if name == "dsl":
            revisers[name] = DualSoftmax.fit(
                direction.queries, direction.gallery, config.dsl_temperature, max_bytes
            )
        else:
            assert query_bank is not None  # checked by _evaluate
            revisers[name] = QueryBankNorm.fit(
                query_bank.for_direction(direction.name), direction.gallery,
                config.qbnorm_beta, config.qbnorm_k, max_bytes,
            )  # fmt: skip
    return revisers


def _direction_pass(
    direction: Direction,
    revisers: dict[str, DualSoftmax | QueryBankNorm],
    ties: TieMode,
    with_top: bool,
    max_bytes: int,
) -> tuple[tuple[np.ndarray, np.ndarray] | None, dict[str, np.ndarray]]:
    """One pass over a direction's score blocks: when `with_top`, each query's ``TOP`` best
    gallery rows (Q, k) and their scores (Q, k); and each reviser's (Q,) ranks."""
    n_queries = len(direction.query_ids)
    k = min(TOP, len(direction.gallery_ids))
    top_columns = np.empty((n_queries, k), dtype=np.int64)
    top_scores = np.empty((n_queries, k), dtype=np.float32)
    revised_ranks = {name: np.empty(n_queries) for name in revisers}
    positives, real = padded_positives(
        direction.positives, len(direction.queries), len(direction.gallery)
    )
    for rows, scores in score_blocks(direction.queries, direction.gallery, max_bytes):
        if with_top:
            top_columns[rows], top_scores[rows] = top_k_rows(scores, TOP)
        for name, reviser in revisers.items():
            revised_ranks[name][rows] = ranks_in_block(
                reviser.revise(scores), positives[rows], real[rows], ties
            )
    return ((top_columns, top_scores) if with_top else None), revised_ranks


def index_report(
    config: IndexConfig,
    video_ids: Sequence[str],
    video_emb: np.ndarray,
    caption_video_ids: Sequence[str],
    caption_emb: np.ndarray,
    device: str = "cpu",
) -> dict[str, Any]:
    """R@K by top-K search in an approximate index (a positive not found counts as a
    miss), and the index's recall of the exact top-K, in both directions."""
    use_gpu = device.startswith("cuda")
    caption_owner = caption_owners(video_ids, caption_video_ids)
    k = max(DEFAULT_KS)
    report: dict[str, Any] = asdict(config)
    problems = {
        "t2v": (caption_emb, video_emb, lambda found: found == caption_owner[:, None]),
        "v2t": (
            video_emb,
            caption_emb,
            lambda found: caption_owner[found] == np.arange(len(video_emb))[:, None],
        ),
    }
    for direction, (queries, gallery, is_positive) in problems.items():
        _, approximate = top_k(build_index(gallery, config, use_gpu), queries, k)
        _, exact = top_k(build_index(gallery, IndexConfig(), use_gpu), queries, k)
        hits = is_positive(approximate) & (approximate >= 0)
        summary = {f"R@{j}": float(100.0 * hits[:, :j].any(axis=1).mean()) for j in DEFAULT_KS}
        summary[f"recall@{k}_vs_exact"] = recall_against_exact(approximate, exact)
        report[direction] = summary
    return report


def _plain(value: Any) -> Any:
    """JSON-ready copy: numpy scalars as Python numbers, recursively."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def write_metrics(path: str | os.PathLike[str], metrics: dict[str, Any]) -> None:
    """Atomically write ``metrics`` (as returned by ``evaluate_split``) as JSON."""
    missing = [direction for direction in DIRECTIONS if direction not in metrics]
    if missing:
        raise ValueError(f"metrics lack direction(s) {missing}")
    plain = _plain(metrics)
    for direction in DIRECTIONS:
        if "n_queries" not in plain[direction]:
            raise ValueError(f"metrics[{direction!r}] has no n_queries")
        plain[direction]["n_queries"] = int(plain[direction]["n_queries"])
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(plain, indent=2) + "\n", encoding="utf-8")
