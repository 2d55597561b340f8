"""Built-in synthetic video-text corpus for ``make demo``.

Every video shows one coloured shape (square, circle or triangle) on a uniform background and
contains exactly one temporal event: the shape *turns* from one colour into another halfway,
*fades out* into the background, *appears* halfway, *grows* or *shrinks*. Five paraphrased
captions describe the event.

Why this design: the demo pipeline embeds frames with small CNN backbones that have random
weights and are globally pooled, so their features keep colour statistics but lose position.
The meaning of a video is therefore carried only by what survives pooling:

* colour: six well separated shape colours and four background colours, never equal;
* area: the three shapes cover different areas at equal size (square 4r^2, circle pi r^2,
  triangle 2r^2, r = half size), and grows/shrinks change the area over time;
* temporal order: captions distinguish "red turns blue" from "blue turns red", "appears" from
  "fades out" and "grows" from "shrinks", which only a model that sees frame order can do.

The position of the shape is random per video and never part of the meaning. Frame rate,
resolution, duration and container (mostly H.264 MP4, about one in ten MPEG-4 Part 2 AVI or
VP9 WebM) vary too, so the feature extractors see realistic input variety.

Faulty negatives: the paper's support-set bottleneck is motivated by videos in a batch that
share a meaning with the anchor but count as negatives. About 17.5 % of the videos re-render
the meaning of another video of the same split (same event, shape, colours and background;
new position, frame rate, resolution and duration), so every split, test included, contains
such pairs.

The corpus is deterministic: one ``numpy.random.default_rng(seed)`` drives every choice, the
encoders run single-threaded and the muxers run with ``+bitexact`` (without it the WebM muxer
writes a random segment UID), so the same arguments give byte-identical files.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from supportset.io import atomic_path

SHAPES = ("square", "circle", "triangle")
SHAPE_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (40, 200, 60),
    "blue": (40, 80, 240),
    "yellow": (240, 220, 40),
    "white": (245, 245, 245),
    "purple": (160, 50, 200),
}
BACKGROUND_COLOURS: dict[str, tuple[int, int, int]] = {
    "black": (0, 0, 0),
    "gray": (110, 110, 110),
    "navy": (20, 20, 90),
    "dark green": (10, 70, 30),
}
EVENTS = ("turns", "fades_out", "appears", "grows", "shrinks")

FRAME_RATES = (Fraction(24), Fraction(25), Fraction(30000, 1001), Fraction(30))
FRAME_SIZES = ((160, 120), (192, 144), (240, 180), (320, 240), (256, 144), (320, 180))
"""Frame sizes as (width, height) in pixels, all even (needed for yuv420p)."""

SPLIT_FRACTIONS = {"train": 0.7, "val": 0.1, "test": 0.2}
MIN_VIDEOS_PER_SPLIT = 2
RERENDER_FRACTION = 0.175
OTHER_CONTAINER_FRACTION = 0.1
CAPTIONS_PER_VIDEO = 5

CAPTION_TEMPLATES: dict[str, tuple[str, ...]] = {
    "turns": (
        "a {c} {s} turns {c2}",
        "a {s} changes colour from {c} to {c2}",
        "the {c} {s} becomes {c2}",
        "on a {bg} background a {c} {s} turns {c2}",
        "a {c} {s}, then a {c2} {s}",
        "a {c} {s} on a {bg} background changes to {c2}",
    ),
    "fades_out": (
        "a {c} {s} fades out",
        "the {c} {s} slowly disappears",
        "a {c} {s} fades into the {bg} background",
        "on a {bg} background a {c} {s} fades away",
        "a {c} {s} is visible, then it is gone",
        "a {c} {s} gradually vanishes",
    ),
    "appears": (
        "a {c} {s} appears",
        "a {c} {s} suddenly shows up",
        "at first nothing, then a {c} {s} appears",
        "a {c} {s} appears on a {bg} background",
        "an empty {bg} background, then a {c} {s}",
        "the {c} {s} is not there at first, then it is",
    ),
    "grows": (
        "a {c} {s} grows",
        "a small {c} {s} gets bigger",
        "the {c} {s} becomes larger",
        "on a {bg} background a {c} {s} grows",
        "a small {c} {s}, then a large {c} {s}",
        "a {c} {s} expands over time",
    ),
    "shrinks": (
        "a {c} {s} shrinks",
        "a large {c} {s} gets smaller",
        "the {c} {s} becomes smaller",
        "on a {bg} background a {c} {s} shrinks",
        "a large {c} {s}, then a small {c} {s}",
        "a {c} {s} contracts over time",
    ),
}
"""Paraphrase templates per event; slots {c}, {c2} (colour after), {s} (shape), {bg}."""

SIZE_SMALL, SIZE_NORMAL, SIZE_LARGE = 0.10, 0.20, 0.30
"""Half size r of a shape as a fraction of sqrt(width * height), so area fractions do not
depend on the aspect ratio. A square of half size r covers 4 r^2 of the frame."""


@dataclass(frozen=True)
class Meaning:
    """What a video shows; two videos with equal meanings are faulty negatives of each other."""

    event: str
    shape: str
    colour: str
    background: str
    colour_after: str | None = None  # only for "turns"

    def canonical(self) -> str:
        """Return e.g. ``"turns|square|red|blue|bg=black"`` or ``"grows|circle|red|bg=navy"``."""
        colours = [self.colour] if self.colour_after is None else [self.colour, self.colour_after]
        return "|".join([self.event, self.shape, *colours, f"bg={self.background}"])


@dataclass(frozen=True)
class Container:
    """An output container/codec pair and the encoder options that keep files small."""

    extension: str
    format_name: str
    codec: str
    options: dict[str, str]


# x264's macroblock-tree rate control made repeated encodes of identical input differ
# (about one video in ten, depending on heap layout), so it is switched off.
MP4 = Container(
    "mp4", "mp4", "libx264", {"crf": "23", "preset": "veryfast", "x264-params": "mbtree=0"}
)
OTHER_CONTAINERS = (
    Container("avi", "avi", "mpeg4", {"b": "400k"}),
    Container(
        "webm",
        "webm",
        "libvpx-vp9",
        {"crf": "32", "b": "0", "deadline": "realtime", "cpu-used": "8"},
    ),
)


@dataclass(frozen=True)
class VideoSpec:
    """Everything needed to render and annotate one video.

    ``position`` is the shape centre in [0, 1]^2 of the area where the largest shape fits.
    """

    video_id: str
    split: str
    meaning: Meaning
    container: Container
    fps: Fraction
    width: int
    height: int
    seconds: float
    position: tuple[float, float]
    captions: tuple[str, ...]

    @property
    def file(self) -> str:
        """Path of the video relative to the corpus root."""
        return f"videos/{self.video_id}.{self.container.extension}"

    @property
    def num_frames(self) -> int:
        """Frame count; frame k is shown at k / fps seconds."""
        return round(self.seconds * self.fps)


@dataclass(frozen=True)
class FrameState:
    """What one frame shows: shape colour (RGB), half size r in pixels, opacity in [0, 1]."""

    colour: tuple[int, int, int]
    half_size: float
    opacity: float


def make_demo_corpus(
    root: Path,
    num_videos: int = 240,
    seed: int = 0,
    min_seconds: float = 3.0,
    max_seconds: float = 12.0,
) -> Path:
    """Generate the synthetic demo corpus under ``root`` and return the path of annotations.json.

    Writes ``root/videos/demo%05d.<mp4|avi|webm>`` and ``root/annotations.json`` with keys
    ``seed``, ``videos`` (video_id, file, split, meaning, fps, width, height, seconds) and
    ``captions`` (caption_id, video_id, text), five captions per video. Durations are drawn
    uniformly from the multiples of 0.5 s in [min_seconds, max_seconds]. Same arguments give
    byte-identical files.
    """
    smallest = MIN_VIDEOS_PER_SPLIT * len(SPLIT_FRACTIONS)
    if num_videos < smallest:
        raise ValueError(f"num_videos must be at least {smallest}, got {num_videos}")
    half_seconds = range(math.ceil(2 * min_seconds), math.floor(2 * max_seconds) + 1)
    if min_seconds <= 0 or len(half_seconds) == 0:
        raise ValueError(f"no positive multiple of 0.5 s in [{min_seconds}, {max_seconds}]")
    specs = _plan_corpus(np.random.default_rng(seed), num_videos, half_seconds)
    root = Path(root)
    (root / "videos").mkdir(parents=True, exist_ok=True)
    for spec in specs:
        _write_video(root / spec.file, spec)
    annotations_path = root / "annotations.json"
    text = json.dumps(_annotations(seed, specs), sort_keys=True, indent=1) + "\n"
    with atomic_path(annotations_path) as tmp:
        tmp.write_text(text, encoding="ascii")
    return annotations_path


def _plan_corpus(rng: np.random.Generator, num_videos: int, half_seconds: range) -> list[VideoSpec]:
    """Draw split, meaning, container and rendering parameters for every video, in id order."""
    splits = _assign_splits(rng, num_videos)
    meanings = _assign_meanings(rng, splits)
    containers = _assign_containers(rng, num_videos)
    specs = []
    for index, (split, meaning, container) in enumerate(
        zip(splits, meanings, containers, strict=True)
    ):
        width, height = FRAME_SIZES[rng.integers(len(FRAME_SIZES))]
        specs.append(
            VideoSpec(
                video_id=f"demo{index:05d}",
                split=split,
                meaning=meaning,
                container=container,
                fps=FRAME_RATES[rng.integers(len(FRAME_RATES))],
                width=width,
                height=height,
                seconds=int(rng.choice(half_seconds)) / 2,
                position=(float(rng.random()), float(rng.random())),
                captions=_choose_captions(rng, meaning),
            )
        )
    return specs


def _assign_splits(rng: np.random.Generator, num_videos: int) -> list[str]:
    """Return one split name per video: about 70/10/20 % train/val/test, at least 2 each."""
    val = max(MIN_VIDEOS_PER_SPLIT, round(SPLIT_FRACTIONS["val"] * num_videos))
    test = max(MIN_VIDEOS_PER_SPLIT, round(SPLIT_FRACTIONS["test"] * num_videos))
    names = ["train"] * (num_videos - val - test) + ["val"] * val + ["test"] * test
    return [names[i] for i in rng.permutation(num_videos)]


def _assign_meanings(rng: np.random.Generator, splits: list[str]) -> list[Meaning]:
    """Return one meaning per video; ~17.5 % re-render an original of the same split.

    Originals get distinct meanings (while the meaning space lasts), with the five events
    equally likely, so shared meanings come only from the deliberate re-renderings.
    """
    is_rerender = np.zeros(len(splits), dtype=bool)
    for split in SPLIT_FRACTIONS:
        members = np.flatnonzero(np.array(splits) == split)
        count = max(1, round(RERENDER_FRACTION * len(members))) if len(members) >= 3 else 0
        is_rerender[rng.permutation(members)[:count]] = True
    space = _meaning_space()
    per_event = Counter(meaning.event for meaning in space)
    weights = np.array([1.0 / per_event[meaning.event] for meaning in space]) / len(EVENTS)
    originals = np.flatnonzero(~is_rerender)
    drawn = rng.choice(len(space), originals.size, replace=originals.size > len(space), p=weights)
    meanings = {int(i): space[j] for i, j in zip(originals, drawn, strict=True)}
    for index in np.flatnonzero(is_rerender):
        same_split = [i for i in originals if splits[i] == splits[index]]
        meanings[int(index)] = meanings[int(same_split[rng.integers(len(same_split))])]
    return [meanings[index] for index in range(len(splits))]


def _meaning_space() -> list[Meaning]:
    """All distinct meanings, in a fixed order."""
    space = []
    for event in EVENTS:
        for shape in SHAPES:
            for colour in SHAPE_COLOURS:
                for background in BACKGROUND_COLOURS:
                    if event != "turns":
                        space.append(Meaning(event, shape, colour, background))
                        continue
                    for after in SHAPE_COLOURS:
                        if after != colour:
                            space.append(Meaning(event, shape, colour, background, after))
    return space


def _assign_containers(rng: np.random.Generator, num_videos: int) -> list[Container]:
    """Return one container per video: about 1 in 10 (at least one) AVI or WebM, else MP4."""
    count = max(1, round(OTHER_CONTAINER_FRACTION * num_videos))
    containers = [MP4] * num_videos
    for rank, index in enumerate(rng.permutation(num_videos)[:count]):
        containers[index] = OTHER_CONTAINERS[rank % len(OTHER_CONTAINERS)]
    return containers


def _choose_captions(rng: np.random.Generator, meaning: Meaning) -> tuple[str, ...]:
    """Pick 5 of the event's templates (in template order) and fill them in."""
    templates = CAPTION_TEMPLATES[meaning.event]
    chosen = np.sort(rng.choice(len(templates), CAPTIONS_PER_VIDEO, replace=False))
    slots = {"c": meaning.colour, "c2": meaning.colour_after, "s": meaning.shape}
    return tuple(templates[i].format(bg=meaning.background, **slots) for i in chosen)


def _frame_states(spec: VideoSpec) -> list[FrameState]:
    """The state of each of the ``spec.num_frames`` frames, in display order."""
    n = spec.num_frames
    scale = math.sqrt(spec.width * spec.height)
    return [_frame_state(spec.meaning, k / max(n - 1, 1), k >= n / 2, scale) for k in range(n)]


def _frame_state(meaning: Meaning, progress: float, second_half: bool, scale: float) -> FrameState:
    """State of the frame at ``progress`` in [0, 1] through the video (``scale`` in pixels).

    turns: colour switches at the half; fades_out: opacity falls 1 -> 0 over the second half;
    appears: invisible in the first half; grows/shrinks: half size moves linearly between
    SIZE_SMALL and SIZE_LARGE.
    """
    colour, size = SHAPE_COLOURS[meaning.colour], SIZE_NORMAL * scale
    if meaning.event == "turns":
        return FrameState(SHAPE_COLOURS[meaning.colour_after] if second_half else colour, size, 1.0)
    if meaning.event == "fades_out":
        return FrameState(colour, size, min(1.0, 2.0 - 2.0 * progress))
    if meaning.event == "appears":
        return FrameState(colour, size, float(second_half))
    growth = progress if meaning.event == "grows" else 1.0 - progress  # grows or shrinks
    return FrameState(colour, (SIZE_SMALL + (SIZE_LARGE - SIZE_SMALL) * growth) * scale, 1.0)


def _shape_mask(spec: VideoSpec, half_size: float) -> np.ndarray:
    """Boolean mask (height, width) of the shape with half size ``half_size`` pixels.

    The centre keeps the largest shape inside the frame, wherever ``spec.position`` puts it.
    """
    margin = SIZE_LARGE * math.sqrt(spec.width * spec.height) + 1
    cx = margin + spec.position[0] * (spec.width - 2 * margin)
    cy = margin + spec.position[1] * (spec.height - 2 * margin)
    x = np.arange(spec.width)[None, :] + 0.5 - cx
    y = np.arange(spec.height)[:, None] + 0.5 - cy
    if spec.meaning.shape == "square":
        return (np.abs(x) <= half_size) & (np.abs(y) <= half_size)
    if spec.meaning.shape == "circle":
        return x**2 + y**2 <= half_size**2
    # Triangle pointing up: apex at y = -r, base of width 2r at y = +r.
    return (y <= half_size) & (np.abs(x) <= (y + half_size) / 2)


def _render(spec: VideoSpec, state: FrameState) -> np.ndarray:
    """RGB frame (height, width, 3) uint8 showing ``state`` over the uniform background."""
    background = np.array(BACKGROUND_COLOURS[spec.meaning.background], dtype=np.float64)
    blended = state.opacity * np.array(state.colour) + (1 - state.opacity) * background
    palette = np.round(np.stack([background, blended])).astype(np.uint8)  # (2, 3)
    return np.take(palette, _shape_mask(spec, state.half_size).view(np.uint8), axis=0)


def _write_video(path: Path, spec: VideoSpec) -> None:
    """Encode the video of ``spec`` to ``path`` atomically; frame k has pts k in 1/fps units."""
    container = spec.container
    previous_state, image = None, None
    with (
        atomic_path(path) as tmp,
        av.open(
            str(tmp), "w", format=container.format_name, container_options={"fflags": "+bitexact"}
        ) as output,
    ):
        stream = output.add_stream(
            container.codec, rate=spec.fps, options={**container.options, "flags": "+bitexact"}
        )
        stream.width, stream.height, stream.pix_fmt = spec.width, spec.height, "yuv420p"
        stream.codec_context.thread_count = 1
        stream.codec_context.time_base = 1 / spec.fps
        stream.codec_context.gop_size = 2 * round(spec.fps)
        for k, state in enumerate(_frame_states(spec)):
            if state != previous_state:  # static stretches are rendered once
                previous_state, image = state, _render(spec, state)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = k, stream.codec_context.time_base
            output.mux(stream.encode(frame))
        output.mux(stream.encode(None))


def _annotations(seed: int, specs: list[VideoSpec]) -> dict:
    """The annotations.json content: seed, videos and captions in video-id order."""
    videos = [
        {
            "video_id": spec.video_id,
            "file": spec.file,
            "split": spec.split,
            "meaning": spec.meaning.canonical(),
            "fps": float(spec.fps),
            "width": spec.width,
            "height": spec.height,
            "seconds": spec.seconds,
        }
        for spec in specs
    ]
    captions = [
        {"caption_id": f"{spec.video_id}_{k}", "video_id": spec.video_id, "text": text}
        for spec in specs
        for k, text in enumerate(spec.captions)
    ]
    return {"seed": seed, "videos": videos, "captions": captions}
