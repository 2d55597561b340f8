"""Thumbnails against an independent reference: the frame ffmpeg shows at the same time."""

from __future__ import annotations

import io
import json
import logging
import math
import os
import shutil
import signal
import subprocess
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from supportset.video.decode import describe_samples, iter_frames
from supportset.video.thumbnails import (
    TIME_TOLERANCE_S,
    FrameFinder,
    batched,
    evenly_chosen,
    jpeg_bytes,
    read_thumbnails,
    time_tolerance,
    video_thumbnails,
)
from tests.video_files import write_half_red, write_video

FFMPEG = shutil.which("ffmpeg")
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="ffmpeg is not installed")
HEIGHT = 64


def ffmpeg_frame(path: Path, time: float, width: int, height: int) -> np.ndarray:
    """RGB (height, width, 3) of `ffmpeg -ss time -i path -frames:v 1`, autorotated and
    scaled bilinearly to width x height; `time` is floored to ffmpeg's microseconds, so
    that the frame at `time` is the first one at or after it."""
    seek = f"{math.floor(time * 1e6) / 1e6:.6f}"
    command = [FFMPEG, "-v", "error", "-ss", seek, "-i", str(path), "-frames:v", "1",
               "-vf", f"scale={width}:{height}:flags=bilinear", "-f", "rawvideo",
               "-pix_fmt", "rgb24", "-"]  # fmt: skip
    raw = subprocess.run(command, capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(height, width, 3)


def sampled_times(path: Path) -> list[float]:
    """The timestamps a visual shard stores for `path` (1 fps samples), as float32 values."""
    samples = describe_samples(path, 1.0)["samples"]
    return [float(np.float32(sample["timestamp"])) for sample in samples]


def mean_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(int) - b.astype(int)).mean())


@pytest.fixture(scope="module")
def turning_video(corpus: Path) -> Path:
    """A demo video whose shape changes colour halfway: its frames differ over time."""
    annotations = json.loads((corpus / "annotations.json").read_text())
    video = next(v for v in annotations["videos"] if v["meaning"].startswith("turns|"))
    return corpus / video["file"]


@needs_ffmpeg
def test_thumbnails_show_the_frames_ffmpeg_shows_at_the_sampled_times(turning_video):
    times = sampled_times(turning_video)
    (thumbnails,) = read_thumbnails([(turning_video, times)], HEIGHT)  # 2 worker processes
    assert [thumb.time for thumb in thumbnails] == times
    first = None
    for thumb in thumbnails:
        height, width, _ = thumb.rgb.shape
        assert height == HEIGHT
        reference = ffmpeg_frame(turning_video, thumb.time, width, height)
        assert mean_difference(thumb.rgb, reference) < 1.0
        first = reference if first is None else first
    # the comparison tells frames apart: the last sample shows the other colour
    assert mean_difference(thumbnails[-1].rgb, first) > 5.0


@needs_ffmpeg
def test_thumbnails_follow_the_display_rotation_as_ffmpeg_does(tmp_path):
    video = write_half_red(tmp_path / "rotated.mp4", 90)  # stored 64x32, shown 32x64
    ((thumb,),) = read_thumbnails([(video, [0.5])], HEIGHT)
    assert thumb.rgb.shape == (HEIGHT, 32, 3)
    reference = ffmpeg_frame(video, 0.5, 32, HEIGHT)
    assert mean_difference(thumb.rgb, reference) < 2.0
    # the red half is on top or at the bottom, not on a side: a rotation took place
    rows_red = thumb.rgb[:, :, 0].mean(axis=1)
    assert abs(rows_red[: HEIGHT // 2].mean() - rows_red[HEIGHT // 2 :].mean()) > 100


def test_a_time_between_frames_shows_the_next_frame_and_one_decode_serves_all(tmp_path):
    video = write_video(tmp_path / "steps.mp4", [0.0, 0.5, 1.0, 1.5])  # grey 0, 8, 16, 24
    (thumbnails,) = read_thumbnails([(video, [1.2, 0.0, 1.2, 0.4999])], 16)
    assert [thumb.time for thumb in thumbnails] == [0.0, 0.4999, 1.2]
    assert [thumb.frame_time for thumb in thumbnails] == [0.0, 0.5, 1.5]
    greys = [round(float(thumb.rgb.mean())) for thumb in thumbnails]
    assert greys == [0, 8, 24]


def test_an_unreadable_video_gives_no_thumbnails_and_a_warning(tmp_path, caplog):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all" * 100)
    good = write_video(tmp_path / "good.mp4", [0.0, 0.5])
    wanted = [(broken, [0.0, 1.0]), (tmp_path / "missing.mp4", [0.0]), (good, [0.0])]
    with caplog.at_level(logging.WARNING):
        read = read_thumbnails(wanted, HEIGHT)
    assert [len(thumbnails) for thumbnails in read] == [0, 0, 1]
    assert "broken.mp4" in caplog.text
    assert "missing.mp4" in caplog.text
    assert "good.mp4" not in caplog.text


def test_times_after_the_last_frame_are_left_out_with_a_warning(tmp_path, caplog):
    video = write_video(tmp_path / "short.mp4", [0.0, 0.5])
    with caplog.at_level(logging.WARNING):
        (thumbnails,) = read_thumbnails([(video, [0.0, 3.0])], 16)
    assert [thumb.time for thumb in thumbnails] == [0.0]
    assert "short.mp4" in caplog.text and "after its last frame" in caplog.text


def test_evenly_chosen_takes_the_middle_of_equal_runs():
    times = [float(t) for t in range(9)]
    assert evenly_chosen(times, 3) == [1.0, 4.0, 7.0]
    assert evenly_chosen(times, 1) == [4.0]
    assert evenly_chosen(times[:3], 8) == times[:3]


def test_jpeg_bytes_round_trip_close_to_the_pixels(turning_video):
    ((thumb,),) = read_thumbnails([(turning_video, [0.0])], HEIGHT)
    decoded = np.asarray(Image.open(io.BytesIO(jpeg_bytes(thumb.rgb))))
    assert decoded.shape == thumb.rgb.shape
    assert mean_difference(decoded, thumb.rgb) < 3.0


def write_keyframed(path: Path, codec: str, frames: int = 60) -> Path:
    """`frames` frames at 25 fps, a keyframe at least every 10, two B-frames between
    references; frame i is grey 4 i with a white column at x = i, so all differ."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=25, options={"g": "10", "bf": "2"})
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(frames):
            image = np.full((48, 64, 3), 4 * index % 256, np.uint8)
            image[:, index % 64] = 255
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def found_frames(
    path: Path, times: list[float]
) -> tuple[list[tuple[float, np.ndarray]], FrameFinder]:
    """(time, RGB) of the frame FrameFinder finds at each of `times`, and the finder."""
    with av.open(str(path)) as container, av.open(str(path)) as probe:
        finder = FrameFinder(container, probe, str(path))
        frames = [finder.frame_at(time) for time in times]
        return [(finder.time_of(f), f.to_ndarray(format="rgb24")) for f in frames], finder


@pytest.mark.parametrize(("name", "codec", "seeks"), [("gops.mp4", "libx264", True),
                                                      ("gops.avi", "mpeg4", False)])  # fmt: skip
def test_seeking_finds_the_frames_a_decode_from_the_start_finds(tmp_path, name, codec, seeks):
    video = write_keyframed(tmp_path / name, codec)
    linear = [
        (decoded.time, decoded.frame.to_ndarray(format="rgb24")) for decoded in iter_frames(video)
    ]
    keyframes = [d.time for d in iter_frames(video) if d.frame.key_frame]
    assert len(keyframes) >= 6
    times = [t for t, _ in linear]
    wanted = sorted({*times[2::7], *keyframes[2:4], times[-1], *(t + 0.01 for t in times[::9])})
    found, finder = found_frames(video, wanted)
    for time, (frame_time, rgb) in zip(wanted, found, strict=True):
        first = next(i for i, t in enumerate(times) if t >= time - TIME_TOLERANCE_S)
        assert frame_time == times[first]
        assert np.array_equal(rgb, linear[first][1])
    # the MP4 is seeked through; the AVI's index holds B-frames' decoding times, so a seek
    # lands after its time: that file is decoded from the start again, and on
    assert finder.seeking is seeks


def test_a_late_frame_costs_a_gop_not_the_frames_before_it(tmp_path):
    video = write_keyframed(tmp_path / "gops.mp4", "libx264", frames=60)
    last = [decoded.time for decoded in iter_frames(video)][-1]
    _, finder = found_frames(video, [last])
    assert finder.decoded <= 12  # at most a GOP (10) and the frames a B-frame holds back


def test_float32_times_of_long_videos_still_show_their_frame(tmp_path):
    video = write_video(tmp_path / "long.mp4", [0.0, 100000.004, 100000.5])
    stored = float(np.float32(100000.004))  # a visual shard's float32 timestamp
    assert stored - 100000.004 > TIME_TOLERANCE_S  # a fixed 1 ms would skip the frame
    (thumb,), warning = video_thumbnails(video, [stored], 16)
    assert thumb.frame_time == pytest.approx(100000.004) and warning == ""
    assert time_tolerance(1.0) == TIME_TOLERANCE_S
    assert time_tolerance(1e5) == 2 * float(np.spacing(np.float32(1e5)))  # 15.6 ms
    assert time_tolerance(1e5) < 1 / 60  # still below a frame at 60 fps


def segfault_on_crash_mp4(batch, height, connection):
    """thumbnails_to_pipe, except that the worker dies as a segfault in FFmpeg would kill
    it when it reaches a video named crash.mp4."""
    for position, (path, times) in enumerate(batch.videos):
        if Path(path).name == "crash.mp4":
            os.kill(os.getpid(), signal.SIGSEGV)
        connection.send(("chunk", (position, *video_thumbnails(path, times, height))))
    connection.send(("done",))


def sixteen_videos(tmp_path: Path, odd: Path) -> list[tuple[Path, list[float]]]:
    """16 requests (batches of 2 for 2 workers), the 5th of them for `odd`, the first of
    its batch: the 6th is decoded only if the worker's failure leaves it to another."""
    good = write_video(tmp_path / "good.mp4", [0.0, 0.5])
    return [(odd if index == 4 else good, [0.5]) for index in range(16)]


def test_a_crashing_worker_costs_only_the_video_it_crashed_on(tmp_path, caplog):
    crash = tmp_path / "crash.mp4"
    crash.write_bytes(write_video(tmp_path / "copy.mp4", [0.0, 0.5]).read_bytes())
    with caplog.at_level(logging.WARNING):
        read = read_thumbnails(sixteen_videos(tmp_path, crash), 16, target=segfault_on_crash_mp4)
    assert [len(thumbnails) for thumbnails in read] == [1] * 4 + [0] + [1] * 11
    assert "crash.mp4" in caplog.text and "signal 11" in caplog.text
    assert "good.mp4" not in caplog.text


def test_a_hanging_video_is_killed_after_the_timeout_and_costs_only_itself(tmp_path, caplog):
    fifo = tmp_path / "never_written.mp4"
    os.mkfifo(fifo)  # opening it blocks forever inside FFmpeg's open()
    with caplog.at_level(logging.WARNING):
        read = read_thumbnails(sixteen_videos(tmp_path, fifo), 16, timeout_s=1.5)
    assert [len(thumbnails) for thumbnails in read] == [1] * 4 + [0] + [1] * 11
    assert "never_written.mp4" in caplog.text and "timeout" in caplog.text


def test_videos_go_to_workers_in_a_few_batches_each():
    assert batched(list(range(48)), 2) == [
        list(range(start, start + 6)) for start in range(0, 48, 6)
    ]
    assert batched(list(range(1000)), 2)[0] == list(range(125))
    assert batched([7, 3, 5], 2) == [[7], [3], [5]]
