import shutil
import subprocess

import numpy as np
import pytest

from supportset.video.decode import describe_samples, flag_samples, sample_frames, to_rgb
from supportset.video.sampling import SamplingSpec, stream_samples
from tests.video_files import write_half_red, write_video

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")


def ffmpeg_sample_count(path) -> int:
    """Frames that `ffmpeg -vf fps=1` outputs for `path` (as 4x4 grey images)."""
    output = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-vf", "fps=1", "-pix_fmt", "gray",
         "-s", "4x4", "-f", "rawvideo", "-"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    return len(output) // 16


def naive_samples(path, spec):
    """All frames in memory, clips by index arithmetic: the reference for streaming."""
    frames, positions, times, appearance = [], [], [], []
    for index, (decoded, chosen) in enumerate(flag_samples(path, spec.fps)):
        frames.append(to_rgb(decoded.frame, spec.motion_resize, spec.motion_size))
        if chosen:
            positions.append(index)
            times.append(decoded.time)
            appearance.append(to_rgb(decoded.frame, spec.appearance_resize, spec.appearance_size))
    offsets = np.arange(spec.clip_len) - spec.clip_len // 2
    indices = np.clip(np.array(positions)[:, None] + offsets, 0, len(frames) - 1)
    return np.array(times), np.stack(appearance), np.stack(frames)[indices]


@pytest.mark.parametrize("clip_len", [1, 2, 5, 16])
def test_streaming_equals_all_frames_in_memory(tmp_path, clip_len):
    path = write_video(tmp_path / "v.mp4", [i / 12 for i in range(70)])
    spec = SamplingSpec(1.0, 40, 32, 24, 16, clip_len, chunk_samples=2)
    chunks = list(stream_samples(path, spec))
    assert all(len(chunk.timestamps) <= 2 for chunk in chunks)
    times, appearance, clips = naive_samples(path, spec)
    np.testing.assert_allclose(np.concatenate([c.timestamps for c in chunks]), times)
    np.testing.assert_array_equal(np.concatenate([c.appearance for c in chunks]), appearance)
    np.testing.assert_array_equal(np.concatenate([c.motion for c in chunks]), clips)


def test_clip_is_centred_on_the_sample_frame(tmp_path):
    path = write_video(tmp_path / "v.mp4", [i / 10 for i in range(30)], size=(32, 32))
    spec = SamplingSpec(1.0, 32, 32, 32, 32, clip_len=4, chunk_samples=8)
    (chunk,) = stream_samples(path, spec)
    grey = chunk.motion[:, :, 16, 16, 0].astype(int)  # frame i has grey level 8 * i
    expected_frames = [[0, 0, 0, 1], [8, 9, 10, 11], [18, 19, 20, 21]]
    np.testing.assert_allclose(grey, 8 * np.array(expected_frames), atol=3)


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_display_rotation_is_applied_like_ffmpeg(tmp_path, rotation):
    path = write_half_red(tmp_path / "r.mp4", rotation)
    first = next(sample_frames(path, 1.0))
    rgb = to_rgb(first.frame, 32, 32)
    red = rgb[..., 0] > 128
    where = {90: red[-8:].all(), -90: red[:8].all(), 180: red[:, -8:].all()}
    assert where[rotation]
    sizes = describe_samples(path, 1.0)["samples"][0]
    assert (sizes["width"], sizes["height"]) == ((64, 32) if rotation == 180 else (32, 64))


@needs_ffmpeg
@pytest.mark.parametrize("frames_per_second", [24, 25, 30000 / 1001, 30])
def test_sample_count_matches_ffmpeg_fps_filter(tmp_path, frames_per_second):
    count = round(7.4 * frames_per_second)
    path = write_video(tmp_path / "v.mp4", [i / frames_per_second for i in range(count)])
    assert abs(len(list(sample_frames(path, 1.0))) - ffmpeg_sample_count(path)) <= 1


@needs_ffmpeg
def test_sample_count_matches_ffmpeg_on_variable_frame_rate(tmp_path):
    rng = np.random.default_rng(0)
    times = np.cumsum(rng.uniform(0.01, 0.2, size=120))
    path = write_video(tmp_path / "vfr.mp4", times.tolist())
    assert abs(len(list(sample_frames(path, 1.0))) - ffmpeg_sample_count(path)) <= 1
