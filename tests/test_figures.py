"""The paper's Fig. 3 (support-set attention map) and Fig. 5 (top-3 retrievals)."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from supportset.features.bank import FeatureBank
from supportset.model.checkpoint import load_model
from supportset.retrieval.browser import Query, t2v_queries
from supportset.retrieval.figures import (
    CORRECT_COLOUR,
    AttentionLayout,
    AttentionMap,
    attention_batch,
    attention_map,
    figure_queries,
    plot_attention,
    plot_top_retrievals,
    write_attention_figure,
    write_retrievals_figure,
)
from supportset.train.config import TrainConfig
from tests.test_browser import SPLIT, split_sources, write_split_inputs

COUNT = 4
CPU = torch.device("cpu")
PURE = [(255, 0, 255), (0, 255, 255), (255, 255, 0), (255, 128, 0)]  # one per column


@pytest.fixture(scope="module")
def inputs(manifest: Path, tmp_path_factory):
    return write_split_inputs(manifest, tmp_path_factory.mktemp("figures") / "experiment")


@pytest.fixture(scope="module")
def bank(inputs) -> FeatureBank:
    return FeatureBank.load([inputs.visual], [inputs.text])


def reference_weights(inputs, bank, video_ids, caption_ids, temperature, max_steps, cross):
    """Eq. 3's weights computed here: the model's c_t and c_v of each caption and video on
    its own (no batching, no padding), a float64 softmax, the diagonal left out for cross."""
    model = load_model(inputs.model, CPU)
    with torch.no_grad():
        c_v = torch.cat([
            model.embed_videos(torch.from_numpy(bank.videos[v][:max_steps])[None],
                               torch.ones(1, len(bank.videos[v][:max_steps]), dtype=torch.bool))
            for v in video_ids
        ]).double()  # fmt: skip
        c_t = torch.cat([
            model.embed_texts(torch.from_numpy(bank.texts[c])[None],
                              torch.ones(1, len(bank.texts[c]), dtype=torch.bool))
            for c in caption_ids
        ]).double()  # fmt: skip
    logits = (c_t @ c_v.T / temperature).numpy()
    if cross:
        np.fill_diagonal(logits, -np.inf)
    weights = np.exp(logits - logits.max(axis=1, keepdims=True))
    return weights / weights.sum(axis=1, keepdims=True)


def test_the_batch_is_the_first_videos_each_with_its_first_caption(inputs, bank):
    split = bank.split(inputs.videos, inputs.captions, SPLIT)
    batch = attention_batch(split, COUNT)
    assert batch.video_ids == split.video_ids[:COUNT]
    assert batch.caption_ids == [split.captions_of_video[v][0] for v in split.video_ids[:COUNT]]
    assert batch.caption_video_ids == batch.video_ids
    one_video = dataclasses.replace(split, video_ids=split.video_ids[:1])
    with pytest.raises(ValueError, match="at least 2 videos"):
        attention_batch(one_video, COUNT)


@pytest.mark.parametrize("variant", ["cross", "full", "hybrid", "identity", "none"])
def test_attention_weights_are_eq3_over_the_batch(inputs, bank, variant):
    split = bank.split(inputs.videos, inputs.captions, SPLIT)
    batch = attention_batch(split, COUNT)
    training = TrainConfig(captioning=variant, temperature=0.5, max_video_seconds=2)
    sources = split_sources(inputs)
    attention = attention_map(inputs.model, bank, batch, sources.texts, training, CPU)
    cross = variant == "cross"
    expected = reference_weights(
        inputs, bank, batch.video_ids, batch.caption_ids, 0.5, max_steps=2, cross=cross
    )
    if variant == "hybrid":
        expected = 0.5 * (np.eye(COUNT) + expected)
    np.testing.assert_allclose(attention.weights, expected, atol=1e-5)
    assert attention.caption_texts == [sources.texts[c] for c in batch.caption_ids]
    assert attention.video_ids == batch.video_ids
    assert attention.allowed.diagonal().tolist() == [not cross] * COUNT
    assert f"training.captioning {variant}" in attention.title
    assert ("shown: the full-support weights" in attention.title) == (
        variant in ("identity", "none")
    )


def pure_thumbnail(colour: tuple[int, int, int]) -> np.ndarray:
    return np.broadcast_to(np.array(colour, np.uint8), (48, 64, 3)).copy()


def columns_showing(png: Path, colour: tuple[int, int, int]) -> np.ndarray:
    """Pixel columns of the PNG holding `colour` (within a small tolerance)."""
    pixels = np.asarray(Image.open(png).convert("RGB")).astype(int)
    match = (np.abs(pixels - np.array(colour)).max(axis=2) <= 8).any(axis=0)
    return np.flatnonzero(match)


def test_the_attention_map_heads_each_column_with_its_video(tmp_path):
    rng = np.random.default_rng(0)
    weights = rng.dirichlet(np.ones(COUNT), size=COUNT)
    videos = [f"v{i}" for i in range(COUNT)]
    attention = AttentionMap(
        [f"caption {i}" for i in range(COUNT)], videos, weights,
        np.ones((COUNT, COUNT), bool), "test title",
    )  # fmt: skip
    thumbnails = {video: pure_thumbnail(colour) for video, colour in zip(videos, PURE, strict=True)}
    thumbnails["v3"] = None  # an unreadable video: a note instead of a thumbnail
    png = tmp_path / "attention.png"
    plot_attention(attention, thumbnails, "heading", png)
    layout = AttentionLayout(COUNT)
    assert Image.open(png).size == tuple(round(inches * 100) for inches in layout.size)
    centres = [columns_showing(png, colour).mean() for colour in PURE[:3]]
    assert centres == sorted(centres)  # left to right, as the heatmap's columns
    cell = 100 * layout.cell_w
    for j, centre in enumerate(centres):
        assert abs(centre - (100 * layout.left + (j + 0.5) * cell)) < cell / 4
    assert columns_showing(png, PURE[3]).size == 0


def query(caption_id: str, correct: str, top: list[str]) -> Query:
    return Query(caption_id, f"text of {caption_id}", float(top.index(correct) + 1)
                 if correct in top else 9.0, [correct], top, [0.9, 0.8, 0.7])  # fmt: skip


def test_figure_queries_take_each_videos_first_caption():
    queries = [query("a_0", "a", ["a"]), query("a_1", "a", ["a"]), query("b_0", "b", ["b"])]
    assert [q.caption_id for q in figure_queries(queries, 2)] == ["a_0", "b_0"]
    assert [q.caption_id for q in figure_queries(queries, 5)] == ["a_0", "b_0"]


def test_top_retrievals_frame_only_correct_videos_in_green(tmp_path):
    thumbnails = {video: pure_thumbnail(colour) for video, colour in zip("abc", PURE, strict=False)}
    green = tuple(int(CORRECT_COLOUR[i : i + 2], 16) for i in (1, 3, 5))
    hit, miss = tmp_path / "hit.png", tmp_path / "miss.png"
    plot_top_retrievals([query("q", "b", ["a", "b", "c"])], thumbnails, "heading", hit)
    plot_top_retrievals([query("q", "z", ["a", "b", "c"])], thumbnails, "heading", miss)
    framed = columns_showing(hit, green)
    assert framed.size and columns_showing(miss, green).size == 0
    # the frame surrounds the second video's thumbnail
    second = columns_showing(hit, PURE[1])
    assert framed.min() < second.min() and second.max() < framed.max()
    assert framed.max() < columns_showing(hit, PURE[2]).min()


def test_the_writers_draw_both_figures_of_a_split_even_with_an_unreadable_video(
    inputs, bank, tmp_path, caplog
):
    sources = split_sources(inputs)
    lost = t2v_queries(sources.ranks, sources.texts)[0].top_ids[0]
    sources = dataclasses.replace(sources, paths={**sources.paths, lost: str(tmp_path / "gone")})
    split = bank.split(inputs.videos, inputs.captions, SPLIT)
    training = TrainConfig(captioning="hybrid", max_video_seconds=4)
    with caplog.at_level(logging.WARNING):
        write_attention_figure(
            tmp_path / "a.png", sources, inputs.model, bank, split, training, COUNT, CPU
        )
        write_retrievals_figure(tmp_path / "r.png", sources, 3)
    assert "gone" in caplog.text
    for name in ("a.png", "r.png"):
        assert Image.open(tmp_path / name).format == "PNG"
