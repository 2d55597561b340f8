"""Decoding with PyAV and choosing the frames that represent each step of the feature grid.

Second k (k = 0, 1, ...) at `fps` samples per second is represented by the first decoded
frame whose presentation time is at or after k / fps, measured from the stream's start.
That gives one sample per 1/fps seconds of video, the same count as `ffmpeg -vf fps=1`
give or take the last one. Timestamps are the chosen frames' own presentation times in
seconds (from pts), not grid times, so variable-frame-rate videos report where their
samples really are. Frames are rotated as the container's display matrix says, like
ffmpeg's autorotate. This module needs only PyAV and NumPy (it runs in decode workers).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

# A decode that ends this much before the stream's declared duration is a truncated file.
TRUNCATION_TOLERANCE_S = 0.5


class DecodeError(RuntimeError):
    """A video that cannot be decoded; the message says why in one line."""


@dataclass(frozen=True)
class DecodedFrame:
    """One decoded video frame."""

    index: int  # position in presentation order, from 0
    time: float  # seconds from the stream's start, from pts
    frame: av.VideoFrame  # the decoded frame, converted only on demand


def iter_frames(path: str | Path) -> Iterator[DecodedFrame]:
    """Yield every frame of the first video stream of `path`, in presentation order.

    Raises DecodeError for a missing, empty, non-video or audio-only file, a stream that
    yields no frame, and a file whose frames stop well before its declared duration.
    """
    path = Path(path)
    _check_file(path)
    try:
        container = av.open(str(path))
    except av.FFmpegError as error:
        raise DecodeError(f"{path}: cannot open: {error.strerror}") from error
    last_time = None
    with container:
        if not container.streams.video:
            raise DecodeError(f"{path}: no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        start = stream.start_time or 0
        try:
            for index, frame in enumerate(container.decode(stream)):
                if frame.pts is None:
                    raise DecodeError(f"{path}: frame {index} has no presentation timestamp")
                last_time = float((frame.pts - start) * stream.time_base)
                yield DecodedFrame(index, last_time, frame)
        except av.FFmpegError as error:
            where = "before the first frame" if last_time is None else f"after {last_time:.2f} s"
            raise DecodeError(f"{path}: decoding failed {where}: {error.strerror}") from error
        _check_complete(path, stream, last_time)


def _check_file(path: Path) -> None:
    if not path.exists():
        raise DecodeError(f"{path}: no such file")
    if path.is_file() and os.path.getsize(path) == 0:
        raise DecodeError(f"{path}: empty file (0 bytes)")


def _check_complete(
    path: Path, stream: av.video.stream.VideoStream, last_time: float | None
) -> None:
    if last_time is None:
        raise DecodeError(f"{path}: no frame could be decoded")
    if stream.duration is None:
        return
    declared = float(stream.duration * stream.time_base)
    frame_step = 1.0 / float(stream.average_rate or stream.guessed_rate or 1)
    if last_time + frame_step < declared - TRUNCATION_TOLERANCE_S:
        raise DecodeError(
            f"{path}: truncated: frames end at {last_time:.2f} s of a declared {declared:.2f} s"
        )


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


def quarter_turns(frame: av.VideoFrame) -> int:
    """Counter-clockwise quarter turns (0-3) that the display matrix asks for."""
    return round((frame.rotation or 0) / 90) % 4


def display_size(frame: av.VideoFrame) -> tuple[int, int]:
    """(width, height) in pixels of the frame as displayed, after rotation."""
    if quarter_turns(frame) % 2:
        return frame.height, frame.width
    return frame.width, frame.height


def to_rgb(frame: av.VideoFrame, short_side: int, crop: int) -> np.ndarray:
    """RGB uint8 (crop, crop, 3) as displayed: rotated, short side resized, centre-cropped.

    The resize happens in FFmpeg's swscale on the stored frame, before rotation, with its
    bilinear filter (whose support widens when downscaling, so it is antialiased like
    torchvision's Resize(antialias=True) in the weights' own preprocessing).
    """
    width, height = display_size(frame)
    scale = short_side / min(width, height)
    out_width = max(crop, round(width * scale))
    out_height = max(crop, round(height * scale))
    turns = quarter_turns(frame)
    stored = (out_height, out_width) if turns % 2 else (out_width, out_height)
    rgb = frame.to_ndarray(
        format="rgb24", width=stored[0], height=stored[1], interpolation="BILINEAR"
    )
    rgb = np.rot90(rgb, k=turns) if turns else rgb
    top, left = (out_height - crop) // 2, (out_width - crop) // 2
    return np.ascontiguousarray(rgb[top : top + crop, left : left + crop])


def describe_samples(path: str | Path, fps: float) -> dict:
    """What the pipeline samples from one video: timestamps (s) and displayed sizes (px)."""
    samples = []
    for decoded in sample_frames(path, fps):
        width, height = display_size(decoded.frame)
        samples.append({"timestamp": round(decoded.time, 6), "width": width, "height": height})
    return {"path": str(path), "fps": fps, "samples": samples}
