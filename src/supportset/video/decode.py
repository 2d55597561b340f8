"""Decoding with PyAV and sampling at a fixed rate.

Second k (k = 0, 1, ...) at `fps` samples per second is represented by the first decoded
frame whose presentation time is at or after k / fps, measured from the stream's start
(so one sample per second of video, like `ffmpeg -vf fps=1`, give or take the last one).
Timestamps are the chosen frames' own presentation times in seconds (from pts), not the
grid times, so variable-frame-rate videos report where their samples really are.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np


class DecodeError(RuntimeError):
    """A video that cannot be decoded; the message says why in one line."""


@dataclass(frozen=True)
class DecodedFrame:
    """One decoded video frame."""

    time: float  # seconds from the stream's start, from pts
    frame: av.VideoFrame  # the decoded frame, converted only on demand


def iter_frames(path: str | Path) -> Iterator[DecodedFrame]:
    """Yield every frame of the first video stream of `path`, in presentation order."""
    path = Path(path)
    if not path.is_file():
        raise DecodeError(f"{path}: no such file")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DecodeError(f"{path}: no video stream")
            stream = container.streams.video[0]
            start = stream.start_time or 0
            for frame in container.decode(stream):
                if frame.pts is None:
                    raise DecodeError(f"{path}: frame without presentation timestamp")
                yield DecodedFrame(float((frame.pts - start) * stream.time_base), frame)
    except av.FFmpegError as error:
        raise DecodeError(f"{path}: {error}") from error


def is_sample(time: float, next_sample_time: float) -> bool:
    """Whether a frame at `time` (seconds) is the sample due at `next_sample_time`.

    A half-microsecond tolerance absorbs the rounding of pts * time_base.
    """
    return time >= next_sample_time - 5e-7


def following_sample_time(time: float, fps: float) -> float:
    """The first grid time k / fps strictly after the sample taken at `time` (seconds)."""
    return (np.floor(time * fps + 5e-7) + 1) / fps


def flag_samples(path: str | Path, fps: float) -> Iterator[tuple[DecodedFrame, bool]]:
    """Yield every frame with whether it represents the next 1/fps-second step."""
    next_time = 0.0
    for decoded in iter_frames(path):
        chosen = is_sample(decoded.time, next_time)
        if chosen:
            next_time = following_sample_time(decoded.time, fps)
        yield decoded, chosen


def sample_frames(path: str | Path, fps: float) -> Iterator[DecodedFrame]:
    """Yield only the frames that represent each 1/fps-second step of the video."""
    for decoded, chosen in flag_samples(path, fps):
        if chosen:
            yield decoded


def to_rgb(frame: av.VideoFrame, short_side: int, crop: int) -> np.ndarray:
    """RGB uint8 (crop, crop, 3): short side resized to `short_side`, then centre-cropped."""
    scale = short_side / min(frame.width, frame.height)
    width = max(crop, round(frame.width * scale))
    height = max(crop, round(frame.height * scale))
    rgb = frame.to_ndarray(format="rgb24", width=width, height=height)
    top, left = (height - crop) // 2, (width - crop) // 2
    return rgb[top : top + crop, left : left + crop]


def describe_samples(path: str | Path, fps: float) -> dict:
    """What the pipeline samples from one video: timestamps (s) and frame sizes (pixels)."""
    samples = [
        {
            "timestamp": round(decoded.time, 6),
            "width": decoded.frame.width,
            "height": decoded.frame.height,
        }
        for decoded in sample_frames(path, fps)
    ]
    if not samples:
        raise DecodeError(f"{path}: no frames decoded")
    return {"path": str(path), "fps": fps, "samples": samples}
