"""The paper's qualitative figures for one experiment and split, as PNG files.

- Support-set attention map (paper Fig. 3, "Attention scores of all pairs in a batch"):
  a fixed batch, the split's first N videos in manifest order, each with its first
  caption; row i holds caption i's weights w_ij over the batch's videos j (eq. 3), from
  the model's c_t and c_v, with the experiment's training.captioning variant and
  temperature; one thumbnail heads each video's column.
- Top-3 retrievals (paper Fig. 5, "Examples of top-3 Text->Video retrieval results and
  similarities"): fixed queries, the first caption of each of the ranks file's first K
  videos (its first captions often all describe one video), each with its three
  best-scoring videos (a middle thumbnail each) and their cosine scores, the correct video
  framed in green ("the correct videos marked in green", appendix 6.8).
Both are drawn with matplotlib's Agg renderer (no display needed) and written atomically.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from supportset.features.bank import FeatureBank, SplitData
from supportset.io import atomic_path
from supportset.model.checkpoint import check_tokenizer, model_from_checkpoint, read_checkpoint
from supportset.model.inference import embed_split
from supportset.model.support_attention import support_weights
from supportset.retrieval.browser import Query, SplitSources, t2v_queries
from supportset.train.config import TrainConfig
from supportset.video.thumbnails import evenly_chosen, read_thumbnails

FIGURE_THUMBNAIL_HEIGHT = 96  # px of the thumbnails drawn in the figures
RETRIEVED = 3  # videos per query in the retrievals figure (the paper's top-3)
CORRECT_COLOUR = "#27ae60"  # the paper marks correct videos in green
DPI = 100

# What eq. 3's weights are for each training.captioning variant (section 3.1.2: "By
# default, the summation in the softmax is conducted over a support set S_i containing all
# indices except i"; identity S_i = {i}, full S_i = {1..B}, hybrid the mean of both), and the
# variant whose weights the figure shows: identity captioning's are fixed (S_i = {i}) and
# "none" trains no decoder, so for those the figure shows the full-support softmax that
# their embeddings would give, and says so.
SHOWN_VARIANT = {"cross": "cross", "full": "full", "hybrid": "hybrid", "identity": "full",
                 "none": "full"}  # fmt: skip
SUPPORT_SETS = {
    "cross": "S_i = the batch without i",
    "full": "S_i = the whole batch",
    "hybrid": "mean of identity and full-support weights",
}


@dataclass(frozen=True)
class AttentionMap:
    """Support-set weights of a batch of captions over the batch's videos."""

    caption_texts: list[str]  # (N,) row labels
    video_ids: list[str]  # (N,) columns; caption i belongs to video i
    weights: np.ndarray  # (N, N) float, rows sum to one; 0 outside each support set
    allowed: np.ndarray  # (N, N) bool, the support sets S_i
    title: str  # what the weights are, in words


def attention_batch(split: SplitData, count: int) -> SplitData:
    """The split's first `count` videos (manifest order), each with its first caption; a
    split of one video has no batch to attend over (a ValueError)."""
    video_ids = split.video_ids[:count]
    if len(video_ids) < 2:
        raise ValueError(
            f"the attention map needs a batch of at least 2 videos; the split has {len(video_ids)}"
        )
    caption_ids = [split.captions_of_video[video_id][0] for video_id in video_ids]
    owned = dict(zip(video_ids, ([caption_id] for caption_id in caption_ids), strict=True))
    return SplitData(video_ids, caption_ids, list(video_ids), owned)


def attention_map(
    model_path: str | Path,
    bank: FeatureBank,
    batch: SplitData,
    texts: Mapping[str, str],
    training: TrainConfig,
    device: torch.device,
) -> AttentionMap:
    """Eq. 3's weights w_ij = softmax_{j in S_i}(<c_t^i, c_v^j> / T) of the batch's captions
    over its videos, from the model of `model_path` in eval mode (videos from the part of
    the visual features it was trained on, truncated to training.max_video_seconds)."""
    contents = read_checkpoint(model_path, "model file")
    check_tokenizer(contents, model_path, "model file", bank.tokenizer)
    model = model_from_checkpoint(contents, device)
    bank = bank.visual_part(model.config.visual_features)
    c_v, c_t = embed_split(model, bank, batch, training.max_video_seconds, device)  # (N, d) x2
    variant = SHOWN_VARIANT[training.captioning]
    c_t, c_v = torch.from_numpy(c_t), torch.from_numpy(c_v)
    weights = support_weights(c_t, c_v, variant, training.temperature)  # (N, N)
    allowed = torch.ones_like(weights, dtype=torch.bool)  # (N, N)
    if variant == "cross":
        allowed.fill_diagonal_(False)
    return AttentionMap(
        [texts[caption_id] for caption_id in batch.caption_ids],
        list(batch.video_ids),
        weights.numpy(),
        allowed.numpy(),
        _attention_title(training),
    )


def _attention_title(training: TrainConfig) -> str:
    """Names the variant, its support sets and T; says what is shown instead for the
    variants whose training uses no learned attention."""
    trained = training.captioning
    shown = SHOWN_VARIANT[trained]
    line = (
        f"w_ij = softmax_j(<c_t^i, c_v^j> / T), T = {training.temperature:g}, {SUPPORT_SETS[shown]}"
    )
    if trained == "identity":
        return (
            f"{line}\ntraining.captioning identity captions each video from itself alone "
            "(S_i = {i}); shown: the full-support weights of its embeddings"
        )
    if trained == "none":
        return (
            f"{line}\ntraining.captioning none trains no captioning; shown: the "
            "full-support weights of its embeddings"
        )
    sampled = (
        f"; in training S_i was {training.support_set_size} random members of it"
        if training.support_set_size > 0
        else ""
    )
    return f"{line}\ntraining.captioning {trained}{sampled}"


def middle_thumbnails(
    video_ids: Sequence[str], sources: SplitSources
) -> dict[str, np.ndarray | None]:
    """video_id -> RGB (h, w, 3) thumbnail at its middle sampled timestamp, or None for a
    video that cannot be read (warned about by read_thumbnails, which decodes in worker
    processes)."""
    shown = list(dict.fromkeys(video_ids))
    wanted = [
        (sources.video_path(video_id), evenly_chosen(sources.sampled_times(video_id), 1))
        for video_id in shown
    ]
    read = read_thumbnails(wanted, FIGURE_THUMBNAIL_HEIGHT)
    return {
        video_id: thumbnails[0].rgb if thumbnails else None
        for video_id, thumbnails in zip(shown, read, strict=True)
    }


@dataclass(frozen=True)
class AttentionLayout:
    """Inches of the attention figure: a column per video, a row per caption."""

    count: int
    cell_w: float = 1.0
    cell_h: float = 0.6
    left: float = 3.4  # caption labels
    right: float = 1.3  # colour bar
    bottom: float = 1.1  # video ids
    thumbnail: float = 0.8  # row of thumbnails above the map
    title: float = 0.75

    @property
    def size(self) -> tuple[float, float]:
        width = self.left + self.count * self.cell_w + self.right
        return width, self.bottom + self.count * self.cell_h + self.thumbnail + self.title

    def rect(self, x: float, y: float, w: float, h: float) -> tuple[float, ...]:
        """Figure fractions of a box given in inches from the bottom left."""
        width, height = self.size
        return (x / width, y / height, w / width, h / height)

    @property
    def heatmap(self) -> tuple[float, ...]:
        return self.rect(self.left, self.bottom, self.count * self.cell_w, self.count * self.cell_h)

    def thumbnail_box(self, column: int) -> tuple[float, ...]:
        top = self.bottom + self.count * self.cell_h
        x = self.left + column * self.cell_w
        return self.rect(x + 0.04, top + 0.06, self.cell_w - 0.08, self.thumbnail - 0.1)

    @property
    def colour_bar(self) -> tuple[float, ...]:
        x = self.left + self.count * self.cell_w + 0.2
        return self.rect(x, self.bottom, 0.2, self.count * self.cell_h)


def plot_attention(
    attention: AttentionMap,
    thumbnails: Mapping[str, np.ndarray | None],
    heading: str,
    out_png: str | Path,
) -> None:
    """The attention map as a heatmap: captions as row labels, a thumbnail and the video
    id per column, each weight written in its cell, the caption's own video outlined and
    cells outside the support set greyed. Colours span 0 to the largest weight."""
    count = len(attention.video_ids)
    layout = AttentionLayout(count)
    figure = Figure(figsize=layout.size, dpi=DPI)
    axes = figure.add_axes(layout.heatmap)
    shown = np.ma.masked_where(~attention.allowed, attention.weights)
    image = axes.imshow(shown, cmap="viridis", vmin=0.0, vmax=float(shown.max()), aspect="auto")
    axes.set_facecolor("#dddddd")
    for i in range(count):
        for j in range(count):
            _weight_label(axes, i, j, attention, float(shown.max()))
        axes.add_patch(Rectangle((i - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", lw=2))
    axes.set_yticks(range(count), [_wrapped(text, 44) for text in attention.caption_texts])
    axes.set_xticks(range(count), attention.video_ids, rotation=30, ha="right")
    axes.tick_params(labelsize=8)
    axes.set_xlabel("videos of the batch (outlined in red: the caption's own video)")
    axes.set_ylabel("captions of the batch")
    for j, video_id in enumerate(attention.video_ids):
        _column_thumbnail(figure.add_axes(layout.thumbnail_box(j)), thumbnails[video_id])
    colour_bar = figure.colorbar(image, cax=figure.add_axes(layout.colour_bar))
    colour_bar.set_label("attention weight w_ij")
    figure.suptitle(f"{heading}\n{attention.title}", fontsize=9, y=0.99, va="top")
    _save(figure, out_png)


def _weight_label(axes, i: int, j: int, attention: AttentionMap, top: float) -> None:
    if not attention.allowed[i, j]:
        axes.text(j, i, "not in S_i", ha="center", va="center", fontsize=7, color="#555555")
        return
    weight = attention.weights[i, j]
    colour = "black" if weight > 0.6 * top else "white"
    axes.text(j, i, f"{weight:.2f}", ha="center", va="center", fontsize=8, color=colour)


def _column_thumbnail(axes, rgb: np.ndarray | None) -> None:
    """A column's video thumbnail, or a note that the video could not be read."""
    axes.axis("off")
    if rgb is None:
        axes.text(0.5, 0.5, "unreadable", ha="center", va="center", fontsize=7,
                  color="#aa0000", transform=axes.transAxes)  # fmt: skip
        return
    axes.imshow(rgb)
    axes.set_anchor("S")


def plot_top_retrievals(
    queries: Sequence[Query],
    thumbnails: Mapping[str, np.ndarray | None],
    heading: str,
    out_png: str | Path,
) -> None:
    """One row per query: its caption and rank, then its top RETRIEVED videos, each a
    middle thumbnail titled with its place, id and cosine score, correct ones framed."""
    height = 0.9 + 2.0 * len(queries)  # inches: the title, then a row per query
    figure = Figure(figsize=(3.2 + 2.4 * RETRIEVED, height), dpi=DPI)
    grid = figure.add_gridspec(
        len(queries), RETRIEVED + 1, width_ratios=[1.3] + [1] * RETRIEVED,
        left=0.02, right=0.98, bottom=0.1 / height, top=1 - 0.9 / height, hspace=0.3, wspace=0.08,
    )  # fmt: skip
    for row, query in enumerate(queries):
        caption = figure.add_subplot(grid[row, 0])
        caption.axis("off")
        caption.text(0.0, 0.5, f"{_wrapped(query.text, 30)}\n\nrank of its video: {query.rank:g}",
                     ha="left", va="center", fontsize=9, transform=caption.transAxes)  # fmt: skip
        for place, (video_id, score) in enumerate(
            zip(query.top_ids[:RETRIEVED], query.top_scores, strict=False)
        ):
            _retrieved_panel(
                figure.add_subplot(grid[row, place + 1]),
                thumbnails[video_id],
                f"#{place + 1} {video_id}  s = {score:.3f}",
                video_id in query.correct_ids,
            )
    figure.suptitle(f"{heading}\ntop-{RETRIEVED} text-to-video retrievals; green: the correct "
                    "video", fontsize=10, y=1 - 0.1 / height, va="top")  # fmt: skip
    _save(figure, out_png)


def _retrieved_panel(axes, rgb: np.ndarray | None, label: str, correct: bool) -> None:
    axes.set_xticks([])
    axes.set_yticks([])
    if rgb is None:
        axes.text(0.5, 0.5, "video could not be read", ha="center", va="center", fontsize=8,
                  color="#aa0000", transform=axes.transAxes)  # fmt: skip
    else:
        axes.imshow(rgb)
    colour = CORRECT_COLOUR if correct else "#999999"
    for spine in axes.spines.values():
        spine.set_edgecolor(colour)
        spine.set_linewidth(5 if correct else 1)
    title = f"\u2713 {label}" if correct else label
    axes.set_title(title, fontsize=8, color=CORRECT_COLOUR if correct else "black")


def _wrapped(text: str, width: int) -> str:
    return "\n".join(textwrap.wrap(text, width)) or text


def _save(figure: Figure, out_png: str | Path) -> None:
    with atomic_path(out_png) as temporary:
        figure.savefig(temporary, format="png", dpi=DPI)


def write_attention_figure(
    out_png: str | Path,
    sources: SplitSources,
    model_path: str | Path,
    bank: FeatureBank,
    usable: SplitData,
    training: TrainConfig,
    count: int,
    device: torch.device,
) -> None:
    """Fig. 3 of the split: the attention map of the first `count` videos of its usable
    ones (`usable`, from `bank.split`), each with its first caption."""
    batch = attention_batch(usable, count)
    attention = attention_map(model_path, bank, batch, sources.texts, training, device)
    heading = f"{sources.experiment}, {sources.split} split: support-set attention"
    plot_attention(attention, middle_thumbnails(batch.video_ids, sources), heading, out_png)


def figure_queries(queries: Sequence[Query], count: int) -> list[Query]:
    """The first caption of each of the first `count` videos, in ranks-file order: a
    file's first captions often all describe one video, which would show it `count` times."""
    firsts: dict[str, Query] = {}
    for query in queries:
        firsts.setdefault(query.correct_ids[0], query)
    return list(firsts.values())[:count]


def write_retrievals_figure(out_png: str | Path, sources: SplitSources, count: int) -> None:
    """Fig. 5 of the split: the top-3 retrievals of `count` fixed captions (`figure_queries`)."""
    queries = figure_queries(t2v_queries(sources.ranks, sources.texts), count)
    shown = [video_id for query in queries for video_id in query.top_ids[:RETRIEVED]]
    heading = f"{sources.experiment}, {sources.split} split"
    plot_top_retrievals(queries, middle_thumbnails(shown, sources), heading, out_png)
