import json
import os
import subprocess
import sys
from fractions import Fraction

import av
import numpy as np
import pytest

from supportset.cli import main
from supportset.video.decode import DecodeError, describe_samples, sample_frames, to_rgb


def write_video(path, times, size=(64, 48), rate=25):
    """An H.264 video whose frame i is shown at times[i] seconds (variable frame rate)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, 1000)
        stream.codec_context.time_base = Fraction(1, 1000)
        for index, time in enumerate(times):
            image = np.full((size[1], size[0], 3), index % 256, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = round(time * 1000)
            frame.time_base = Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_constant_rate_gives_one_sample_per_second(tmp_path):
    path = tmp_path / "cfr.mp4"
    write_video(path, [i / 25 for i in range(25 * 5)])
    times = [decoded.time for decoded in sample_frames(path, 1.0)]
    assert times == pytest.approx([0, 1, 2, 3, 4])


def test_variable_rate_reports_the_chosen_frames_own_times(tmp_path):
    path = tmp_path / "vfr.mp4"
    frame_times = [0.0, 0.4, 0.9, 1.3, 2.6, 2.7, 3.05, 3.5]
    write_video(path, frame_times)
    times = [decoded.time for decoded in sample_frames(path, 1.0)]
    # second 0 -> 0.0; second 1 -> first frame at/after 1 s (1.3); second 2 -> 2.6;
    # second 3 -> 3.05 (2.7 is before 3 s).
    assert times == pytest.approx([0.0, 1.3, 2.6, 3.05])


def test_two_samples_per_second(tmp_path):
    path = tmp_path / "cfr.mp4"
    write_video(path, [i / 10 for i in range(30)])
    times = [decoded.time for decoded in sample_frames(path, 2.0)]
    assert times == pytest.approx([0, 0.5, 1.0, 1.5, 2.0, 2.5])


def test_to_rgb_resizes_short_side_and_centre_crops(tmp_path):
    path = tmp_path / "wide.mp4"
    write_video(path, [0.0, 0.04], size=(96, 48))
    frame = next(sample_frames(path, 1.0)).frame
    assert to_rgb(frame, 32, 32).shape == (32, 32, 3)
    assert to_rgb(frame, 40, 24).shape == (24, 24, 3)


def test_unreadable_files_raise_decode_error(tmp_path):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"not a video at all" * 100)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    for path in (garbage, empty, tmp_path / "missing.mp4"):
        with pytest.raises(DecodeError, match=path.name):
            describe_samples(path, 1.0)


def test_frames_command_prints_json(tmp_path, capsys):
    path = tmp_path / "cfr.mp4"
    write_video(path, [i / 25 for i in range(60)], size=(64, 48))
    assert main(["frames", str(path), "--fps", "1", "--json"]) == 0
    described = json.loads(capsys.readouterr().out)
    assert [s["timestamp"] for s in described["samples"]] == pytest.approx([0, 1, 2])
    assert described["samples"][0]["width"] == 64 and described["samples"][0]["height"] == 48


def test_frames_command_fails_with_one_line(tmp_path, capsys):
    path = tmp_path / "bad.mp4"
    path.write_bytes(b"\x00" * 1000)
    assert main(["frames", str(path), "--json"]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "bad.mp4" in error


def test_frames_command_stops_quietly_when_the_reader_leaves(tmp_path):
    """`supportset frames x.mp4 | head`: a closed pipe is no error and prints nothing."""
    path = tmp_path / "cfr.mp4"
    write_video(path, [i / 25 for i in range(60)], size=(64, 48))
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader has gone before the first line is written
    command = [sys.executable, "-m", "supportset.cli", "frames", str(path)]
    result = subprocess.run(command, stdout=write_end, stderr=subprocess.PIPE, text=True)
    os.close(write_end)
    assert (result.returncode, result.stderr) == (0, "")
