"""Thumbnails of videos at given timestamps, for the retrieval browser and the figures.

Timestamps are those the visual shards store (`timestamps` column, seconds from the
stream's start, the sampled frames' own presentation times; see decode.py). The frame
shown for timestamp t is the first decoded frame at or after t (less `time_tolerance(t)`,
which absorbs the float32 rounding of the stored times), as `ffmpeg -ss t -i video
-frames:v 1` shows. A video's thumbnails come from one open file: each wanted frame is
reached by seeking to the keyframe at or before it when that keyframe lies after the frames
decoded so far, else by decoding on (`FrameFinder`). Frames are rotated as the container's
display matrix says (as decode.py and ffmpeg's autorotate do) and resized to a fixed height,
aspect kept, with FFmpeg's bilinear filter.

Decoding runs in worker processes (video/workers.py's DecodePool, forkserver, a timeout on
silence), videos in batches so that process start-up does not dominate: a segfault or a
hang inside FFmpeg costs one video, never the job. A video that cannot be read gives no
thumbnails and a warning naming it, never an exception: the browser shows a placeholder in
their place.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from fractions import Fraction
from functools import partial
from itertools import chain
from multiprocessing.connection import Connection
from pathlib import Path

import av
import numpy as np
from PIL import Image

from supportset.progress import ProgressLog
from supportset.video.decode import DecodeError, display_size, quarter_turns
from supportset.video.workers import DecodePool

log = logging.getLogger(__name__)

TIME_TOLERANCE_S = 1e-3  # far below a frame's duration; FLOAT32_ULPS take over above 4,096 s
FLOAT32_ULPS = 2  # 4 times the float32 rounding of a stored time (half an ulp at most)
JPEG_QUALITY = 85
THUMBNAIL_WORKERS = 2  # decoding processes, the browse rule's production setting
DECODE_TIMEOUT_S = 120.0  # s a worker may stay silent on one video: features.decode_timeout
BATCHES_PER_WORKER = 4  # videos go to workers in this many batches each, to balance the end


@dataclass(frozen=True)
class Thumbnail:
    """One frame of a video, as displayed, scaled to the thumbnail height."""

    time: float  # the requested timestamp, s
    frame_time: float  # presentation time of the frame shown, s
    rgb: np.ndarray  # (height, width, 3) uint8


@dataclass(frozen=True)
class ThumbnailBatch:
    """What one worker process decodes: videos as (path, timestamps in s)."""

    videos: tuple[tuple[str, tuple[float, ...]], ...]

    def __str__(self) -> str:  # names the batch in the pool's error reasons
        return f"a batch of {len(self.videos)} videos"


def evenly_chosen(timestamps: Sequence[float], count: int) -> list[float]:
    """At most `count` of `timestamps` (s, ascending), spread evenly: the middle one of
    each of `count` equal runs, so that count = 1 gives the middle timestamp."""
    total = len(timestamps)
    if total <= count:
        return list(timestamps)
    picks = ((np.arange(count) + 0.5) * total / count).astype(int)
    return [timestamps[i] for i in picks]


def time_tolerance(time: float) -> float:
    """Seconds by which a frame may come before `time` (s) and still count as at or after
    it: TIME_TOLERANCE_S, or FLOAT32_ULPS float32 ulps of `time` where those are larger
    (above 4,096 s; a float32 time is a millisecond coarse above about 8,192 s)."""
    return max(TIME_TOLERANCE_S, FLOAT32_ULPS * float(np.spacing(np.float32(abs(time)))))


def thumbnail_size(frame: av.VideoFrame, height: int) -> tuple[int, int]:
    """(width, height) in px of the thumbnail of `frame` as displayed, `height` px high."""
    width, shown_height = display_size(frame)
    return max(1, round(width * height / shown_height)), height


def scaled_rgb(frame: av.VideoFrame, height: int) -> np.ndarray:
    """RGB uint8 (height, width, 3) of `frame` as displayed: resized by FFmpeg's bilinear
    swscale on the stored frame, then rotated by the display matrix's quarter turns."""
    width, height = thumbnail_size(frame, height)
    turns = quarter_turns(frame)
    stored = (height, width) if turns % 2 else (width, height)
    rgb = frame.to_ndarray(
        format="rgb24", width=stored[0], height=stored[1], interpolation="BILINEAR"
    )
    return np.ascontiguousarray(np.rot90(rgb, k=turns)) if turns else rgb


class FrameFinder:
    """The frames of the first video stream of an open file at ascending times: for each
    time t, the first frame at or after t less `time_tolerance(t)`, the frame a decode
    from the start finds.

    A seek goes to the keyframe at or before t (plus the tolerance) when that keyframe
    lies after the last decoded frame (a second demuxer, `probe`, is seeked alone to tell
    where a seek lands); otherwise decoding goes on from there. The first frame after a
    seek must be a keyframe at or before t plus the tolerance: if it is not (an open GOP,
    an AVI whose index has B-frames' decoding times), decoding restarts from the stream's
    start and the file is decoded on without seeking (at most twice the frames of a decode
    from the start), so the frame found never depends on a seek. Frames are assumed more
    than two tolerances apart (2 ms below 4,096 s: under 500 fps), as the tolerance is.
    """

    def __init__(
        self, container: av.container.InputContainer, probe: av.container.InputContainer, path: str
    ) -> None:
        self.path = path
        self.container, self.stream = container, container.streams.video[0]
        self.probe, self.probe_stream = probe, probe.streams.video[0]
        self.stream.thread_type = "SLICE"  # frame threads decode ahead, wasted at each seek
        self.start = self.stream.start_time or 0  # pts of the stream's time 0
        self.frames = self._decode()
        self.last: av.VideoFrame | None = None  # the frame decoded last, None after a seek
        self.decoded = 0  # frames decoded so far: what seeking saves
        self.seeking = True  # False once a seek has landed after its time

    def frame_at(self, time: float) -> av.VideoFrame | None:
        """The first frame at or after `time` (s, not before the previous call's) less its
        tolerance, or None when the stream ends before it."""
        tolerance = time_tolerance(time)
        first_pts = self.start + math.ceil(Fraction(time - tolerance) / self.stream.time_base)
        if self.last is not None and self.last.pts >= first_pts:
            return self.last
        latest_pts = self.start + math.floor(Fraction(time + tolerance) / self.stream.time_base)
        self._seek_when_ahead(latest_pts)
        for frame in self.frames:
            self.last = frame
            if frame.pts >= first_pts:
                return frame
        return None

    def time_of(self, frame: av.VideoFrame) -> float:
        """Presentation time of `frame`, s from the stream's start (as decode.py)."""
        return float((frame.pts - self.start) * self.stream.time_base)

    def _seek_when_ahead(self, latest_pts: int) -> None:
        """Seek to the keyframe at or before `latest_pts` when it lies after the last
        decoded frame; go back to the stream's start, for good, if the first frame there is
        not a keyframe at or before `latest_pts`."""
        if not self.seeking:
            return
        landing = self._landing(latest_pts)
        position = self.start if self.last is None else self.last.pts
        if landing is None or landing <= position:
            return
        self._seek(latest_pts)
        first = next(self.frames, None)
        if first is None or not first.key_frame or first.pts > latest_pts:
            self.seeking = False
            self._seek(self.start)
            return
        self.frames = chain([first], self.frames)

    def _landing(self, target: int) -> int | None:
        """pts (or dts) of the packet a seek to `target` (pts) lands on, from the probe."""
        try:
            self.probe.seek(target, stream=self.probe_stream, backward=True)
            for packet in self.probe.demux(self.probe_stream):
                stamp = packet.pts if packet.pts is not None else packet.dts
                if stamp is not None:
                    return stamp
        except av.FFmpegError:
            return None  # a file that cannot seek is decoded on from where it is
        return None

    def _seek(self, target: int) -> None:
        try:
            self.container.seek(target, stream=self.stream, backward=True)
        except av.FFmpegError as error:
            raise DecodeError(f"{self.path}: cannot seek: {error.strerror}") from error
        self.frames = self._decode()
        self.last = None

    def _decode(self) -> Iterator[av.VideoFrame]:
        try:
            for frame in self.container.decode(self.stream):
                if frame.pts is None:
                    raise DecodeError(f"{self.path}: a frame has no presentation timestamp")
                self.decoded += 1
                yield frame
        except av.FFmpegError as error:
            raise DecodeError(f"{self.path}: decoding failed: {error.strerror}") from error


def video_thumbnails(
    path: str | Path, timestamps: Sequence[float], height: int
) -> tuple[list[Thumbnail], str]:
    """Thumbnails `height` px high of the video at `path` at each of `timestamps` (s), in
    ascending time, decoded in this process, and a warning ("" when none). A video that
    cannot be decoded gives none; timestamps past its last frame give none either."""
    wanted = sorted({float(time) for time in timestamps})
    thumbnails: list[Thumbnail] = []
    if not wanted:
        return thumbnails, ""
    try:
        with ExitStack() as files:
            container = files.enter_context(_open_video(path))
            probe = files.enter_context(_open_video(path))
            finder = FrameFinder(container, probe, str(path))
            for time in wanted:
                frame = finder.frame_at(time)
                if frame is None:
                    break
                rgb = scaled_rgb(frame, height)
                thumbnails.append(Thumbnail(time, finder.time_of(frame), rgb))
    except DecodeError as error:
        return [], f"no thumbnails of {path}: {error}"
    if len(thumbnails) < len(wanted):
        missing = len(wanted) - len(thumbnails)
        return thumbnails, (
            f"{path}: {missing} of {len(wanted)} thumbnail times (from "
            f"{wanted[len(thumbnails)]:.3f} s) are after its last frame"
        )
    return thumbnails, ""


def _open_video(path: str | Path) -> av.container.InputContainer:
    """`path` opened by PyAV, with a video stream; DecodeError otherwise."""
    try:
        container = av.open(str(path))
    except av.FFmpegError as error:
        raise DecodeError(f"{path}: cannot open: {error.strerror}") from error
    if not container.streams.video:
        container.close()
        raise DecodeError(f"{path}: no video stream")
    return container


def thumbnails_to_pipe(batch: ThumbnailBatch, height: int, connection: Connection) -> None:
    """Worker body: ("chunk", (position, thumbnails, warning)) for each video of `batch` in
    order, then ("done",). A video failing otherwise than by DecodeError gets no
    thumbnails and the failure as its warning."""
    try:
        for position, (path, times) in enumerate(batch.videos):
            try:
                thumbnails, warning = video_thumbnails(path, times, height)
            except Exception as error:  # any failure of one video is that video's warning
                failure = f"{type(error).__name__}: {error}"
                thumbnails, warning = [], f"no thumbnails of {path}: {failure}"
            connection.send(("chunk", (position, thumbnails, warning)))
        connection.send(("done",))
    finally:
        connection.close()


def read_thumbnails(
    videos: Sequence[tuple[str | Path, Sequence[float]]],
    height: int,
    workers: int = THUMBNAIL_WORKERS,
    timeout_s: float = DECODE_TIMEOUT_S,
    target: Callable[[ThumbnailBatch, int, Connection], None] = thumbnails_to_pipe,
) -> list[list[Thumbnail]]:
    """For each (path, timestamps in s) of `videos`, its thumbnails `height` px high in
    ascending time (`video_thumbnails`), decoded by `workers` processes running `target`
    on batches of videos. A video whose worker dies, or stays silent for `timeout_s` s,
    gets none (the batch's later videos are decoded again); every video without all its
    thumbnails gets a logged warning naming it."""
    requests = [(str(path), tuple(float(t) for t in times)) for path, times in videos]
    read: list[list[Thumbnail]] = [[] for _ in requests]
    progress = ProgressLog(len(requests), "thumbnails", log)
    pool_of = partial(DecodePool, spec=height, workers=workers, timeout_s=timeout_s, target=target)
    pending = list(range(len(requests)))
    while pending:
        pending = _read_batches(requests, batched(pending, workers), pool_of, read, progress)
    return read


def batched(indices: list[int], workers: int) -> list[list[int]]:
    """`indices` cut into BATCHES_PER_WORKER runs per worker (the last one shorter), so
    that a process starts per batch, not per video, and the work ends balanced."""
    size = math.ceil(len(indices) / (max(1, workers) * BATCHES_PER_WORKER))
    return [indices[first : first + size] for first in range(0, len(indices), size)]


def _read_batches(
    requests: list[tuple[str, tuple[float, ...]]],
    members: list[list[int]],
    pool_of: Callable[[list[ThumbnailBatch]], DecodePool],
    read: list[list[Thumbnail]],
    progress: ProgressLog,
) -> list[int]:
    """Decode the batches of requests `members` (indices) into `read`; returns the
    requests a failed worker left after the video it failed on (the first one it had not
    reported, which gets no thumbnails), to be decoded again."""
    batches = [ThumbnailBatch(tuple(requests[index] for index in batch)) for batch in members]
    unreported = [list(batch) for batch in members]
    again: list[int] = []
    for event in pool_of(batches).events():
        left = unreported[event.index]
        if event.kind == "chunk":
            position, thumbnails, warning = event.chunk
            index = members[event.index][position]
            read[index] = thumbnails
            left.remove(index)
            if warning:
                log.warning("%s", warning)
            progress.advance()
        elif event.kind == "error" and left:
            failed = left.pop(0)
            log.warning("no thumbnails of %s: its worker failed: %s", requests[failed][0],
                        event.reason)  # fmt: skip
            again.extend(left)
            progress.advance()
    return sorted(again)


def jpeg_bytes(rgb: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """The JPEG file of an RGB uint8 (H, W, 3) image."""
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()
