"""StiCA's feature crops on the demo: retrieval and the action probe, with and without.

Builds, in a work folder of its own, the demo with `features.crops: K` (default 8) and a
table of two rows trained with seeds 0..S-1 (default 3): the support-set model as is, and
the same with crop augmentation and the within-video crop term
(`training.crop_augment: true`, `crop_contrast_weight: W`, default 1.0). Both rows read
the same shards (the crops only add a column). Then each run's frozen video head is
probed on the demo's five events (`supportset probe`, the demo's probe settings), with
average pooling once as the baseline. Prints a Markdown table: T2V and V2T R@1 on the test
split and the probe's test top-1, mean ± sample std over the seeds, each seed's values,
the machine and the elapsed time.

    .venv/bin/python benchmarks/crops_demo.py [--work /tmp/crops-demo] [--seeds 3]
        [--crops 8] [--weight 1.0] [--cores 2]
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from demo_runs import repo_config, run_targets
from machine import cpu_model

from supportset.config import load_schema, section_settings, validate_config

TABLE = "crops_effect"
ROWS = ("Support-set", "Support-set + feature crops")
FOLD = "results/demo/folds/events"


def crops_config(seeds: int, crops: int, weight: float) -> dict:
    """The repo's config with the demo's features cropped and the two-row seeded table."""
    config = repo_config()
    config["datasets"]["demo"]["overrides"]["features"]["crops"] = crops
    cropped = {"training.crop_augment": True, "training.crop_contrast_weight": weight}
    config["tables"][TABLE] = {
        "dataset": "demo",
        "seeds": list(range(seeds)),
        "rows": {ROWS[0]: "supportset", ROWS[1]: {"experiment": "supportset", "set": cropped}},
    }
    return config


def probe(work: Path, settings: str, model: Path | None, out: Path) -> float:
    """Test top-1 of `supportset probe` on the demo's events (average pooling without a model)."""
    shards = sorted(str(p) for p in (work / "results/demo/features/visual").glob("0*.parquet"))
    command = [
        str(Path(sys.executable).parent / "supportset"), "probe",
        "--videos", f"{FOLD}/videos.parquet", "--captions", f"{FOLD}/captions.parquet",
        "--visual", *shards,
        "--settings", settings, "--out", str(out),
        *(["--model", str(model)] if model else []),
    ]  # fmt: skip
    subprocess.run(command, check=True, cwd=work, env=os.environ)
    return json.loads(out.read_text())["top1"]


def runs_of(work: Path) -> dict[str, list[dict]]:
    """Row -> its runs' values (results/{TABLE}.runs.csv)."""
    rows: dict[str, list[dict]] = {row: [] for row in ROWS}
    with open(work / f"results/{TABLE}.runs.csv", newline="") as handle:
        for run in csv.DictReader(handle):
            rows[run["row"]].append(run)
    return rows


def summary(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.1f} ± {spread:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/crops-demo"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--crops", type=int, default=8)
    parser.add_argument("--weight", type=float, default=1.0)
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args()
    started = time.perf_counter()
    config = crops_config(args.seeds, args.crops, args.weight)
    schema = load_schema(
        Path(__file__).resolve().parents[1] / "workflow/schemas/config.schema.yaml"
    )
    settings = json.dumps(
        section_settings(validate_config(copy.deepcopy(config), schema), "probe", "demo")
    )
    run_targets(args.work, config, [f"results/{TABLE}.csv", f"{FOLD}/videos.parquet"], args.cores)
    probes = args.work / "results/crops_probe"
    probes.mkdir(exist_ok=True)
    average = probe(args.work, settings, None, probes / "average.json")
    print("| row | T2V R@1 | V2T R@1 | probe top-1 (head) | seeds (T2V R@1 / top-1) |")
    print("|---|---:|---:|---:|---|")
    for row, runs in runs_of(args.work).items():
        top1 = []
        for run in runs:
            experiment = run["run"].split("/", 1)[1]
            model = args.work / f"results/demo/{experiment}/model.pt"
            top1.append(probe(args.work, settings, model, probes / f"{experiment}.json"))
        t2v = [float(run["T2V_R@1"]) for run in runs]
        v2t = [float(run["V2T_R@1"]) for run in runs]
        seeds = ", ".join(f"{a:.1f} / {b:.1f}" for a, b in zip(t2v, top1, strict=True))
        print(f"| {row} | {summary(t2v)} | {summary(v2t)} | {summary(top1)} | {seeds} |")
    print(f"\nAverage pooling probe: {average:.1f}% top-1 (chance 20.0%).")
    print(f"{cpu_model()}, {os.cpu_count()} cores; {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
