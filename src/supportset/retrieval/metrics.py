"""Retrieval metrics: recall at K, median and mean rank, in both directions.

The metrics JSON holds one summary per direction::

    {"t2v": {"R@1": ..., "R@5": ..., "R@10": ..., "R@50": ..., "MdR": ..., "MnR": ...,
             "n_queries": ...},
     "v2t": {...}}

R@K is a percentage, MdR and MnR are 1-based ranks (halves possible with averaged ties, see
``search``) and ``n_queries`` an integer.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from supportset.io import atomic_path
from supportset.retrieval.embeddings import check_pair
from supportset.retrieval.search import TieMode, ranks_of_positives

DEFAULT_KS: tuple[int, ...] = (1, 5, 10, 50)
DIRECTIONS: tuple[str, ...] = ("t2v", "v2t")


def recall_summary(ranks: np.ndarray, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float | int]:
    """Summarise (Q,) 1-based ranks.

    Returns ``R@K`` for each K in ``ks`` (percent of queries with rank <= K), ``MdR``
    (median rank), ``MnR`` (mean rank) and ``n_queries`` (Q).
    """
    values = np.asarray(ranks, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"expected a non-empty 1-D array of ranks, got shape {values.shape}")
    if not np.isfinite(values).all() or (values < 1).any():
        raise ValueError("ranks must be finite and at least 1")
    summary: dict[str, float | int] = {f"R@{k}": float(100.0 * np.mean(values <= k)) for k in ks}
    summary["MdR"] = float(np.median(values))
    summary["MnR"] = float(np.mean(values))
    summary["n_queries"] = int(values.size)
    return summary


def _caption_rows_per_video(
    video_ids: Sequence[str], caption_video_ids: Sequence[str]
) -> list[np.ndarray]:
    """For each video, the row indices of its captions."""
    rows: dict[str, list[int]] = {video: [] for video in video_ids}
    for caption_row, video in enumerate(caption_video_ids):
        rows[video].append(caption_row)
    return [np.asarray(rows[video], dtype=np.int64) for video in video_ids]


def evaluate_embeddings(
    video_ids: Sequence[str],
    video_emb: np.ndarray,
    caption_ids: Sequence[str],
    caption_video_ids: Sequence[str],
    caption_emb: np.ndarray,
    ties: TieMode = "average",
    block: int = 1024,
    use_gpu: bool = False,
) -> dict[str, dict[str, float | int]]:
    """Text-to-video and video-to-text retrieval metrics of one split.

    ``video_emb`` (N_v, D) and ``caption_emb`` (N_c, D) hold one row per id;
    ``caption_video_ids`` (N_c) names each caption's video. t2v: every caption ranks all
    videos, its own being the positive. v2t: every video ranks all captions; its rank is that
    of its best-ranked caption. Returns the metrics JSON shape (see the module docstring).
    """
    check_pair(video_ids, video_emb, caption_ids, caption_video_ids, caption_emb)
    row_of_video = {video: row for row, video in enumerate(video_ids)}
    video_of_caption = [np.array([row_of_video[video]]) for video in caption_video_ids]
    captions_of_video = _caption_rows_per_video(video_ids, caption_video_ids)
    search_options = {"block": block, "ties": ties, "use_gpu": use_gpu}
    t2v = ranks_of_positives(caption_emb, video_emb, video_of_caption, **search_options)
    v2t = ranks_of_positives(video_emb, caption_emb, captions_of_video, **search_options)
    return {"t2v": recall_summary(t2v), "v2t": recall_summary(v2t)}


def _plain_summary(direction: str, summary: dict[str, Any]) -> dict[str, float | int]:
    """Copy of one direction's summary with Python floats and an int ``n_queries``."""
    if "n_queries" not in summary:
        raise ValueError(f"metrics[{direction!r}] has no n_queries")
    return {
        key: int(value) if key == "n_queries" else float(value) for key, value in summary.items()
    }


def write_metrics(path: str | os.PathLike[str], metrics: dict[str, dict[str, Any]]) -> None:
    """Atomically write ``metrics`` (as returned by ``evaluate_embeddings``) as JSON."""
    missing = [direction for direction in DIRECTIONS if direction not in metrics]
    if missing:
        raise ValueError(f"metrics lack direction(s) {missing}")
    plain = {direction: _plain_summary(direction, metrics[direction]) for direction in DIRECTIONS}
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(plain, indent=2) + "\n", encoding="utf-8")
