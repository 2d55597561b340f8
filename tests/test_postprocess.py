"""Dual softmax and QB-Norm against loops written from the papers' formulas; raw numbers
stay as they are."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from test_ranks_file import tied_split
from test_search import brute_force_ranks

from supportset.cli import main
from supportset.retrieval.embeddings import write_caption_embeddings, write_video_embeddings
from supportset.retrieval.metrics import (
    EvaluationConfig,
    direction_ranks,
    evaluate_split,
    recall_summary,
)
from supportset.retrieval.postprocess import (
    DualSoftmax,
    QueryBank,
    QueryBankNorm,
    ranks_in_block,
)
from supportset.retrieval.ranks import score_blocks, split_directions
from supportset.retrieval.search import cosine_scores, padded_positives

TEMPERATURE, BETA = 0.01, 20.0


def dsl_reference(scores: list[list[float]], temperature: float) -> list[list[float]]:
    """Cheng et al. 2021: s'_qj = s_qj * exp(s_qj / T) / sum over queries q' of exp(s_q'j / T)."""
    n_gallery = len(scores[0])
    column_sums = [sum(math.exp(row[j] / temperature) for row in scores) for j in range(n_gallery)]
    return [
        [score * math.exp(score / temperature) / column_sums[j] for j, score in enumerate(row)]
        for row in scores
    ]


def qbnorm_reference(
    scores: list[list[float]], bank_scores: list[list[float]], beta: float, k: int
) -> tuple[list[list[float]], set[int], int]:
    """Bogolin et al. 2022, Dynamic Inverted Softmax: the activation set A holds each bank
    query's top k gallery items; a query whose top-1 item is in A gets
    exp(beta * s_qj) / sum over the bank of exp(beta * p_bj), the others keep s_qj.
    Returns the scores, A and the number of queries normalised (ties: first item)."""
    n_gallery = len(scores[0])
    activated: set[int] = set()
    for row in bank_scores:
        activated.update(sorted(range(n_gallery), key=lambda j: (-row[j], j))[:k])
    sums = [sum(math.exp(beta * row[j]) for row in bank_scores) for j in range(n_gallery)]
    revised, normalised = [], 0
    for row in scores:
        top1 = min(range(n_gallery), key=lambda j: (-row[j], j))
        if top1 in activated:
            revised.append([math.exp(beta * score) / sums[j] for j, score in enumerate(row)])
            normalised += 1
        else:
            revised.append(list(row))
    return revised, activated, normalised


def banks(seed: int = 5) -> QueryBank:
    """Training-like banks: noisy copies of the tied split's vectors (t2v: 80, v2t: 60)."""
    _, video_emb, _, _, caption_emb = tied_split()
    rng = np.random.default_rng(seed)

    def noisy(rows: np.ndarray, n: int) -> np.ndarray:
        picked = rows[rng.integers(0, len(rows), n)]
        return (picked + 1.5 * rng.standard_normal(picked.shape)).astype(np.float32)

    return QueryBank(captions=noisy(caption_emb, 80), videos=noisy(video_emb, 60))


def code_ranks(direction, reviser, ties: str) -> np.ndarray:
    """The (Q,) ranks of `direction` re-scored by `reviser`, block by block."""
    positives, real = padded_positives(
        direction.positives, len(direction.queries), len(direction.gallery)
    )
    ranks = np.empty(len(direction.query_ids))
    for rows, scores in score_blocks(direction.queries, direction.gallery, max_bytes=50_000):
        revised = reviser.revise(scores)
        ranks[rows] = ranks_in_block(revised, positives[rows], real[rows], ties)
    return ranks


def reference_positives(direction) -> list[list[int]]:
    return [rows.tolist() for rows in direction.positives]


@pytest.mark.parametrize("ties", ["average", "optimistic"])
def test_dual_softmax_matches_the_formula(ties: str) -> None:
    for direction in split_directions(*tied_split()):
        scores = cosine_scores(direction.queries, direction.gallery).astype(np.float64).tolist()
        reference = dsl_reference(scores, TEMPERATURE)
        expected = brute_force_ranks(reference, reference_positives(direction), ties)
        dsl = DualSoftmax.fit(direction.queries, direction.gallery, TEMPERATURE, 50_000)
        assert code_ranks(direction, dsl, ties).tolist() == expected
        raw = brute_force_ranks(scores, reference_positives(direction), ties)
        assert expected != raw  # the prior re-orders some queries


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("ties", ["average", "optimistic"])
def test_qbnorm_matches_the_dynamic_inverted_softmax(k: int, ties: str) -> None:
    bank = banks()
    for direction in split_directions(*tied_split()):
        probes = bank.for_direction(direction.name)
        scores = cosine_scores(direction.queries, direction.gallery).astype(np.float64).tolist()
        bank_scores = cosine_scores(probes, direction.gallery).astype(np.float64).tolist()
        reference, activated, normalised = qbnorm_reference(scores, bank_scores, BETA, k)
        assert 0 < normalised < len(scores)  # both branches of the dynamic rule are taken
        qbnorm = QueryBankNorm.fit(probes, direction.gallery, BETA, k, 50_000)
        assert set(np.flatnonzero(qbnorm.activated).tolist()) == activated
        expected = brute_force_ranks(reference, reference_positives(direction), ties)
        assert code_ranks(direction, qbnorm, ties).tolist() == expected


def test_the_activation_set_grows_with_k() -> None:
    bank = banks()
    gallery = split_directions(*tied_split())[0].gallery
    sizes = [
        QueryBankNorm.fit(bank.captions, gallery, BETA, k).activated.sum() for k in (1, 3, 200)
    ]
    assert sizes[0] < sizes[1] < sizes[2] == len(gallery)


@pytest.mark.parametrize("ties", ["average", "optimistic"])
def test_block_ranks_of_raw_scores_are_the_metrics_ranks(ties: str) -> None:
    """Post-processed ranks are counted as raw ones: the same positives, the same tie rule."""
    split = tied_split()
    exact = direction_ranks(*split, ties=ties)
    for direction, expected in zip(split_directions(*split), exact, strict=True):
        positives, real = padded_positives(
            direction.positives, len(direction.queries), len(direction.gallery)
        )
        ranks = np.empty(len(direction.query_ids))
        for rows, scores in score_blocks(direction.queries, direction.gallery, 30_000):
            ranks[rows] = ranks_in_block(scores, positives[rows], real[rows], ties)
        np.testing.assert_array_equal(ranks, expected)


def test_metrics_report_post_processing_apart_and_keep_the_raw_numbers() -> None:
    split, bank = tied_split(), banks()
    raw = evaluate_split(*split, EvaluationConfig(bootstrap=30))
    config = EvaluationConfig(bootstrap=30, postprocess=["dsl", "qbnorm"])
    both = evaluate_split(*split, config, query_bank=bank)
    assert "postprocessed" not in raw
    assert {key: value for key, value in both.items() if key != "postprocessed"} == raw
    assert list(both["postprocessed"]) == ["dsl", "qbnorm"]
    for direction in split_directions(*split):
        scores = cosine_scores(direction.queries, direction.gallery).astype(np.float64).tolist()
        probes = bank.for_direction(direction.name)
        bank_scores = cosine_scores(probes, direction.gallery).astype(np.float64).tolist()
        references = {
            "dsl": dsl_reference(scores, TEMPERATURE),
            "qbnorm": qbnorm_reference(scores, bank_scores, BETA, 1)[0],
        }
        for name, reference in references.items():
            ranks = brute_force_ranks(reference, reference_positives(direction), "average")
            summary = both["postprocessed"][name][direction.name]
            assert {key: summary[key] for key in summary if key != "CI95"} == pytest.approx(
                recall_summary(np.array(ranks))
            )
            assert set(summary["CI95"]) == set(raw[direction.name]["CI95"])
    only_dsl = evaluate_split(*split, EvaluationConfig(postprocess=["dsl"]))
    assert list(only_dsl["postprocessed"]) == ["dsl"]
    assert only_dsl["postprocessed"]["dsl"]["t2v"] == {
        key: value for key, value in both["postprocessed"]["dsl"]["t2v"].items() if key != "CI95"
    }


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"postprocess": ["softmax"]}, "postprocess must name each of"),
        ({"postprocess": ["dsl", "dsl"]}, "at most once"),
        ({"dsl_temperature": 0.0}, "must be positive"),
        ({"qbnorm_k": 0}, "qbnorm_k at least 1"),
    ],
)
def test_invalid_settings_are_rejected(settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EvaluationConfig(**settings)


def test_qbnorm_needs_a_query_bank() -> None:
    with pytest.raises(ValueError, match="'qbnorm' but no query bank"):
        evaluate_split(*tied_split(), EvaluationConfig(postprocess=["qbnorm"]))


def test_cli_takes_the_training_split_as_query_bank(tmp_path: Path, capsys) -> None:
    video_ids, video_emb, caption_ids, caption_video_ids, caption_emb = tied_split()
    bank = banks()
    paths = {name: tmp_path / f"{name}.parquet" for name in ("v", "c", "bv", "bc")}
    write_video_embeddings(paths["v"], video_ids, video_emb)
    write_caption_embeddings(paths["c"], caption_ids, caption_video_ids, caption_emb)
    bank_videos = [f"train{i}" for i in range(len(bank.videos))]
    write_video_embeddings(paths["bv"], bank_videos, bank.videos)
    bank_captions = [f"train_caption{i}" for i in range(len(bank.captions))]
    owners = [bank_videos[i % len(bank_videos)] for i in range(len(bank.captions))]
    write_caption_embeddings(paths["bc"], bank_captions, owners, bank.captions)
    out = tmp_path / "metrics.json"
    files = ["--videos", str(paths["v"]), "--captions", str(paths["c"]), "--out", str(out)]
    qbnorm = ["--settings", json.dumps({"postprocess": ["qbnorm"]})]
    assert main(["evaluate", *files, *qbnorm, "--query-bank-videos", str(paths["bv"])]) == 1
    error = capsys.readouterr().err
    assert (
        "postprocess includes 'qbnorm' (in the DAG: a table's postprocess)" in error
        and "--query-bank-captions" in error
    )
    assert len(error.strip().splitlines()) == 1 and not out.exists()
    banks_given = [
        "--query-bank-captions",
        str(paths["bc"]),
        "--query-bank-videos",
        str(paths["bv"]),
    ]
    assert main(["evaluate", *files, *banks_given]) == 1
    assert "does not include 'qbnorm'" in capsys.readouterr().err
    assert main(["evaluate", *files, *qbnorm, *banks_given]) == 0
    written = json.loads(out.read_text())
    assert written["postprocessed"]["qbnorm"] == evaluate_split(
        video_ids, video_emb, caption_ids, caption_video_ids, caption_emb,
        EvaluationConfig(postprocess=["qbnorm"]), query_bank=bank,
    )["postprocessed"]["qbnorm"]  # fmt: skip
    # two splits trained on (MSR-VTT's train and val): both banks, one after the other
    val = banks(seed=9)
    write_video_embeddings(tmp_path / "vv.parquet", bank_videos, val.videos)
    write_caption_embeddings(tmp_path / "vc.parquet", bank_captions, owners, val.captions)
    two_splits = [
        "--query-bank-captions", str(paths["bc"]), str(tmp_path / "vc.parquet"),
        "--query-bank-videos", str(paths["bv"]), str(tmp_path / "vv.parquet"),
    ]  # fmt: skip
    assert main(["evaluate", *files, *qbnorm, *two_splits]) == 0
    both = QueryBank(
        np.concatenate([bank.captions, val.captions]), np.concatenate([bank.videos, val.videos])
    )
    config = EvaluationConfig(postprocess=["qbnorm"])
    split = (video_ids, video_emb, caption_ids, caption_video_ids, caption_emb)
    expected = evaluate_split(*split, config, query_bank=both)["postprocessed"]["qbnorm"]
    assert json.loads(out.read_text())["postprocessed"]["qbnorm"] == expected
    assert expected != written["postprocessed"]["qbnorm"]  # the val bank changes the ranks
    narrow = tmp_path / "narrow.parquet"
    write_video_embeddings(narrow, bank_videos, bank.videos[:, :2])
    assert main(["evaluate", *files, *qbnorm, *banks_given, str(narrow)]) == 1
    assert f"query bank {narrow} has 2-dim embeddings" in capsys.readouterr().err


def test_dual_softmax_reverses_negative_similarities_and_says_so(caplog) -> None:
    """As published, the prior multiplies the similarity: with every cosine negative (the
    demo's mean-pooling model) the likeliest pair gets the lowest score."""
    gallery = np.array([[1.0, 0.0], [0.0, 1.0]])
    queries = np.array([[-1.0, -0.2], [-0.2, -1.0]])  # each nearest its own item, all < 0
    with caplog.at_level("WARNING"):
        dsl = DualSoftmax.fit(queries, gallery, temperature=0.01)
    assert "100.0% of the similarities are negative" in caplog.text
    revised = dsl.revise(cosine_scores(queries, gallery))
    assert (revised.argmax(axis=1) != cosine_scores(queries, gallery).argmax(axis=1)).all()
