"""HowTo100M at full size, measured by simulation: `prepare` on synthetic corpora of a few
fractions of the dataset's 1.22M videos (supportset.data.synthetic_howto100m, the real
formats and the paper's statistics), each run as `supportset prepare --adapter howto100m`
in a child process whose wall time, CPU time and peak resident memory (whole process tree,
sampled every 0.1 s) are taken. On a machine other work shares, wall time varies from run
to run; CPU time much less. Least-squares lines of time and memory against the number of
captions are extrapolated, linearly, to the full 136M captions. For comparison, the adapter
before streaming is measured the same way at the smaller fractions: caption.json loaded
whole with read_json and one Python dict per caption, as it built them (a lower bound on
that `prepare`, which then also copied the dicts into an Arrow table).

Corpora are kept under --work and reused (the generator's time is kept with them); the 10%
corpus takes about 0.5 GB of JSON and 122K empty video files.

    python benchmarks/scale_prepare.py [--work /tmp/scale] [--fractions 0.01 0.03 0.1]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from machine import children_cpu_seconds, cpu_model, peak_memory_mb

from supportset.data.synthetic_howto100m import FULL_VIDEOS, write_synthetic_howto100m

FULL_CAPTIONS = 136_000_000  # the HowTo100M paper's abstract
OLD_FRACTIONS = (0.01, 0.03)


def corpus(work: Path, fraction: float) -> tuple[Path, dict]:
    """The synthetic corpus of `fraction` of HowTo100M's videos under `work` (generated
    unless a previous run left it whole) and what the generator reported, with its time."""
    root = work / f"howto100m_{fraction:g}"
    report = root / "synthetic.json"
    if report.is_file():
        return root, json.loads(report.read_text())
    start = time.perf_counter()
    written = write_synthetic_howto100m(root, round(fraction * FULL_VIDEOS))
    generated = asdict(written) | {"generate_s": round(time.perf_counter() - start, 1)}
    report.write_text(json.dumps(generated))
    return root, generated


def run_child(command: list[str]) -> dict[str, float]:
    """Wall time and CPU time (user + system, s) and peak resident memory (MB, the process
    tree) of `command`. CPU time is what other work on a shared machine does not inflate."""
    start, used = time.perf_counter(), children_cpu_seconds()
    peak = peak_memory_mb(subprocess.Popen(command, stdout=subprocess.DEVNULL))
    return {
        "wall_s": round(time.perf_counter() - start, 1),
        "cpu_s": round(children_cpu_seconds() - used, 1),
        "peak_rss_mb": round(peak),
    }


def measure_prepare(work: Path, fractions: tuple[float, ...] = (0.01, 0.03, 0.10)) -> list[dict]:
    """One row per fraction: the corpus, and wall time and peak memory of `prepare` on it."""
    rows = []
    for fraction in fractions:
        root, generated = corpus(work, fraction)
        out_dir = work / f"manifest_{fraction:g}"
        command = [sys.executable, "-m", "supportset.cli", "prepare", "--adapter", "howto100m",
                   "--root", str(root), "--out-dir", str(out_dir)]  # fmt: skip
        measured = {f"prepare_{name}": value for name, value in run_child(command).items()}
        captions = pq.ParquetFile(out_dir / "captions.parquet").metadata.num_rows
        rows.append({"fraction": fraction, **generated, "manifest_captions": captions, **measured})
    return rows


def measure_old(work: Path, fractions: tuple[float, ...] = OLD_FRACTIONS) -> list[dict]:
    """Wall time and peak memory of the adapter before streaming (see old_read)."""
    rows = []
    for fraction in fractions:
        root, generated = corpus(work, fraction)
        measured = run_child([sys.executable, __file__, "--old-read", str(root)])
        measured = {f"old_read_{name}": value for name, value in measured.items()}
        rows.append({"fraction": fraction, "captions": generated["segments"], **measured})
    return rows


def old_read(root: Path) -> int:
    """The howto100m adapter's reading before streaming, written again from its rules:
    caption.json loaded whole, then a dict per caption with text, in time order per video."""
    from supportset.data.adapters.files import read_csv, read_json

    listed = [row["video_id"] for row in read_csv(root / "HowTo100M_v1.csv", ("video_id",))]
    segments = read_json(root / "caption.json")
    captions = []
    for video_id in listed:
        entry = segments[video_id]
        triples = sorted(zip(entry["start"], entry["end"], entry["text"], strict=True))
        captions.extend(
            {"caption_id": f"{video_id}_{index:05d}", "video_id": video_id,
             "text": text.strip(), "split": "train", "start": float(start), "end": float(end)}
            for index, (start, end, text) in enumerate(triples)
            if text.strip()
        )  # fmt: skip
    return len(captions)


def fit_line(x: list[float], y: list[float]) -> dict[str, float]:
    """The least-squares line y = slope * x + intercept."""
    slope, intercept = np.polyfit(x, y, 1)
    return {"slope": float(slope), "intercept": float(intercept)}


def summary(rows: list[dict], old_rows: list[dict]) -> dict:
    """The measurements, lines of time and memory per million captions, and their linear
    extrapolation to FULL_CAPTIONS."""
    millions = [row["manifest_captions"] / 1e6 for row in rows]
    lines = {
        name: fit_line(millions, [row[name] for row in rows])
        for name in ("prepare_wall_s", "prepare_cpu_s", "prepare_peak_rss_mb")
    }
    full = FULL_CAPTIONS / 1e6
    return {
        "cpu": cpu_model(),
        "streaming_prepare": rows,
        "old_read_whole_json": old_rows,
        "fit_per_million_captions": lines,
        "linear_extrapolation_to_136M_captions": {
            name: round(line["slope"] * full + line["intercept"], 1) for name, line in lines.items()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/scale"))
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.01, 0.03, 0.10])
    parser.add_argument("--old-fractions", type=float, nargs="*", default=list(OLD_FRACTIONS))
    parser.add_argument("--old-read", type=Path, help=argparse.SUPPRESS)  # the child of measure_old
    args = parser.parse_args()
    if args.old_read:
        print(old_read(args.old_read))
        return
    rows = measure_prepare(args.work, tuple(args.fractions))
    old_rows = measure_old(args.work, tuple(args.old_fractions))
    print(json.dumps(summary(rows, old_rows), indent=2))


if __name__ == "__main__":
    main()
