"""What feature crops (`features.crops`) cost: extraction time and storage, K crops vs none.

In one run, the same demo-corpus videos are extracted with `features.crops` 0 and K
(default 8), in turn, `--repeats` times each; a figure is the best time per video of a
setting, and the ratio K / 0 compares them. The networks alone are timed too, on one
fixed batch with and without K windows per sample (the crop pooling is all the extra
compute). Storage: the arithmetic bytes per video-second at the paper's float16 2560-d
features, (K + 1) x 2560 x 2 against 2560 x 2, and the measured shard bytes per
video-second of both runs (the preset's widths and dtype, Parquet with its compression).

    python benchmarks/crops.py [--videos 6] [--crops 8] [--preset small|production]
                               [--work /tmp/crops-bench]

Networks have random weights (speed does not depend on their values); `production` is
ResNet-152 + R(2+1)D-34 on 8-frame clips (slow on a laptop CPU), `small` ResNet-18 +
R(2+1)D-10 on small inputs, where the pooling weighs relatively more.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from extract import PRODUCTION, SMALL, visual_settings
from machine import cpu_model

PAPER_DIM, FLOAT16_BYTES = 2560, 2


def demo_manifest(work: Path, videos: int) -> Path:
    """videos.parquet of a generated demo corpus of `videos` videos of 3-12 s."""
    from supportset.data.demo import make_demo_corpus
    from supportset.data.prepare import prepare

    manifest = work / "manifest"
    if not (manifest / "videos.parquet").exists():
        make_demo_corpus(work / "corpus", num_videos=videos, seed=0)
        prepare("demo", work / "corpus", manifest)
    return manifest / "videos.parquet"


def extract_seconds(manifest: Path, settings, out: Path, workers: int) -> tuple[float, int]:
    """(seconds, videos written) of one whole extraction (networks built included)."""
    from supportset.features.visual import extract_shard

    started = time.perf_counter()
    written, _ = extract_shard(manifest, 0, settings, out, out.with_suffix(".rejects"), workers)
    return time.perf_counter() - started, written


def network_seconds(settings, crops: int, repeats: int) -> dict[int, float]:
    """Best seconds of the networks on one batch, without (0) and with `crops` windows."""
    import torch

    from supportset.features.visual import VisualExtractor, crop_windows

    extractor = VisualExtractor(settings, torch.device("cpu"))
    rng = np.random.default_rng(0)
    size, motion = settings.appearance.size, settings.motion
    frames = rng.integers(0, 256, (settings.batch_size, size, size, 3), np.uint8)
    clip_shape = (settings.batch_size, motion.clip_len, motion.size, motion.size, 3)
    clips = rng.integers(0, 256, clip_shape, np.uint8)
    windows = np.stack([crop_windows("v", step, crops, 0.5, 0) for step in range(len(frames))])
    extractor(frames, clips, windows)  # warm-up
    best = {0: float("inf"), crops: float("inf")}
    for _ in range(repeats):
        for count, given in ((0, None), (crops, windows)):
            started = time.perf_counter()
            extractor(frames, clips, given)
            best[count] = min(best[count], time.perf_counter() - started)
    return best


def steps(shard: Path) -> int:
    """Feature steps in a shard: seconds of video at the default 1 fps."""
    return sum(len(times) for times in pq.read_table(shard, columns=["timestamps"])[0].to_pylist())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=6)
    parser.add_argument("--crops", type=int, default=8)
    parser.add_argument("--preset", choices=("small", "production"), default="small")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--work", type=Path, default=Path("/tmp/crops-bench"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    manifest = demo_manifest(args.work, args.videos)
    preset = {**(SMALL if args.preset == "small" else PRODUCTION), "shards": 1}
    base = visual_settings(preset)
    settings = {0: base, args.crops: dataclasses.replace(base, crops=args.crops)}
    networks = network_seconds(base, args.crops, args.repeats + 1)
    best = {count: float("inf") for count in settings}
    written = 0
    for _ in range(args.repeats):
        for count, setting in settings.items():
            out = args.work / f"crops{count}.parquet"
            seconds, written = extract_seconds(manifest, setting, out, args.workers)
            best[count] = min(best[count], seconds)
    footage = steps(args.work / "crops0.parquet")
    print(f"{cpu_model()}; preset {args.preset}; {written} videos, {footage} steps (s)\n")
    print(f"| crops | extraction s / video | ratio | networks s / batch of {base.batch_size} "
          "| ratio | shard bytes / video-second |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for count in settings:
        size = (args.work / f"crops{count}.parquet").stat().st_size
        print(f"| {count} | {best[count] / written:.3f} | {best[count] / best[0]:.3f} "
              f"| {networks[count]:.4f} | {networks[count] / networks[0]:.3f} "
              f"| {size / footage:,.0f} |")  # fmt: skip
    plain = PAPER_DIM * FLOAT16_BYTES
    with_crops = (args.crops + 1) * plain
    print(f"\nStorage at the paper's setting (2560-d float16, per video-second): "
          f"{plain:,} bytes without crops, (K + 1) x 2560 x 2 = {with_crops:,} bytes with "
          f"K = {args.crops} ({with_crops / plain:.0f}x)")  # fmt: skip


if __name__ == "__main__":
    main()
