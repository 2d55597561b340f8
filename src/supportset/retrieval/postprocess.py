"""Test-time post-processing of retrieval scores, reported apart from the raw metrics.

Two published re-scorings of the query-gallery cosine similarities s_qj, each an option of
the evaluation (``EvaluationConfig.postprocess``) whose metrics go under their own key and
table rows under their own name, never in place of the raw ones:

``dsl``: dual-softmax inference (Cheng et al., 2021, "Improving Video-Text Retrieval by
Multi-Stream Corpus Alignment and Dual Softmax Loss", arXiv:2109.04290, CAMoE). Each pair's
similarity is multiplied by a prior that corrects the similarity matrix: a softmax of the
similarities over the *other* axis, over every query for one gallery item::

    s'_qj = s_qj * exp(s_qj / T) / sum_q' exp(s_q'j / T)

(the authors' DSL.py, github.com/starmemda/CAMoE, also multiplies by the number of queries,
a constant that changes no rank). There the prior is applied in the training loss to CLIP
logits, 100 x cosine, with temp=1000; at test time, CLIP-based retrieval code applies it to
the test cosines scaled by CLIP's logit scale, ``sim * softmax(100 * sim, axis=0)`` (CLIP-ViP,
github.com/microsoft/XPretrain, CLIP-ViP/src/tasks/run_video_retrieval.py): T = 0.01, the
default here. The sum runs over all the test queries of the direction (captions for
text-to-video, videos for video-to-text; CLIP-ViP reads video-to-text off the text-to-video
revised matrix, whose prior then normalises over the gallery): each query's scores depend on
the others, which is why it is reported apart.

``qbnorm``: Querybank Normalisation with the Dynamic Inverted Softmax (Bogolin et al.,
CVPR 2022, "Cross Modal Retrieval with Querybank Normalisation", arXiv:2112.12777; official
code github.com/ioanacroi/qb-norm, dynamic_inverted_softmax.py). A bank B of training
queries probes the gallery, p_bj = cos(b, g_j); the inverted softmax divides by how strongly
the bank retrieves each gallery item, which tames hubs::

    s'_qj = exp(beta * s_qj) / sum_{b in B} exp(beta * p_bj)

The Dynamic Inverted Softmax applies it only to a query whose top-1 gallery item is in the
activation set A, the gallery items among the top k of some bank query; other queries keep
their raw scores. The official defaults are beta = 20, k = 1. Scores are ranked by their
logarithm, beta * s_qj - log sum_b exp(beta * p_bj), the same order without overflow.

Ranks of re-scored queries are counted as ``search`` counts raw ones (``ranks_in_block``):
the same positives and the same tie rule. Everything is computed block by block over the
queries (``ranks.score_blocks``, float64 re-scored blocks), on the CPU.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from supportset.retrieval.embeddings import read_caption_embeddings, read_video_embeddings
from supportset.retrieval.ranks import score_blocks, top_k_rows
from supportset.retrieval.search import BLOCK_BYTES, TieMode

log = logging.getLogger(__name__)

POSTPROCESSORS: tuple[str, ...] = ("dsl", "qbnorm")
POSTPROCESS_LABELS: dict[str, str] = {"dsl": "DSL", "qbnorm": "QB-Norm"}  # table row suffixes


@dataclass(frozen=True)
class QueryBank:
    """QB-Norm's query banks, embeddings of the splits the model was trained on:
    ``captions`` (M_c, D) probe the test videos (t2v), ``videos`` (M_v, D) the test captions
    (v2t)."""

    captions: np.ndarray
    videos: np.ndarray

    def for_direction(self, direction: str) -> np.ndarray:
        """The bank whose queries are of the kind of `direction`'s queries."""
        return self.captions if direction == "t2v" else self.videos


def read_query_bank(
    postprocess: Sequence[str], captions_paths: Sequence[str], videos_paths: Sequence[str]
) -> QueryBank | None:
    """The query bank from the training splits' embedding files (one of each kind per
    split trained on, concatenated) when ``qbnorm`` is among `postprocess`, else None.
    Raises ValueError when qbnorm lacks files, files are given without qbnorm, or their
    embeddings differ in width (naming the file)."""
    given = [*captions_paths, *videos_paths]
    if "qbnorm" not in postprocess:
        if given:
            raise ValueError(
                "query bank files given but the settings' postprocess does not include 'qbnorm'"
            )
        return None
    if not captions_paths or not videos_paths:
        raise ValueError(
            "the settings' postprocess includes 'qbnorm' (in the DAG: a table's postprocess): "
            "give the training splits' embeddings as --query-bank-captions and "
            "--query-bank-videos"
        )
    captions = [(path, read_caption_embeddings(path)[2]) for path in captions_paths]
    videos = [(path, read_video_embeddings(path)[1]) for path in videos_paths]
    width = captions[0][1].shape[1]
    for path, embeddings in captions + videos:
        if embeddings.shape[1] != width:
            raise ValueError(
                f"query bank {path} has {embeddings.shape[1]}-dim embeddings, "
                f"{captions_paths[0]} {width}-dim"
            )
    return QueryBank(
        np.concatenate([emb for _, emb in captions]), np.concatenate([emb for _, emb in videos])
    )


def _log_sum_exp(values: np.ndarray) -> np.ndarray:
    """(N,) log sum over axis 0 of exp(values) for a (b, N) float64 block, overflow-free;
    `values` is overwritten."""
    peak = values.max(axis=0)
    values -= peak
    return peak + np.log(np.exp(values, out=values).sum(axis=0))


@dataclass(frozen=True)
class DualSoftmax:
    """Dual-softmax inference (see the module docstring) fitted to one direction:
    ``log_normaliser`` (N,) float64 holds log sum_q exp(s_qj / T) over all its queries."""

    temperature: float
    log_normaliser: np.ndarray

    @classmethod
    def fit(
        cls, queries: np.ndarray, gallery: np.ndarray, temperature: float,
        max_bytes: int = BLOCK_BYTES,
    ) -> DualSoftmax:  # fmt: skip
        """Sum the priors' denominators over the queries (Q, D), one block at a time.

        The prior multiplies the similarity, as published for CLIP's positive cosines: a
        negative similarity gets more negative the likelier its pair, which reverses the
        order of negative scores. That is logged as a warning with their share."""
        log_normaliser = np.full(len(gallery), -np.inf)
        negative = 0
        for _, scores in score_blocks(queries, gallery, max_bytes):
            negative += int(np.count_nonzero(scores < 0))
            block = _log_sum_exp(scores.astype(np.float64) / temperature)
            log_normaliser = np.logaddexp(log_normaliser, block)
        if negative:
            log.warning(
                "dsl: %.1f%% of the similarities are negative; the dual softmax multiplies "
                "them by its prior, which reverses their order (the method assumes positive "
                "similarities, as CLIP's are)",
                100.0 * negative / (len(queries) * len(gallery)),
            )
        return cls(temperature, log_normaliser)

    def revise(self, scores: np.ndarray) -> np.ndarray:
        """(b, N) float64 revised scores of a block of raw scores."""
        raw = scores.astype(np.float64)
        return raw * np.exp(raw / self.temperature - self.log_normaliser)


@dataclass(frozen=True)
class QueryBankNorm:
    """QB-Norm with the Dynamic Inverted Softmax (see the module docstring) fitted to one
    gallery: ``log_normaliser`` (N,) float64 holds log sum_b exp(beta * p_bj) over the bank,
    ``activated`` (N,) bool marks the activation set."""

    beta: float
    log_normaliser: np.ndarray
    activated: np.ndarray

    @classmethod
    def fit(
        cls, bank: np.ndarray, gallery: np.ndarray, beta: float, k: int,
        max_bytes: int = BLOCK_BYTES,
    ) -> QueryBankNorm:  # fmt: skip
        """Probe the gallery (N, D) with the bank (M, D), one block of bank queries at a time."""
        log_normaliser = np.full(len(gallery), -np.inf)
        activated = np.zeros(len(gallery), dtype=bool)
        for _, scores in score_blocks(bank, gallery, max_bytes):
            block = _log_sum_exp(beta * scores.astype(np.float64))
            log_normaliser = np.logaddexp(log_normaliser, block)
            activated[top_k_rows(scores, k)[0].ravel()] = True
        return cls(beta, log_normaliser, activated)

    def revise(self, scores: np.ndarray) -> np.ndarray:
        """(b, N) float64 scores of a block of raw scores: the log inverted softmax for the
        queries whose top-1 item is activated, the raw scores for the others."""
        revised = scores.astype(np.float64)
        normalised = self.activated[top_k_rows(scores, 1)[0][:, 0]]
        revised[normalised] = self.beta * revised[normalised] - self.log_normaliser
        return revised


def ranks_in_block(
    scores: np.ndarray, positives: np.ndarray, real: np.ndarray, ties: TieMode = "average"
) -> np.ndarray:
    """(b,) 1-based float64 ranks of each row's best positive in a (b, N) score block.

    ``positives`` (b, P) and ``real`` (b, P) as from ``search.padded_positives``. The rule of
    ``search``: 1 + #{negatives above the best positive's score s*} (+ half the negatives
    equal to s* when ``ties="average"``), other positives never counting.
    """
    positive_scores = np.take_along_axis(scores, positives, axis=1)  # (b, P)
    best = positive_scores.max(axis=1, keepdims=True)  # padding repeats a real positive
    on_best = np.count_nonzero((positive_scores == best) & real, axis=1)
    greater = np.count_nonzero(scores > best, axis=1)
    ranks = 1.0 + greater.astype(np.float64)
    if ties == "average":
        ranks += (np.count_nonzero(scores == best, axis=1) - on_best) / 2.0
    return ranks
