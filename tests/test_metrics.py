"""Recall summaries, end-to-end evaluation of embeddings and the metrics JSON."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_search import (
    brute_force_ranks,
    demo_like_split,
    exact_cosines,
    expected_split_ranks,
    same_vector_split,
    tied_matrix,
)

from supportset.cli import main
from supportset.retrieval.embeddings import write_caption_embeddings, write_video_embeddings
from supportset.retrieval.metrics import (
    EvaluationConfig,
    bootstrap_intervals,
    evaluate_embeddings,
    evaluate_split,
    recall_summary,
    write_metrics,
)

SUMMARY_KEYS = ["R@1", "R@5", "R@10", "R@50", "MdR", "MnR", "n_queries"]


def test_recall_summary_by_hand() -> None:
    summary = recall_summary(np.array([1, 2, 5, 7, 10, 60]))
    assert list(summary) == SUMMARY_KEYS
    assert summary["R@1"] == pytest.approx(100 / 6)
    assert summary["R@5"] == pytest.approx(50.0)
    assert summary["R@10"] == pytest.approx(500 / 6)
    assert summary["R@50"] == pytest.approx(500 / 6)
    assert summary["MdR"] == 6.0
    assert summary["MnR"] == pytest.approx(85 / 6)
    assert summary["n_queries"] == 6


def test_recall_summary_with_averaged_ties() -> None:
    summary = recall_summary(np.array([1.5, 1.0, 2.5, 4.0]), ks=(1, 2))
    assert summary == {"R@1": 25.0, "R@2": 50.0, "MdR": 2.0, "MnR": 2.25, "n_queries": 4}


def test_recall_summary_types() -> None:
    summary = recall_summary(np.array([3, 1, 2]))
    assert summary["MdR"] == 2.0
    assert all(type(summary[key]) is float for key in SUMMARY_KEYS[:-1])
    assert type(summary["n_queries"]) is int


@pytest.mark.parametrize("ranks", [[], [0.0, 1.0], [1.0, np.nan], [[1.0, 2.0]]])
def test_recall_summary_rejects_invalid_ranks(ranks: list) -> None:
    with pytest.raises(ValueError, match="rank"):
        recall_summary(np.array(ranks))


@st.composite
def captioned_videos(draw: st.DrawFn, max_captions_per_video: int) -> tuple:
    """(video ids, (N_v, D), caption ids, caption video ids, (N_c, D)) with tied scores."""
    captions_per_video = draw(
        st.lists(st.integers(1, max_captions_per_video), min_size=1, max_size=12)
    )
    video_ids = [f"v{i}" for i in range(len(captions_per_video))]
    caption_video_ids = [
        video
        for video, count in zip(video_ids, captions_per_video, strict=True)
        for _ in range(count)
    ]
    order = draw(st.permutations(range(len(caption_video_ids))))
    caption_video_ids = [caption_video_ids[i] for i in order]
    caption_ids = [f"c{i}" for i in range(len(caption_video_ids))]
    video_emb = draw(tied_matrix(len(video_ids)))
    caption_emb = draw(tied_matrix(len(caption_ids)))
    return video_ids, video_emb, caption_ids, caption_video_ids, caption_emb


@pytest.mark.parametrize("device", ["cpu", "cpu:0"], ids=["numpy", "torch"])
@pytest.mark.parametrize("max_bytes", [1 << 20, 0], ids=["one-matrix", "blocked"])
@pytest.mark.parametrize("max_captions_per_video", [1, 4])
@pytest.mark.parametrize("ties", ["average", "optimistic"])
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_evaluation_matches_brute_force(
    max_captions_per_video: int, ties: str, max_bytes: int, device: str, data: st.DataObject
) -> None:
    split = data.draw(captioned_videos(max_captions_per_video))
    video_ids, video_emb, _, caption_video_ids, caption_emb = split
    t2v_positives = [[video_ids.index(video)] for video in caption_video_ids]
    v2t_positives = [
        [row for row, owner in enumerate(caption_video_ids) if owner == video]
        for video in video_ids
    ]
    t2v = brute_force_ranks(exact_cosines(caption_emb, video_emb), t2v_positives, ties)
    v2t = brute_force_ranks(exact_cosines(video_emb, caption_emb), v2t_positives, ties)
    metrics = evaluate_embeddings(*split, ties=ties, device=device, max_bytes=max_bytes)
    assert metrics == {
        "t2v": pytest.approx(recall_summary(np.array(t2v))),
        "v2t": pytest.approx(recall_summary(np.array(v2t))),
    }


def perfect_split(n_videos: int, captions_per_video: int) -> tuple:
    """Distinct random videos; every caption embedding is a copy of its video's."""
    video_emb = np.random.default_rng(3).standard_normal((n_videos, 16)).astype(np.float32)
    video_ids = [f"video{i}" for i in range(n_videos)]
    caption_video_ids = [video for video in video_ids for _ in range(captions_per_video)]
    caption_ids = [f"caption{i}" for i in range(len(caption_video_ids))]
    caption_emb = np.repeat(video_emb, captions_per_video, axis=0)
    return video_ids, video_emb, caption_ids, caption_video_ids, caption_emb


@pytest.mark.parametrize("captions_per_video", [1, 5])
def test_perfect_embeddings_retrieve_everything_first(captions_per_video: int) -> None:
    metrics = evaluate_embeddings(*perfect_split(50, captions_per_video))
    for direction, n_queries in [("t2v", 50 * captions_per_video), ("v2t", 50)]:
        assert metrics[direction]["R@1"] == 100.0
        assert metrics[direction]["MdR"] == 1.0
        assert metrics[direction]["MnR"] == 1.0
        assert metrics[direction]["n_queries"] == n_queries


def test_collapsed_embeddings_are_not_rewarded() -> None:
    video_ids, _, caption_ids, caption_video_ids, _ = perfect_split(4, 1)
    same = np.ones((4, 16), dtype=np.float32)
    metrics = evaluate_embeddings(video_ids, same, caption_ids, caption_video_ids, same)
    assert metrics["t2v"]["MdR"] == 2.5
    assert metrics["v2t"]["R@1"] == 0.0


@pytest.mark.parametrize("ties", ["average", "optimistic"])
def test_collapsed_model_ranks_mid_gallery_at_scale(ties: str) -> None:
    """1,000 videos and captions, all one vector: every rank is (N + 1) / 2 when averaged."""
    split = same_vector_split(1000)
    video_ids = [f"video{i}" for i in range(1000)]
    metrics = evaluate_embeddings(
        video_ids, split.videos, video_ids, video_ids, split.captions, ties=ties
    )
    for direction in ("t2v", "v2t"):
        assert metrics[direction]["MdR"] == (500.5 if ties == "average" else 1.0)
        assert metrics[direction]["R@1"] == (0.0 if ties == "average" else 100.0)


@pytest.mark.parametrize("ties", ["average", "optimistic"])
def test_demo_shaped_split_counts_shared_captions_as_ties(ties: str) -> None:
    """The demo's test split: 48 videos with 5 captions each, 31 caption texts shared by 2-3
    videos (one embedding per text), through the multi-caption protocol."""
    split = demo_like_split()
    video_ids = [f"video{i}" for i in range(len(split.video_groups))]
    caption_ids = [f"caption{i}" for i in range(len(split.owners))]
    caption_video_ids = [video_ids[owner] for owner in split.owners]
    metrics = evaluate_split(
        video_ids, split.videos, caption_ids, caption_video_ids, split.captions,
        EvaluationConfig(protocol="multi-caption", ties=ties),
    )  # fmt: skip
    t2v, v2t = expected_split_ranks("demo", ties)
    assert metrics["t2v"] == pytest.approx(recall_summary(np.array(t2v)))
    assert metrics["v2t"] == pytest.approx(recall_summary(np.array(v2t)))
    texts, uses = np.unique(split.caption_groups, return_counts=True)
    shared = texts[uses > 1]
    assert len(shared) == 31 and metrics["v2t"]["n_queries"] == 48
    assert all(len(set(split.owners[split.caption_groups == text])) > 1 for text in shared)
    if ties == "average":  # some video's best caption is shared with another video
        assert any(rank % 1 for rank in v2t)


def test_evaluation_rejects_captions_of_unknown_videos() -> None:
    video_ids, video_emb, caption_ids, caption_video_ids, caption_emb = perfect_split(3, 1)
    caption_video_ids = [*caption_video_ids[:2], "stranger"]
    with pytest.raises(ValueError, match="caption2"):
        evaluate_embeddings(video_ids, video_emb, caption_ids, caption_video_ids, caption_emb)


def test_write_metrics_round_trip(tmp_path: Path) -> None:
    metrics = evaluate_embeddings(*perfect_split(10, 2))
    metrics["t2v"]["MnR"] = np.float64(1.25)
    metrics["v2t"]["n_queries"] = np.int64(10)
    path = tmp_path / "metrics.json"
    write_metrics(path, metrics)
    text = path.read_text()
    assert text.startswith('{\n  "t2v": {\n    "R@1": 100.0')
    loaded = json.loads(text)
    assert list(loaded) == ["t2v", "v2t"]
    assert list(loaded["t2v"]) == SUMMARY_KEYS
    assert loaded["t2v"]["MnR"] == 1.25
    assert type(loaded["v2t"]["n_queries"]) is int
    assert type(loaded["v2t"]["MdR"]) is float
    assert [item.name for item in tmp_path.iterdir()] == ["metrics.json"]


def test_write_metrics_requires_both_directions(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="v2t"):
        write_metrics(tmp_path / "metrics.json", {"t2v": recall_summary(np.array([1.0]))})
    assert not list(tmp_path.iterdir())


def noisy_split(n_videos: int, captions_per_video: int, noise: float, seed: int = 0) -> tuple:
    """Random videos; each caption is its video plus Gaussian noise."""
    video_ids, video_emb, caption_ids, caption_video_ids, caption_emb = perfect_split(
        n_videos, captions_per_video
    )
    rng = np.random.default_rng(seed)
    caption_emb = caption_emb + noise * rng.standard_normal(caption_emb.shape).astype(np.float32)
    return video_ids, video_emb, caption_ids, caption_video_ids, caption_emb


def test_one_caption_protocol_keeps_each_videos_first_caption() -> None:
    split = noisy_split(30, 3, 1.0)
    metrics = evaluate_split(*split, EvaluationConfig(protocol="one-caption"))
    assert metrics["t2v"]["n_queries"] == 30 and metrics["protocol"] == "one-caption"
    video_ids, video_emb, caption_ids, caption_video_ids, caption_emb = split
    first = evaluate_embeddings(
        video_ids, video_emb, caption_ids[::3], caption_video_ids[::3], caption_emb[::3]
    )
    assert {key: metrics[key] for key in ("t2v", "v2t")} == first


def test_paragraph_protocol_needs_one_caption_per_video() -> None:
    assert evaluate_split(*noisy_split(5, 1, 0.5), EvaluationConfig(protocol="paragraph"))
    video_ids, video_emb, caption_ids, caption_video_ids, caption_emb = noisy_split(5, 1, 0.5)
    caption_ids, caption_video_ids = [*caption_ids, "extra"], [*caption_video_ids, "video3"]
    caption_emb = np.concatenate([caption_emb, caption_emb[:1]])
    with pytest.raises(ValueError, match=r"paragraph.*'video3' have several"):
        evaluate_split(
            video_ids, video_emb, caption_ids, caption_video_ids, caption_emb,
            EvaluationConfig(protocol="paragraph"),
        )  # fmt: skip
    with pytest.raises(ValueError, match="protocol must be one of"):
        evaluate_split(*noisy_split(5, 1, 0.5), EvaluationConfig(protocol="1k-B"))


def test_bootstrap_intervals_bracket_the_estimate_and_shrink_with_more_queries() -> None:
    rng = np.random.default_rng(0)
    small, large = rng.integers(1, 20, 50).astype(float), rng.integers(1, 20, 5000).astype(float)
    intervals = [bootstrap_intervals(ranks, 400, seed=1) for ranks in (small, large)]
    for ranks, interval in zip((small, large), intervals, strict=True):
        low, high = interval["R@5"]
        assert low <= recall_summary(ranks)["R@5"] <= high
    width = [interval["R@5"][1] - interval["R@5"][0] for interval in intervals]
    assert width[1] < width[0] / 5  # 100x the queries: about a tenth of the width
    assert bootstrap_intervals(small, 400, seed=1) == intervals[0]
    assert bootstrap_intervals(np.ones(7), 30)["R@1"] == [100.0, 100.0]


def test_approximate_index_is_reported_beside_the_exact_metrics() -> None:
    split = noisy_split(300, 2, 0.9)
    exact = evaluate_split(*split)
    with_index = evaluate_split(*split, EvaluationConfig(index="hnsw", bootstrap=20))
    assert "index" not in exact
    assert {key: with_index[key]["R@1"] for key in ("t2v", "v2t")} == {
        key: exact[key]["R@1"] for key in ("t2v", "v2t")
    }
    report = with_index["index"]
    assert report["kind"] == "hnsw" and report["hnsw_ef_search"] == 128
    for direction in ("t2v", "v2t"):
        assert 90.0 <= report[direction]["recall@50_vs_exact"] <= 100.0
        assert abs(report[direction]["R@10"] - exact[direction]["R@10"]) < 5.0


def test_cli_evaluates_embedding_files_with_settings(tmp_path: Path, capsys) -> None:
    video_ids, video_emb, caption_ids, caption_video_ids, caption_emb = noisy_split(20, 2, 1.0)
    videos, captions, out = tmp_path / "v.parquet", tmp_path / "c.parquet", tmp_path / "m.json"
    write_video_embeddings(videos, video_ids, video_emb)
    write_caption_embeddings(captions, caption_ids, caption_video_ids, caption_emb)
    files = ["--videos", str(videos), "--captions", str(captions), "--out", str(out)]
    settings = json.dumps({"protocol": "one-caption", "bootstrap": 100})
    assert main(["evaluate", *files, "--settings", settings]) == 0
    written = json.loads(out.read_text())
    assert written["t2v"]["n_queries"] == 20 and len(written["v2t"]["CI95"]["R@10"]) == 2
    out.unlink()
    assert main(["evaluate", *files, "--settings", '{"protocl": "x"}']) == 1
    assert "unknown setting(s) protocl" in capsys.readouterr().err
    assert not out.exists()
