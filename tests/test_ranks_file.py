"""The per-query results file: its ranks are the metrics' ranks, its top items a sort's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from test_search import expected_split_ranks, scattered_split

from supportset.cli import main
from supportset.integrity import write_parquet
from supportset.retrieval.embeddings import write_caption_embeddings, write_video_embeddings
from supportset.retrieval.metrics import (
    EvaluationConfig,
    evaluate_split,
    evaluate_split_with_ranks,
    recall_summary,
)
from supportset.retrieval.ranks import RANKS_SCHEMA, TOP, read_ranks, top_k_rows, write_ranks
from supportset.retrieval.search import cosine_scores


def tied_split() -> tuple:
    """500 captions of 30 distinct vectors, 200 videos of 40 (identical rows, -0.0 copies),
    1 to 6 captions per video, ids in file order."""
    split = scattered_split()
    video_ids = [f"video{i}" for i in range(len(split.video_groups))]
    caption_ids = [f"caption{i}" for i in range(len(split.owners))]
    caption_video_ids = [video_ids[owner] for owner in split.owners]
    return video_ids, split.videos, caption_ids, caption_video_ids, split.captions


def rows_of(table: pa.Table, direction: str) -> list[dict]:
    return [row for row in table.to_pylist() if row["direction"] == direction]


@pytest.mark.parametrize("ties", ["average", "optimistic"])
def test_rank_column_reproduces_the_metrics_exactly(ties: str) -> None:
    video_ids, _, caption_ids, _, _ = split = tied_split()
    metrics, table = evaluate_split_with_ranks(*split, EvaluationConfig(ties=ties))
    assert table.schema == RANKS_SCHEMA
    expected = dict(zip(("t2v", "v2t"), expected_split_ranks("scattered", ties), strict=True))
    for direction, query_ids in (("t2v", caption_ids), ("v2t", video_ids)):
        rows = rows_of(table, direction)
        assert [row["query_id"] for row in rows] == query_ids
        ranks = np.array([row["rank"] for row in rows])
        assert recall_summary(ranks) == metrics[direction]
        assert ranks.tolist() == expected[direction]
    assert any(rank % 1 for rank in table.column("rank").to_pylist()) == (ties == "average")


def test_top_ids_are_those_of_a_stable_argsort_of_the_same_scores() -> None:
    video_ids, video_emb, caption_ids, _, caption_emb = split = tied_split()
    _, table = evaluate_split_with_ranks(*split)
    problems = {
        "t2v": (caption_emb, video_emb, video_ids),
        "v2t": (video_emb, caption_emb, caption_ids),
    }
    for direction, (queries, gallery, gallery_ids) in problems.items():
        scores = cosine_scores(queries, gallery)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :TOP]  # ties in gallery order
        rows = rows_of(table, direction)
        assert [row["top_ids"] for row in rows] == np.asarray(gallery_ids)[order].tolist()
        top_scores = np.array([row["top_scores"] for row in rows], dtype=np.float32)
        np.testing.assert_array_equal(top_scores, np.take_along_axis(scores, order, axis=1))
        ties_inside = (top_scores[:, 1:] == top_scores[:, :-1]).any()
        assert ties_inside  # identical gallery rows: the tie rule is exercised


def test_top_k_rows_keeps_ties_in_column_order_and_handles_small_galleries() -> None:
    scores = np.array(
        [[0.5, 0.9, 0.5, 0.5, -0.0, 0.0], [0.0, -0.0, 1.0, 0.0, 0.2, 0.0]], dtype=np.float32
    )
    columns, values = top_k_rows(scores, 3)
    assert columns.tolist() == [[1, 0, 2], [2, 4, 0]]
    np.testing.assert_array_equal(values, np.take_along_axis(scores, columns, axis=1))
    columns, _ = top_k_rows(scores[:, :2], TOP)
    assert columns.tolist() == [[1, 0], [0, 1]]


def test_correct_ids_are_each_videos_queried_captions() -> None:
    video_ids, _, caption_ids, caption_video_ids, _ = split = tied_split()
    _, table = evaluate_split_with_ranks(*split)
    for row in rows_of(table, "v2t"):
        own = [
            c for c, v in zip(caption_ids, caption_video_ids, strict=True) if v == row["query_id"]
        ]
        assert row["correct_ids"] == own
    t2v = rows_of(table, "t2v")
    assert [row["correct_ids"] for row in t2v] == [[video] for video in caption_video_ids]
    assert max(len(row["correct_ids"]) for row in rows_of(table, "v2t")) > 1

    one_caption = EvaluationConfig(protocol="one-caption")
    metrics, table = evaluate_split_with_ranks(*split, one_caption)
    firsts = {video: caption_ids[caption_video_ids.index(video)] for video in video_ids}
    assert [row["correct_ids"] for row in rows_of(table, "v2t")] == [
        [firsts[video]] for video in video_ids
    ]
    queried = set(firsts.values())
    assert [row["query_id"] for row in rows_of(table, "t2v")] == [
        caption for caption in caption_ids if caption in queried
    ]
    assert metrics["t2v"]["n_queries"] == len(video_ids) == table.num_rows // 2


def test_bounded_blocks_give_the_one_block_results() -> None:
    split = tied_split()
    config = EvaluationConfig(postprocess=["dsl"])
    one_block = evaluate_split_with_ranks(*split, config)
    for max_bytes in (1, 20_000):  # one query at a time; a few rows and their copies
        metrics, table = evaluate_split_with_ranks(*split, config, max_bytes=max_bytes)
        assert metrics == one_block[0]
        for column in ("direction", "query_id", "rank", "correct_ids", "top_ids"):
            assert table.column(column).equals(one_block[1].column(column)), column
        np.testing.assert_allclose(  # another product shape may round the last bit otherwise
            np.array(table.column("top_scores").to_pylist()),
            np.array(one_block[1].column("top_scores").to_pylist()),
            rtol=1e-6,
        )


def test_small_gallery_keeps_every_item() -> None:
    video_ids = ["a", "b", "c"]
    videos = np.eye(3, 4, dtype=np.float32)
    _, table = evaluate_split_with_ranks(video_ids, videos, ["x", "y", "z"], video_ids, videos)
    assert [row["top_ids"] for row in rows_of(table, "t2v")] == [
        ["a", "b", "c"], ["b", "a", "c"], ["c", "a", "b"],
    ]  # fmt: skip


def test_write_and_read_round_trip(tmp_path: Path) -> None:
    _, table = evaluate_split_with_ranks(*tied_split())
    path = tmp_path / "ranks_test.parquet"
    write_ranks(path, table)
    assert read_ranks(path).equals(table)
    assert [item.name for item in tmp_path.iterdir()] == ["ranks_test.parquet"]


def test_read_ranks_names_the_file_and_the_problem(tmp_path: Path) -> None:
    _, table = evaluate_split_with_ranks(*tied_split())
    no_rank = tmp_path / "no_rank.parquet"
    write_parquet(table.drop_columns(["rank"]), no_rank)
    with pytest.raises(ValueError, match=r"no_rank\.parquet.*missing column\(s\) \['rank'\]"):
        read_ranks(no_rank)
    with pytest.raises(ValueError, match="missing column"):
        write_ranks(tmp_path / "out.parquet", table.drop_columns(["top_ids"]))
    integer_ranks = table.set_column(2, "rank", table.column("rank").cast(pa.float32()))
    with pytest.raises(ValueError, match="rank is float, expected double"):
        write_ranks(tmp_path / "out.parquet", integer_ranks)
    assert not (tmp_path / "out.parquet").exists()


def test_ranks_are_not_computed_unless_asked() -> None:
    split = tied_split()
    metrics, _ = evaluate_split_with_ranks(*split)
    assert evaluate_split(*split) == metrics
    assert "postprocessed" not in metrics


def test_cli_writes_the_ranks_file(tmp_path: Path) -> None:
    video_ids, video_emb, caption_ids, caption_video_ids, caption_emb = tied_split()
    videos, captions = tmp_path / "test_videos.parquet", tmp_path / "test_captions.parquet"
    write_video_embeddings(videos, video_ids, video_emb)
    write_caption_embeddings(captions, caption_ids, caption_video_ids, caption_emb)
    out, ranks = tmp_path / "metrics_test.json", tmp_path / "ranks_test.parquet"
    files = ["--videos", str(videos), "--captions", str(captions), "--out", str(out)]
    assert main(["evaluate", *files, "--out-ranks", str(ranks)]) == 0
    table = read_ranks(ranks)
    metrics = json.loads(out.read_text())
    assert table.num_rows == len(caption_ids) + len(video_ids)
    assert metrics["v2t"] == recall_summary(
        np.array([row["rank"] for row in rows_of(table, "v2t")])
    )
