"""The retrieval browser: its data in Python, and the page as headless Chromium renders it."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, replace
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import torch
from PIL import Image

from supportset.cli import main
from supportset.data.manifest import read_captions, read_videos
from supportset.features.bank import FeatureBank
from supportset.features.store import ShardWriter, text_schema, write_visual_shard
from supportset.model.checkpoint import save_checkpoint
from supportset.model.retrieval_model import ModelConfig, SupportSetModel
from supportset.retrieval.browser import (
    PAGE_SIZE,
    BrowseSettings,
    SplitSources,
    gallery_size,
    ranks_summary,
    shown_videos,
    t2v_queries,
    write_browser,
)
from supportset.retrieval.metrics import recall_summary
from supportset.retrieval.ranks import RANKS_SCHEMA, read_ranks, write_ranks
from supportset.video.decode import describe_samples

SPLIT = "train"  # 8 of the 12 videos of the `corpus` fixture (its test split has 2)
VIDEO_DIM, TEXT_DIM = 12, 16
MODEL = ModelConfig(dim=32, heads=2, ffn_dim=64, layers=1, dropout=0.0, text_encoder="frozen")
TRICKY = "a red </script><b>bold</b> & caption"  # must show as text, not close the data


@dataclass(frozen=True)
class SplitInputs:
    """Everything `supportset browse` reads, for the `SPLIT` split of the small corpus."""

    videos: Path  # manifest videos.parquet
    captions: Path  # manifest captions.parquet
    visual: Path  # visual shard: real sampled timestamps, random (T, 12) features
    text: Path  # text shard: random (L, 16) token states
    ranks: Path  # ranks_train.parquet of seeded random scores
    model: Path  # a randomly initialised model.pt


def write_split_inputs(manifest: Path, out: Path) -> SplitInputs:
    """Shards, a ranks file and a model for the corpus of `manifest`, under `out`, whose
    name is the experiment's (out's parent the dataset's)."""
    out.mkdir(parents=True)
    rng = np.random.default_rng(0)
    videos = read_videos(manifest / "videos.parquet")
    times = [
        np.array([s["timestamp"] for s in describe_samples(v["path"], 1.0)["samples"]], np.float32)
        for v in videos
    ]
    features = [rng.normal(size=(len(t), VIDEO_DIM)).astype(np.float32) for t in times]
    visual = out / "visual.parquet"
    write_visual_shard(visual, [v["video_id"] for v in videos], times, features, VIDEO_DIM,
                       "float32", {"settings": {"fps": 1.0}, "dim": VIDEO_DIM})  # fmt: skip
    text = out / "text.parquet"
    with ShardWriter(text, text_schema(TEXT_DIM, "float32"), {"model": "random"}) as writer:
        for caption in read_captions(manifest / "captions.parquet"):
            length = int(rng.integers(3, 8))
            ids = rng.integers(1, 100, size=length).astype(np.int32)
            states = rng.normal(size=(length, TEXT_DIM)).astype(np.float32)
            writer.write((caption["caption_id"], caption["video_id"]), (ids, states), (length,))
    torch.manual_seed(0)
    model = SupportSetModel(MODEL, VIDEO_DIM, TEXT_DIM)
    save_checkpoint(out / "model.pt", model.state_dict(), model, {})
    ranks = out / f"ranks_{SPLIT}.parquet"
    write_ranks(ranks, random_ranks(manifest, rng))
    return SplitInputs(
        manifest / "videos.parquet", manifest / "captions.parquet", visual, text, ranks,
        out / "model.pt",
    )  # fmt: skip


def random_ranks(manifest: Path, rng: np.random.Generator) -> pa.Table:
    """A ranks table (contract of retrieval/ranks.py) of random cosine scores over the
    split: t2v rows in caption order, v2t rows one per gallery video."""
    gallery = [
        v["video_id"] for v in read_videos(manifest / "videos.parquet") if v["split"] == SPLIT
    ]
    captions = [c for c in read_captions(manifest / "captions.parquet") if c["split"] == SPLIT]
    rows = []
    for caption in captions:
        scores = rng.uniform(-1, 1, len(gallery)).astype(np.float32)
        order = np.argsort(-scores, kind="stable")
        correct = gallery.index(caption["video_id"])
        rows.append(("t2v", caption["caption_id"], float(1 + np.sum(scores > scores[correct])),
                     [caption["video_id"]], [gallery[i] for i in order[:10]],
                     scores[order[:10]].tolist()))  # fmt: skip
    for video_id in gallery:
        own = [c["caption_id"] for c in captions if c["video_id"] == video_id]
        rows.append(("v2t", video_id, 1.0, own, own, [0.5] * len(own)))
    return pa.table(list(zip(*rows, strict=True)), schema=RANKS_SCHEMA)


def split_sources(inputs: SplitInputs) -> SplitSources:
    return SplitSources(
        "corpus/experiment",
        SPLIT,
        read_ranks(inputs.ranks),
        {c["caption_id"]: c["text"] for c in read_captions(inputs.captions)},
        {v["video_id"]: v["path"] for v in read_videos(inputs.videos)},
        FeatureBank.load([inputs.visual], [inputs.text]).timestamps,
    )


@pytest.fixture(scope="module")
def inputs(manifest: Path, tmp_path_factory) -> SplitInputs:
    return write_split_inputs(manifest, tmp_path_factory.mktemp("browse") / "experiment")


@pytest.fixture(scope="module")
def sources(inputs) -> SplitSources:
    """The split's sources with one caption's text replaced by markup and one video's
    file missing (it must show a placeholder)."""
    sources = split_sources(inputs)
    queries = t2v_queries(sources.ranks, sources.texts)
    texts = {**sources.texts, queries[1].caption_id: TRICKY}
    paths = {**sources.paths, unreadable_video(sources): "/nonexistent/video.mp4"}
    return replace(sources, texts=texts, paths=paths)


def unreadable_video(sources: SplitSources) -> str:
    """The video whose file the `sources` fixture removes: the first query's video."""
    return t2v_queries(sources.ranks, sources.texts)[0].correct_ids[0]


@pytest.fixture(scope="module")
def page(sources, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("page") / f"browser_{SPLIT}.html"
    assert write_browser(path, sources, BrowseSettings()) == 40
    return path


def test_queries_keep_file_order_and_the_summary_matches_the_metrics(sources):
    queries = t2v_queries(sources.ranks, sources.texts)
    t2v = sources.ranks.filter(pc.equal(sources.ranks["direction"], "t2v"))
    assert [q.caption_id for q in queries] == t2v["query_id"].to_pylist()
    assert queries[1].text == TRICKY
    ranks = np.array([q.rank for q in queries])
    summary = ranks_summary(queries, gallery_size(sources.ranks))
    assert summary["gallery"] == 8 and summary["queries"] == 40
    assert summary["R@1"] == pytest.approx(recall_summary(ranks)["R@1"])
    assert summary["MdR"] == pytest.approx(np.median(ranks))
    assert summary["chance"] == {"R@1": 12.5, "R@5": 62.5, "MdR": 4.5}


def test_captions_missing_from_the_manifest_or_the_ranks_are_an_error(sources):
    with pytest.raises(ValueError, match="not in the captions manifest"):
        t2v_queries(sources.ranks, {})
    videos_only = sources.ranks.filter(pc.equal(sources.ranks["direction"], "v2t"))
    with pytest.raises(ValueError, match="no t2v rows"):
        t2v_queries(videos_only, sources.texts)


def test_every_shown_video_is_stored_once_and_nothing_is_fetched(page, sources):
    html = page.read_text()
    data = json.loads(re.search(r'<script id="data"[^>]*>(.*?)</script>', html, re.S).group(1))
    queries = t2v_queries(sources.ranks, sources.texts)
    assert list(data["videos"]) == shown_videos(queries, 5)
    thumbnails = sum(len(video["strip"]) for video in data["videos"].values())
    assert html.count("data:image/jpeg;base64,") == thumbnails > 0
    outside = r"https?:|\b(?:src|href)\s*=\s*[\"']|url\(|@import|<link|fetch\(|XMLHttpRequest"
    assert not re.search(outside, html)
    first = next(video for video in data["videos"].values() if video["strip"])["strip"][0]
    image = Image.open(io.BytesIO(base64.b64decode(first["src"].split(",", 1)[1])))
    assert image.format == "JPEG" and image.height == 64


def test_settings_are_checked():
    with pytest.raises(ValueError, match=r"report\.thumbnails"):
        BrowseSettings(thumbnails=0)
    with pytest.raises(ValueError, match=r"report\.attention_captions"):
        BrowseSettings(attention_captions=1)


# --- the page in a real browser ---------------------------------------------------------

VOID_TAGS = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}


class Node:
    """An element of the rendered DOM."""

    def __init__(self, tag: str, attrs: dict[str, str]) -> None:
        self.tag, self.attrs = tag, attrs
        self.children: list[Node | str] = []

    @property
    def classes(self) -> list[str]:
        return self.attrs.get("class", "").split()

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def select(self, tag: str = "", cls: str = "") -> list[Node]:
        """Descendants with this tag and/or class, in document order."""
        found = []
        for child in self.children:
            if isinstance(child, Node):
                if (not tag or child.tag == tag) and (not cls or cls in child.classes):
                    found.append(child)
                found.extend(child.select(tag, cls))
        return found


class DomBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag, attrs):
        node = Node(tag, {name: value or "" for name, value in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID_TAGS:
            self.stack.append(node)

    def handle_endtag(self, tag):
        while len(self.stack) > 1 and self.stack.pop().tag != tag:
            pass

    def handle_data(self, data):
        self.stack[-1].children.append(data)


def chromium_binary() -> str:
    """Debian's chromium (or chromium-browser); a skip, or a failure when the environment
    requires it (SUPPORTSET_REQUIRE_CHROMIUM=1, as CI sets)."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    if os.environ.get("SUPPORTSET_REQUIRE_CHROMIUM") == "1":
        pytest.fail("SUPPORTSET_REQUIRE_CHROMIUM=1, but no chromium or chromium-browser is on PATH")
    pytest.skip("no chromium or chromium-browser on PATH (Debian: apt-get install chromium)")


def rendered(page: Path, fragment: str, profile: Path) -> Node:
    """The DOM of `page` opened from disk with `fragment` as its URL hash, after its
    scripts ran, as headless Chromium dumps it."""
    command = [chromium_binary(), "--headless", "--no-sandbox", "--disable-gpu",
               f"--user-data-dir={profile}", "--dump-dom", page.as_uri() + fragment]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    builder = DomBuilder()
    builder.feed(result.stdout)
    return builder.root


def by_id(dom: Node, identifier: str) -> Node:
    return next(node for node in dom.select() if node.attrs.get("id") == identifier)


def shown_ranks(dom: Node) -> list[float]:
    return [float(block.attrs["data-rank"]) for block in dom.select("div", "query")]


@pytest.fixture(scope="module")
def profile(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("chromium-profile")


def test_chromium_renders_a_page_of_queries_with_marks_and_thumbnails(page, sources, profile):
    dom = rendered(page, "#sort=caption", profile)
    queries = t2v_queries(sources.ranks, sources.texts)
    blocks = dom.select("div", "query")
    assert [b.attrs["data-id"] for b in blocks] == [q.caption_id for q in queries[:PAGE_SIZE]]
    assert by_id(dom, "position").text() == "page 1 of 2 (40 of 40 queries)"
    summary = by_id(dom, "summary").text()
    assert "40 queries" in summary and "gallery of 8 videos" in summary and "Chance" in summary
    for block, query in zip(blocks, queries, strict=False):
        truth = block.select("div", "truth")
        assert [row.attrs["data-video"] for row in truth] == query.correct_ids
        assert all("correct" in row.classes for row in truth)
        retrieved = block.select("div", "retrieved")
        assert [row.attrs["data-video"] for row in retrieved] == query.top_ids[:5]
        marked = [row.attrs["data-video"] for row in retrieved if "correct" in row.classes]
        assert marked == [v for v in query.top_ids[:5] if v in query.correct_ids]
    assert blocks[1].select("span", "text")[0].text() == TRICKY
    images = dom.select("img")
    assert images and all(img.attrs["src"].startswith("data:image/jpeg;base64,") for img in images)
    lost = unreadable_video(sources)
    missing = [row for row in dom.select("div", "video") if row.attrs["data-video"] == lost]
    assert missing and all(row.select("div", "placeholder") for row in missing)
    assert not any(row.select("img") for row in missing)


def test_chromium_sorts_worst_first_from_the_hash_and_pages(page, sources, profile):
    ranks = sorted((q.rank for q in t2v_queries(sources.ranks, sources.texts)), reverse=True)
    assert shown_ranks(rendered(page, "#sort=worst", profile)) == ranks[:PAGE_SIZE]
    assert shown_ranks(rendered(page, "#sort=best&page=2", profile)) == sorted(ranks)[PAGE_SIZE:]


def test_chromium_filters_by_text_from_the_hash(page, sources, profile):
    dom = rendered(page, "#sort=caption&q=RED%20tri", profile)
    expected = [
        q.caption_id
        for q in t2v_queries(sources.ranks, sources.texts)
        if "red" in q.text.lower() and "tri" in q.text.lower()
    ]
    assert expected
    assert [b.attrs["data-id"] for b in dom.select("div", "query")] == expected[:PAGE_SIZE]


def test_cli_browse_writes_the_browser_and_both_figures(inputs, tmp_path):
    out = {name: tmp_path / name for name in ("b.html", "a.png", "r.png")}
    training = {"captioning": "cross", "temperature": 0.1, "max_video_seconds": 4}
    settings = {"thumbnails": 3, "attention_captions": 4, "retrieval_queries": 2}
    status = main([
        "browse", "--ranks", str(inputs.ranks), "--videos", str(inputs.videos),
        "--captions", str(inputs.captions), "--visual", str(inputs.visual),
        "--text", str(inputs.text), "--model", str(inputs.model),
        "--training-settings", json.dumps(training), "--settings", json.dumps(settings),
        "--split", SPLIT, "--out-browser", str(out["b.html"]),
        "--out-attention", str(out["a.png"]), "--out-retrievals", str(out["r.png"]),
    ])  # fmt: skip
    assert status == 0
    html = out["b.html"].read_text()
    assert '"experiment":"browse' in html  # dataset/experiment from the ranks file's folders
    data = json.loads(re.search(r'<script id="data"[^>]*>(.*?)</script>', html, re.S).group(1))
    assert max(len(video["strip"]) for video in data["videos"].values()) == 3
    for name in ("a.png", "r.png"):
        assert Image.open(out[name]).format == "PNG"
