"""The retrieval browser: one self-contained HTML page of an experiment's text-to-video
queries, to study what went right and wrong without recomputing anything.

For each caption of the ranks file (`ranks_{split}.parquet`, see retrieval/ranks.py): its
text, the rank of its video, the correct video and the top retrieved ones with their
cosine scores, each video shown as a strip of thumbnails taken at its sampled timestamps
(those of the visual shards). The page opens from disk without a server or a network:
thumbnails are JPEG data: URIs, each video's strip stored once and referenced by id; the
data is JSON in a script tag; vanilla JavaScript renders one page of queries at a time,
sorted by rank (worst failures first) or in caption order and filtered by text. The
initial view can come from the URL hash, e.g. `browser_test.html#sort=worst&q=red&page=2`.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from supportset.io import atomic_path
from supportset.retrieval.metrics import recall_summary
from supportset.video.thumbnails import evenly_chosen, jpeg_bytes, read_thumbnails

PAGE_SIZE = 20  # queries per page of the browser


@dataclass
class BrowseSettings:
    """The `report` settings: what the browser and the figures of a split show."""

    thumbnails: int = 8  # thumbnails per video strip, evenly chosen among its sampled times
    thumbnail_height: int = 64  # px, aspect kept
    browser_top: int = 5  # retrieved videos shown per query in the browser
    attention_captions: int = 8  # captions (one per video) in the support-set attention map
    retrieval_queries: int = 4  # queries in the top-3 retrievals figure

    def __post_init__(self) -> None:
        for name in ("thumbnails", "thumbnail_height", "browser_top"):
            if getattr(self, name) < 1:
                raise ValueError(f"report.{name} must be at least 1, not {getattr(self, name)}")
        if self.attention_captions < 2:
            raise ValueError(
                "report.attention_captions must be at least 2 (a batch to attend over), "
                f"not {self.attention_captions}"
            )
        if self.retrieval_queries < 1:
            raise ValueError(
                f"report.retrieval_queries must be at least 1, not {self.retrieval_queries}"
            )


@dataclass(frozen=True)
class Query:
    """One text-to-video query of a ranks file."""

    caption_id: str
    text: str
    rank: float  # 1-based rank of the correct video (ties averaged, as the metrics)
    correct_ids: list[str]  # the caption's video
    top_ids: list[str]  # highest-scoring videos, score descending
    top_scores: list[float]  # their cosine scores

    def score_of(self, video_id: str) -> float | None:
        """The cosine score of `video_id`, when it is among the stored top ids."""
        if video_id not in self.top_ids:
            return None
        return self.top_scores[self.top_ids.index(video_id)]


@dataclass(frozen=True)
class SplitSources:
    """What the browser and the figures of one experiment's split are made from."""

    experiment: str  # e.g. "demo/supportset" (dataset/experiment)
    split: str
    ranks: pa.Table  # the ranks file (retrieval/ranks.py)
    texts: Mapping[str, str]  # caption_id -> text, from the captions manifest
    paths: Mapping[str, str]  # video_id -> video file, from the videos manifest
    timestamps: Mapping[str, np.ndarray]  # video_id -> (T,) sampled times (s), visual shards

    def video_path(self, video_id: str) -> str:
        """The file of a video; a video missing from the manifest is a ValueError."""
        if video_id not in self.paths:
            raise ValueError(f"video {video_id} of the ranks file is not in the videos manifest")
        return self.paths[video_id]

    def sampled_times(self, video_id: str) -> list[float]:
        """The video's sampled timestamps (s); one missing from the shards is a ValueError."""
        if video_id not in self.timestamps:
            raise ValueError(f"video {video_id} of the ranks file is in no visual shard")
        return self.timestamps[video_id].tolist()


def t2v_queries(ranks: pa.Table, texts: Mapping[str, str]) -> list[Query]:
    """The text-to-video queries of a ranks table in file order, with their caption texts
    (caption_id -> text, from the captions manifest)."""
    rows = ranks.filter(pc.equal(ranks["direction"], "t2v")).to_pylist()
    if not rows:
        raise ValueError("the ranks file has no t2v rows: no caption to show")
    missing = [row["query_id"] for row in rows if row["query_id"] not in texts]
    if missing:
        raise ValueError(
            f"{len(missing)} captions of the ranks file are not in the captions manifest, "
            f"e.g. {', '.join(missing[:3])}: are both of the same dataset?"
        )
    return [
        Query(
            row["query_id"],
            texts[row["query_id"]],
            float(row["rank"]),
            list(row["correct_ids"]),
            list(row["top_ids"]),
            [float(score) for score in row["top_scores"]],
        )
        for row in rows
    ]


def gallery_size(ranks: pa.Table) -> int:
    """Videos in the gallery: every one of them is a video-to-text query of the file."""
    videos = set(ranks.filter(pc.equal(ranks["direction"], "v2t"))["query_id"].to_pylist())
    if not videos:
        raise ValueError("the ranks file has no v2t rows, so its gallery size is unknown")
    return len(videos)


def ranks_summary(queries: Sequence[Query], gallery: int) -> dict:
    """R@1, R@5 (percent) and MdR of the queries' ranks, and what chance would give over a
    gallery of `gallery` videos with one correct video per query."""
    summary = recall_summary(np.array([query.rank for query in queries]), ks=(1, 5))
    return {
        "queries": len(queries),
        "gallery": gallery,
        "R@1": summary["R@1"],
        "R@5": summary["R@5"],
        "MdR": summary["MdR"],
        "chance": {
            "R@1": 100.0 / gallery,
            "R@5": 100.0 * min(5, gallery) / gallery,
            "MdR": (gallery + 1) / 2,
        },
    }


def shown_videos(queries: Sequence[Query], top: int) -> list[str]:
    """Every video the browser shows: each query's correct ones and its first `top`, in
    order of first appearance."""
    shown: dict[str, None] = {}
    for query in queries:
        shown.update(dict.fromkeys([*query.correct_ids, *query.top_ids[:top]]))
    return list(shown)


def video_strips(
    video_ids: Sequence[str], sources: SplitSources, settings: BrowseSettings
) -> dict[str, list[dict]]:
    """video_id -> its strip: up to `settings.thumbnails` thumbnails evenly chosen among
    its sampled timestamps (s), each {"t": frame time in s, "src": JPEG data: URI}; an
    empty strip for a video that cannot be read (its warning is logged). Decoded in
    worker processes (read_thumbnails)."""
    wanted = [
        (
            sources.video_path(video_id),
            evenly_chosen(sources.sampled_times(video_id), settings.thumbnails),
        )
        for video_id in video_ids
    ]
    read = read_thumbnails(wanted, settings.thumbnail_height)
    return {
        video_id: [
            {"t": round(thumb.frame_time, 3), "src": data_uri(jpeg_bytes(thumb.rgb))}
            for thumb in thumbnails
        ]
        for video_id, thumbnails in zip(video_ids, read, strict=True)
    }


def data_uri(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


def browser_data(
    sources: SplitSources, queries: Sequence[Query], strips: Mapping[str, list[dict]], top: int
) -> dict:
    """What the page's script reads: a title, the summary, every shown video once (path
    and strip) and the queries, which refer to videos by id."""
    return {
        "title": {"experiment": sources.experiment, "split": sources.split},
        "summary": ranks_summary(queries, gallery_size(sources.ranks)),
        "top": top,
        "stored": max((len(query.top_ids) for query in queries), default=0),
        "videos": {
            video_id: {"path": sources.video_path(video_id), "strip": strip}
            for video_id, strip in strips.items()
        },
        "queries": [
            {
                "id": query.caption_id,
                "text": query.text,
                "rank": query.rank,
                "correct": query.correct_ids,
                "correct_scores": [_rounded(query.score_of(v)) for v in query.correct_ids],
                "top": query.top_ids[:top],
                "scores": [round(score, 4) for score in query.top_scores[:top]],
            }
            for query in queries
        ],
    }


def _rounded(score: float | None) -> float | None:
    return None if score is None else round(score, 4)


def render_page(data: dict) -> str:
    """The HTML page showing `data` (see `browser_data`)."""
    # "<" escaped inside the JSON, so that no caption can close the script tag
    payload = json.dumps(data, separators=(",", ":")).replace("<", "\\u003c")
    title = f"{data['title']['experiment']}: {data['title']['split']} retrievals"
    return (
        PAGE.replace("__TITLE__", html.escape(title))
        .replace("__PAGE_SIZE__", str(PAGE_SIZE))
        .replace("__DATA__", payload)
    )


def write_browser(path: str | Path, sources: SplitSources, settings: BrowseSettings) -> int:
    """Write the browser of a split atomically; returns the number of queries shown."""
    queries = t2v_queries(sources.ranks, sources.texts)
    shown = shown_videos(queries, settings.browser_top)
    strips = video_strips(shown, sources, settings)
    data = browser_data(sources, queries, strips, settings.browser_top)
    with atomic_path(path) as temporary:
        temporary.write_text(render_page(data), encoding="utf-8")
    return len(queries)


PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>__TITLE__</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1em 2em; color: #222; }
h1 { font-size: 1.3em; margin: 0 0 .3em; }
#summary { margin: 0 0 .8em; color: #444; }
#summary b { color: #000; }
#controls { position: sticky; top: 0; background: #fff; padding: .5em 0;
  border-bottom: 1px solid #ccc; z-index: 1; }
#controls input[type=search] { width: 22em; }
#controls label { margin-right: 1em; }
.query { border-bottom: 1px solid #ddd; padding: .6em 0; }
.caption { font-size: 1.05em; margin-bottom: .3em; }
.caption .id { color: #888; font-size: .85em; margin-left: .5em; }
.rank { display: inline-block; min-width: 4.5em; padding: 0 .4em; margin-right: .5em;
  border-radius: 3px; color: #fff; background: #c0392b; text-align: center; }
.rank.top1 { background: #27ae60; }
.rank.top5 { background: #e67e22; }
.video { display: flex; align-items: center; margin: 2px 0; padding: 2px;
  border: 2px solid transparent; }
.video.correct { border-color: #27ae60; background: #eafaf1; }
.video .label { width: 17em; flex: none; font-size: .85em; }
.video .label .mark { color: #27ae60; font-weight: bold; }
.strip { display: flex; gap: 2px; }
.strip img { display: block; }
.placeholder { color: #a00; font-size: .85em; padding: 1em; background: #f4f4f4; }
.section { color: #666; font-size: .8em; margin: .3em 0 0; }
</style>
</head>
<body>
<h1 id="title"></h1>
<div id="summary"></div>
<div id="controls">
<label>sort <select id="sort">
<option value="worst">rank, worst first</option>
<option value="best">rank, best first</option>
<option value="caption">caption order</option>
</select></label>
<label>filter <input id="filter" type="search" placeholder="words of the caption or ids"></label>
<button id="prev">&larr; previous</button>
<span id="position"></span>
<button id="next">next &rarr;</button>
</div>
<div id="queries"></div>
<script id="data" type="application/json">__DATA__</script>
<script>
"use strict";
const DATA = JSON.parse(document.getElementById("data").textContent);
const PAGE_SIZE = __PAGE_SIZE__;
const state = { sort: "worst", q: "", page: 1 };

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function fixed(value, digits) {
  return value === null ? "not stored (below the ranks file's top " + DATA.stored + ")"
    : value.toFixed(digits);
}

function showSummary() {
  const s = DATA.summary, c = s.chance;
  document.getElementById("title").textContent =
    DATA.title.experiment + ": text-to-video retrievals, " + DATA.title.split + " split";
  document.getElementById("summary").innerHTML =
    "<b>" + s.queries + "</b> queries over a gallery of <b>" + s.gallery + "</b> videos. " +
    "R@1 <b>" + s["R@1"].toFixed(1) + "%</b>, R@5 <b>" + s["R@5"].toFixed(1) +
    "%</b>, MdR <b>" + s.MdR + "</b>. Chance: R@1 " + c["R@1"].toFixed(1) + "%, R@5 " +
    c["R@5"].toFixed(1) + "%, MdR " + c.MdR + ".";
}

function strip(videoId) {
  const video = DATA.videos[videoId];
  const box = element("div", "strip");
  if (video.strip.length === 0) {
    box.appendChild(element("div", "placeholder", "no thumbnails: the video could not be read"));
    return box;
  }
  for (const thumb of video.strip) {
    const img = element("img");
    img.src = thumb.src;
    img.alt = videoId + " at " + thumb.t + " s";
    img.title = video.path + " at " + thumb.t + " s";
    box.appendChild(img);
  }
  return box;
}

function videoRow(videoId, label, correct) {
  const row = element("div", correct ? "video correct" : "video");
  row.dataset.video = videoId;
  const text = element("div", "label");
  if (correct) text.appendChild(element("span", "mark", "\\u2713 correct "));
  text.appendChild(document.createTextNode(label));
  row.appendChild(text);
  row.appendChild(strip(videoId));
  return row;
}

function rankClass(rank) {
  return rank <= 1 ? "rank top1" : rank <= 5 ? "rank top5" : "rank";
}

function queryBlock(query) {
  const block = element("div", "query");
  block.dataset.id = query.id;
  block.dataset.rank = query.rank;
  const caption = element("div", "caption");
  caption.appendChild(element("span", rankClass(query.rank), "rank " + query.rank));
  caption.appendChild(element("span", "text", query.text));
  caption.appendChild(element("span", "id", query.id));
  block.appendChild(caption);
  query.correct.forEach((videoId, i) => {
    const label = videoId + ", rank " + query.rank + ", score " +
      fixed(query.correct_scores[i], 3);
    block.appendChild(videoRow(videoId, label, true)).classList.add("truth");
  });
  block.appendChild(element("div", "section", "top " + DATA.top + " retrieved"));
  query.top.forEach((videoId, i) => {
    const label = "#" + (i + 1) + " " + videoId + ", score " + query.scores[i].toFixed(3);
    block.appendChild(videoRow(videoId, label, query.correct.includes(videoId)))
      .classList.add("retrieved");
  });
  return block;
}

function matches(query, terms) {
  const haystack = (query.text + " " + query.id + " " + query.correct.join(" ")).toLowerCase();
  return terms.every((term) => haystack.includes(term));
}

function ordered() {
  const terms = state.q.toLowerCase().split(/\\s+/).filter((term) => term);
  const chosen = DATA.queries.map((query, order) => ({ query, order }))
    .filter((item) => matches(item.query, terms));
  const sign = { worst: -1, best: 1, caption: 0 }[state.sort];
  chosen.sort((a, b) => sign * (a.query.rank - b.query.rank) || a.order - b.order);
  return chosen.map((item) => item.query);
}

function render() {
  const shown = ordered();
  const pages = Math.max(1, Math.ceil(shown.length / PAGE_SIZE));
  state.page = Math.min(Math.max(1, state.page), pages);
  const list = document.getElementById("queries");
  list.replaceChildren(
    ...shown.slice((state.page - 1) * PAGE_SIZE, state.page * PAGE_SIZE).map(queryBlock));
  document.getElementById("position").textContent = "page " + state.page + " of " + pages +
    " (" + shown.length + " of " + DATA.queries.length + " queries)";
  document.getElementById("sort").value = state.sort;
  document.getElementById("filter").value = state.q;
  document.getElementById("prev").disabled = state.page <= 1;
  document.getElementById("next").disabled = state.page >= pages;
}

function readHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  const sort = params.get("sort");
  state.sort = ["worst", "best", "caption"].includes(sort) ? sort : "worst";
  state.q = params.get("q") || "";
  state.page = parseInt(params.get("page") || "1", 10) || 1;
}

function update(changes) {
  Object.assign(state, changes);
  const params = new URLSearchParams({ sort: state.sort, q: state.q, page: state.page });
  history.replaceState(null, "", "#" + params.toString());
  render();
}

document.getElementById("sort").addEventListener("change", (event) =>
  update({ sort: event.target.value, page: 1 }));
document.getElementById("filter").addEventListener("input", (event) =>
  update({ q: event.target.value, page: 1 }));
document.getElementById("prev").addEventListener("click", () => update({ page: state.page - 1 }));
document.getElementById("next").addEventListener("click", () => update({ page: state.page + 1 }));
window.addEventListener("hashchange", () => { readHash(); render(); });
showSummary();
readHash();
render();
</script>
</body>
</html>
"""
