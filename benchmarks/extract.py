"""Benchmarks of the video stage (issue: video stage at production grade).

Each figure is a ratio or a peak measured within one run on this machine:

  a. decode: 1-fps sampling throughput (seconds of video per second) of our decoder against
     `ffmpeg -vf fps=1,scale=...` piped as rawvideo, on the same files;
  b. pipeline: end-to-end extraction rate (samples/s) over the pure-CNN rate on the same
     batch shapes (decoding hidden behind compute when close to 1);
  c. memory: peak RSS of the whole extraction process tree for a 10- and a 30-minute video;
  d. cnn: achieved FLOP/s of ResNet-152 against a float32 matmul in the same run.

    python benchmarks/extract.py --work /tmp/extract-bench [--parts a b c d]

Videos are generated with ffmpeg's test sources (needs the ffmpeg command). The networks
have random weights: speed does not depend on the weights' values.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
from machine import cpu_model, peak_memory_mb

from supportset.data.manifest import write_manifest
from supportset.video.decode import sample_frames, to_rgb

# torch and the feature modules are imported inside the functions: decode workers import
# the main module again (multiprocessing's forkserver does), and should stay light.
PRODUCTION = {
    "batch_size": 8,
    "dtype": "float32",  # random-weight ResNet-152 activations overflow float16
    "appearance": {"arch": "resnet152", "weights": "random"},
    "motion": {"arch": "r2plus1d_34", "weights": "random", "clip_len": 8},
}
SMALL = {
    "batch_size": 32,
    "appearance": {"arch": "resnet18", "weights": "random", "resize": 112, "size": 112},
    "motion": {"arch": "r2plus1d_10", "weights": "random", "clip_len": 4, "resize": 64, "size": 64},
}


def visual_settings(values: dict):
    """VisualSettings from one of the presets above."""
    from supportset.features.visual import VisualSettings
    from supportset.settings import from_mapping

    return from_mapping(VisualSettings, values)


def make_video(path: Path, size: str, rate: int, seconds: int, bitrate: str) -> Path:
    """H.264 test-pattern video (moving testsrc2 with light noise) at a web-like bitrate."""
    if not path.exists():
        subprocess.run(
            ["ffmpeg", "-v", "error", "-f", "lavfi", "-i",
             f"testsrc2=size={size}:rate={rate},noise=alls=6:allf=t",
             "-t", str(seconds), "-c:v", "libx264", "-preset", "veryfast", "-b:v", bitrate,
             "-maxrate", bitrate, "-bufsize", bitrate, "-pix_fmt", "yuv420p", str(path)],
            check=True,
        )  # fmt: skip
    return path


def decode_ours(path: Path) -> tuple[int, float]:
    """(samples, seconds): our 1-fps sampler with the ResNet preprocessing (256 -> 224)."""
    started = time.perf_counter()
    count = 0
    for decoded in sample_frames(path, 1.0):
        to_rgb(decoded.frame, 256, 224)
        count += 1
    return count, time.perf_counter() - started


def decode_ffmpeg(path: Path, width: int, height: int) -> tuple[int, float]:
    """(frames, seconds): ffmpeg's fps filter and scaler to the same size, rawvideo RGB out."""
    started = time.perf_counter()
    output = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-vf", f"fps=1,scale={width}:{height}",
         "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    return len(output) // (width * height * 3), time.perf_counter() - started


def bench_decode(work: Path) -> dict:
    files = {
        "720p30, 3 min, 2.5 Mb/s": make_video(work / "720p.mp4", "1280x720", 30, 180, "2500k"),
        "1080p25, 1 min, 5 Mb/s": make_video(work / "1080p.mp4", "1920x1080", 25, 60, "5000k"),
        "240p30, 5 min, 0.5 Mb/s": make_video(work / "240p.mp4", "320x240", 30, 300, "500k"),
    }
    rows = {}
    for name, path in files.items():
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            scale = 256 / min(stream.width, stream.height)
            width, height = round(stream.width * scale), round(stream.height * scale)
        ours_count, ours_s = decode_ours(path)
        ffmpeg_count, ffmpeg_s = decode_ffmpeg(path, width, height)
        rows[name] = {
            "samples_ours": ours_count,
            "samples_ffmpeg": ffmpeg_count,
            "ours_s": round(ours_s, 2),
            "ffmpeg_s": round(ffmpeg_s, 2),
            "speed_ratio_ours_over_ffmpeg": round(ffmpeg_s / ours_s, 2),
        }
    return rows


def bench_pipeline(work: Path, workers: int) -> dict:
    """Samples/s end to end (decode workers + CNNs + writing) over samples/s of the CNNs
    alone on the same batch shapes. Building the networks is a per-job cost, timed apart."""
    videos = [
        {
            "video_id": f"v{i}",
            "path": str(make_video(work / f"clip{i}.mp4", "640x360", 30, seconds, "1000k")),
            "split": "test",
        }
        for i, seconds in enumerate((13, 14, 14, 15))
    ]  # fmt: skip
    import torch

    from supportset.features.store import ShardWriter, visual_schema
    from supportset.features.visual import VisualExtractor, extract_videos

    settings = visual_settings(PRODUCTION)
    started = time.perf_counter()
    extractor = VisualExtractor(settings, torch.device("cpu"))
    build_s = time.perf_counter() - started
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (settings.batch_size, 224, 224, 3), np.uint8)
    clips = rng.integers(0, 256, (settings.batch_size, 8, 112, 112, 3), np.uint8)
    extractor(frames, clips)  # warm-up
    repeats = 3
    started = time.perf_counter()
    for _ in range(repeats):
        extractor(frames, clips)
    cnn_rate = repeats * settings.batch_size / (time.perf_counter() - started)
    started = time.perf_counter()
    schema = visual_schema(extractor.dim, settings.dtype)
    with ShardWriter(work / "pipeline.parquet", schema, {}) as writer:
        assembly = extract_videos(videos, extractor, writer, workers)
    elapsed = time.perf_counter() - started
    samples = sum(
        len(times) for times in pq.read_table(work / "pipeline.parquet")["timestamps"].to_pylist()
    )
    return {
        "videos": assembly.written,
        "samples": samples,
        "batch_size": settings.batch_size,
        "network_build_s": round(build_s, 1),
        "cnn_samples_per_s": round(cnn_rate, 3),
        "end_to_end_samples_per_s": round(samples / elapsed, 3),
        "efficiency": round(samples / elapsed / cnn_rate, 3),
    }


def peak_rss_of_extraction(video: Path, work: Path, workers: int) -> tuple[float, float]:
    """(peak MB of the process tree, seconds) for `supportset extract-visual` on one video."""
    write_manifest([{"video_id": video.stem, "path": str(video), "split": "test"}], [], work)
    settings = json.dumps({**SMALL, "shards": 1})
    command = [sys.executable, "-m", "supportset.cli", "--threads", "2", "extract-visual",
               "--manifest", str(work / "videos.parquet"), "--shard", "0", "--settings",
               settings, "--out", str(work / "s.parquet"), "--rejects", str(work / "r.parquet"),
               "--workers", str(workers)]  # fmt: skip
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = peak_memory_mb(process, "rss", 0.2)
    return peak, time.perf_counter() - started


def bench_memory(work: Path, workers: int) -> dict:
    rows = {}
    for minutes in (10, 30):
        video = make_video(work / f"long{minutes}.mp4", "320x240", 30, 60 * minutes, "300k")
        folder = work / f"memory{minutes}"
        folder.mkdir(exist_ok=True)
        peak, seconds = peak_rss_of_extraction(video, folder, workers)
        rows[f"{minutes} min"] = {"peak_rss_mb": round(peak), "seconds": round(seconds, 1)}
    return rows


def bench_cnn(batch: int = 8) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from supportset.features.visual import VisualExtractor

    extractor = VisualExtractor(visual_settings(PRODUCTION), torch.device("cpu"))
    network = extractor.appearance
    images = torch.randn(batch, 3, 224, 224).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        counter = FlopCounterMode(display=False)
        with counter:
            network(images)
        flops = counter.get_total_flops()
        network(images)
        started = time.perf_counter()
        repeats = 3
        for _ in range(repeats):
            network(images)
        resnet_flops_per_s = repeats * flops / (time.perf_counter() - started)
        size = 2048
        a, b = torch.randn(size, size), torch.randn(size, size)
        torch.mm(a, b)
        started = time.perf_counter()
        for _ in range(5):
            torch.mm(a, b)
        matmul_flops_per_s = 5 * 2 * size**3 / (time.perf_counter() - started)
    return {
        "resnet152_gflop_per_image": round(flops / batch / 1e9, 2),
        "resnet152_gflop_per_s": round(resnet_flops_per_s / 1e9, 1),
        "matmul_gflop_per_s": round(matmul_flops_per_s / 1e9, 1),
        "fraction_of_matmul": round(resnet_flops_per_s / matmul_flops_per_s, 3),
    }


def machine_line() -> str:
    import torch

    cpu = cpu_model()
    ffmpeg = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout
    return (
        f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), ffmpeg {ffmpeg.split()[2]}, PyAV {av.__version__}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/supportset-extract-bench"))
    parser.add_argument("--parts", nargs="+", default=["a", "b", "c", "d"])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    results = {"machine": machine_line()}
    parts = {
        "a": ("decode", lambda: bench_decode(args.work)),
        "b": ("pipeline", lambda: bench_pipeline(args.work, args.workers)),
        "c": ("memory", lambda: bench_memory(args.work, args.workers)),
        "d": ("cnn", bench_cnn),
    }
    for part in args.parts:
        name, run = parts[part]
        results[name] = run()
        print(json.dumps({name: results[name]}), flush=True)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
