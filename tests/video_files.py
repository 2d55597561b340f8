"""Small video files for tests, written with PyAV (no fixtures on disk)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def write_video(
    path: Path,
    times: list[float],
    size: tuple[int, int] = (64, 48),
    rotation: int = 0,
    faststart: bool = False,
    codec: str = "libx264",
) -> Path:
    """A video whose frame i is shown at times[i] seconds and has grey level 8 * i % 256;
    `rotation` (degrees) goes into the display matrix."""
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, 1000)
        stream.codec_context.time_base = Fraction(1, 1000)
        if rotation:
            stream.set_display_rotation(rotation)
        for index, time in enumerate(times):
            image = np.full((size[1], size[0], 3), (8 * index) % 256, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = round(time * 1000)
            frame.time_base = Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def write_half_red(path: Path, rotation: int) -> Path:
    """20 frames at 10 fps, 64x32, left half red and right half black, rotated on display."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height = 64, 32
        stream.pix_fmt = "yuv420p"
        stream.set_display_rotation(rotation)
        image = np.zeros((32, 64, 3), np.uint8)
        image[:, :32] = (255, 0, 0)
        for index in range(20):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def write_audio_only(path: Path) -> Path:
    """One second of silence in an AAC/M4A file: a container without a video stream."""
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=16000)
        samples = np.zeros((1, 1024), dtype=np.float32)
        for index in range(16):
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate = 16000
            frame.pts = index * 1024
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def write_garbage_packets(source: Path, path: Path) -> Path:
    """Copy `source` (MP4) with every byte of its media data replaced by noise: the
    container and stream are valid, no frame decodes."""
    data = bytearray(source.read_bytes())
    start = data.find(b"mdat") + 4
    noise = np.random.default_rng(0).integers(0, 256, len(data) - start, dtype=np.uint8)
    end = data.find(b"moov", start)
    end = end - 4 if end > 0 else len(data)
    data[start:end] = noise[: end - start].tobytes()
    path.write_bytes(bytes(data))
    return path
