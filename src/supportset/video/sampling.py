"""Streaming the network inputs of one video, a few seconds at a time.

For every sample (see decode.py for which frame represents second k) a worker produces
the appearance frame and the motion clip: `clip_len` frames at the native rate, the
sample frame at position clip_len // 2, earlier frames before it (the first frame repeats
at the start of the video, the last one at the end). Only frames that end up in a clip or
are a sample are converted to RGB. Memory is bounded by a clip and a chunk, whatever the
video's length. Needs only PyAV and NumPy, so that decode workers stay light.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from supportset.video.decode import flag_samples, to_rgb


@dataclass(frozen=True)
class SamplingSpec:
    """What a decode worker needs to know (picklable, no torch)."""

    fps: float  # samples per second of video
    appearance_resize: int  # short side (px) before the appearance crop
    appearance_size: int  # appearance crop (px)
    motion_resize: int  # short side (px) before the motion crop
    motion_size: int  # motion crop (px)
    clip_len: int  # frames per motion clip
    chunk_samples: int = 8  # samples per message from a worker


@dataclass
class SampleChunk:
    """Consecutive samples of one video."""

    timestamps: np.ndarray  # (n,) float64 seconds
    appearance: np.ndarray  # (n, A, A, 3) uint8 RGB
    motion: np.ndarray  # (n, clip_len, M, M, 3) uint8 RGB


@dataclass
class _OpenClip:
    centre: int  # frame index of the sample
    time: float  # its timestamp in seconds
    appearance: np.ndarray  # (A, A, 3)


def stream_samples(path: str | Path, spec: SamplingSpec) -> Iterator[SampleChunk]:
    """Yield the samples of `path` in order, `spec.chunk_samples` at a time."""
    before = spec.clip_len // 2
    after = spec.clip_len - before - 1
    recent: deque = deque(maxlen=before)  # (index, frame) not yet known to be needed
    motion: dict[int, np.ndarray] = {}  # frame index -> (M, M, 3) of frames in open clips
    open_clips: list[_OpenClip] = []
    ready: list[tuple[_OpenClip, np.ndarray]] = []
    last_index = -1
    for decoded, chosen in flag_samples(path, spec.fps):
        last_index = decoded.index
        needed = chosen or (open_clips and decoded.index <= open_clips[-1].centre + after)
        if chosen:
            for index, frame in recent:
                motion.setdefault(index, _motion_rgb(frame, spec))
            recent.clear()
            appearance = to_rgb(decoded.frame, spec.appearance_resize, spec.appearance_size)
            open_clips.append(_OpenClip(decoded.index, decoded.time, appearance))
        if needed:
            motion[decoded.index] = _motion_rgb(decoded.frame, spec)
        else:
            recent.append((decoded.index, decoded.frame))
        while open_clips and open_clips[0].centre + after <= decoded.index:
            ready.append(_close(open_clips.pop(0), motion, before, after, decoded.index))
        _forget_before(motion, open_clips, decoded.index, before)
        if len(ready) >= spec.chunk_samples:
            yield _chunk(ready)
            ready = []
    ready.extend(_close(clip, motion, before, after, last_index) for clip in open_clips)
    if ready:
        yield _chunk(ready)


def _motion_rgb(frame, spec: SamplingSpec) -> np.ndarray:
    return to_rgb(frame, spec.motion_resize, spec.motion_size)


def _close(
    clip: _OpenClip, motion: dict[int, np.ndarray], before: int, after: int, last_index: int
) -> tuple[_OpenClip, np.ndarray]:
    """The clip's frames (clip_len, M, M, 3), edges clamped to the first and last frame."""
    indices = np.clip(np.arange(clip.centre - before, clip.centre + after + 1), 0, last_index)
    return clip, np.stack([motion[int(index)] for index in indices])


def _forget_before(
    motion: dict[int, np.ndarray], open_clips: list[_OpenClip], current: int, before: int
) -> None:
    """Drop converted frames that no open or future clip can use (keep frame 0 for padding
    while the first clip may still need it)."""
    oldest_needed = min([clip.centre - before for clip in open_clips] + [current - before + 1])
    for index in [index for index in motion if index < max(oldest_needed, 0)]:
        del motion[index]


def _chunk(ready: list[tuple[_OpenClip, np.ndarray]]) -> SampleChunk:
    return SampleChunk(
        timestamps=np.array([clip.time for clip, _ in ready]),
        appearance=np.stack([clip.appearance for clip, _ in ready]),
        motion=np.stack([frames for _, frames in ready]),
    )
