"""Tests for the synthetic demo corpus (supportset.data.demo)."""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pytest

from supportset.data.demo import BACKGROUND_COLOURS, SHAPE_COLOURS, make_demo_corpus

CORPUS_ARGS = {"num_videos": 16, "min_seconds": 3.0, "max_seconds": 4.0}
SHAPE_DISTANCE = 60.0
"""RGB distance from the background above which a decoded pixel counts as shape."""


@dataclass
class DecodedVideo:
    """Frame times in seconds (from pts), frame size in pixels, first and last RGB frames."""

    times: list[float]
    width: int
    height: int
    first: np.ndarray  # (height, width, 3) uint8
    last: np.ndarray  # (height, width, 3) uint8


def decode(path: Path) -> DecodedVideo:
    """Decode every frame of the video at ``path``."""
    times, frames = [], []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            times.append(float(frame.pts * frame.time_base))
            frames.append(frame)
    first, last = (f.to_ndarray(format="rgb24") for f in (frames[0], frames[-1]))
    return DecodedVideo(times, frames[0].width, frames[0].height, first, last)


def all_files(root: Path) -> dict[str, bytes]:
    """Bytes of every file under ``root``, keyed by relative path."""
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def shape_pixels(frame: np.ndarray, background: str) -> np.ndarray:
    """RGB values (k, 3) of the pixels that differ clearly from the background colour."""
    distance = np.linalg.norm(frame.astype(float) - BACKGROUND_COLOURS[background], axis=-1)
    return frame[distance > SHAPE_DISTANCE].astype(float)


def nearest_colour(rgb: np.ndarray) -> str:
    """Name of the shape colour closest to ``rgb`` (3,)."""
    return min(SHAPE_COLOURS, key=lambda name: np.linalg.norm(rgb - SHAPE_COLOURS[name]))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A 16-video corpus (seed 0) and its parsed annotations."""
    root = tmp_path_factory.mktemp("demo")
    annotations_path = make_demo_corpus(root, seed=0, **CORPUS_ARGS)
    assert annotations_path == root / "annotations.json"
    return root, json.loads(annotations_path.read_text())


def test_same_seed_gives_identical_bytes_and_other_seed_differs(corpus, tmp_path):
    root, _ = corpus
    make_demo_corpus(tmp_path / "again", seed=0, **CORPUS_ARGS)
    make_demo_corpus(tmp_path / "other", seed=1, **CORPUS_ARGS)
    original, again, other = (all_files(r) for r in (root, tmp_path / "again", tmp_path / "other"))
    assert len(original) == CORPUS_ARGS["num_videos"] + 1  # no temporary files left behind
    assert original == again
    assert other["annotations.json"] != original["annotations.json"]
    original_videos = {data for name, data in original.items() if name.startswith("videos/")}
    assert original_videos.isdisjoint(other.values())


def test_annotations_json_is_stable_text(corpus):
    root, annotations = corpus
    text = (root / "annotations.json").read_text()
    assert text == json.dumps(annotations, sort_keys=True, indent=1) + "\n"
    assert annotations["seed"] == 0


def test_every_video_decodes_with_annotated_timing_and_size(corpus):
    root, annotations = corpus
    for video in annotations["videos"]:
        decoded = decode(root / video["file"])
        frame_seconds = 1.0 / video["fps"]
        assert (decoded.width, decoded.height) == (video["width"], video["height"])
        assert decoded.times[0] == pytest.approx(0.0, abs=1e-3)
        assert all(np.diff(decoded.times) > 0)
        duration = decoded.times[-1] + frame_seconds
        assert abs(duration - video["seconds"]) <= frame_seconds
        mean_step = (decoded.times[-1] - decoded.times[0]) / (len(decoded.times) - 1)
        assert mean_step == pytest.approx(frame_seconds, rel=1e-3)


def test_corpus_mixes_containers(corpus):
    root, annotations = corpus
    suffixes = Counter(Path(video["file"]).suffix for video in annotations["videos"])
    assert suffixes[".mp4"] >= len(annotations["videos"]) // 2
    assert set(suffixes) - {".mp4"}
    for video in annotations["videos"]:
        with av.open(str(root / video["file"])) as container:
            codec = container.streams.video[0].codec_context.name
        assert (
            codec == {".mp4": "h264", ".avi": "mpeg4", ".webm": "vp9"}[Path(video["file"]).suffix]
        )


def test_annotations_have_captions_splits_and_shared_meanings(corpus):
    _, annotations = corpus
    videos, captions = annotations["videos"], annotations["captions"]
    video_ids = [video["video_id"] for video in videos]
    assert video_ids == [f"demo{i:05d}" for i in range(CORPUS_ARGS["num_videos"])]
    assert len({c["caption_id"] for c in captions}) == len(captions) == 5 * len(videos)
    for caption in captions:
        assert caption["caption_id"].rsplit("_", 1)[0] == caption["video_id"]
        assert re.fullmatch(r"[a-z][a-z ,]*[a-z]", caption["text"])
    assert Counter(c["video_id"] for c in captions) == Counter({v: 5 for v in video_ids})
    assert Counter(video["split"] for video in videos) == {"train": 11, "val": 2, "test": 3}
    splits_by_meaning: dict[str, set[str]] = {}
    for video in videos:
        splits_by_meaning.setdefault(video["meaning"], set()).add(video["split"])
    shared = [m for m, n in Counter(v["meaning"] for v in videos).items() if n > 1]
    assert shared
    assert all(len(splits_by_meaning[meaning]) == 1 for meaning in shared)


@pytest.mark.parametrize("num_videos", [6, 12])
def test_small_corpus_has_two_videos_per_split(tmp_path, num_videos):
    path = make_demo_corpus(tmp_path, num_videos=num_videos, min_seconds=1.0, max_seconds=1.0)
    splits = Counter(video["split"] for video in json.loads(path.read_text())["videos"])
    assert sum(splits.values()) == num_videos
    assert min(splits[name] for name in ("train", "val", "test")) >= 2


def test_too_small_corpus_is_rejected(tmp_path):
    with pytest.raises(ValueError):
        make_demo_corpus(tmp_path, num_videos=5)


def test_turns_video_changes_shape_colour_from_first_to_last_frame(corpus):
    root, annotations = corpus
    turns = [v for v in annotations["videos"] if v["meaning"].startswith("turns|")]
    assert turns
    for video in turns:
        _, _, before, after, background = video["meaning"].replace("bg=", "").split("|")
        decoded = decode(root / video["file"])
        early = shape_pixels(decoded.first, background)
        late = shape_pixels(decoded.last, background)
        assert len(early) > 0.02 * video["width"] * video["height"]
        assert nearest_colour(early.mean(axis=0)) == before
        assert nearest_colour(late.mean(axis=0)) == after


def test_appear_fade_grow_shrink_follow_temporal_order(corpus):
    root, annotations = corpus
    checked = Counter()
    for video in annotations["videos"]:
        if video["meaning"].startswith("turns|"):
            continue
        event, _, colour, background = video["meaning"].replace("bg=", "").split("|")
        decoded = decode(root / video["file"])
        early = shape_pixels(decoded.first, background)
        late = shape_pixels(decoded.last, background)
        expected_order = {
            "appears": len(early) == 0 < len(late),
            "fades_out": len(early) > 0 == len(late),
            "grows": 0 < len(early) < len(late),
            "shrinks": len(early) > len(late) > 0,
        }
        assert expected_order[event], video
        visible = early if len(early) else late
        assert nearest_colour(visible.mean(axis=0)) == colour
        checked[event] += 1
    assert len(checked) >= 2
