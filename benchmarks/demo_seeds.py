"""The demo's rows over training seeds: the figures of the README's demo section.

Writes a config that adds, for every experiment of config.yaml, copies with
`training.seed` 1 and 2 (seed 0 is the experiment itself, as `make demo` runs it) and a
table of all of them, runs the demo DAG for it in a folder of its own (features, text
states and the corpus are shared by every seed), then prints, per experiment, the seed-0
value, range and mean of T2V R@1 and the range of V2T R@1. About 45 minutes on 2 cores.

    python benchmarks/demo_seeds.py [--work /tmp/demo-seeds] [--seeds 3]
"""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path

from demo_runs import repo_config, run_table, seed_copies
from machine import cpu_model

TABLE = "demo_seeds"


def seeds_config(seeds: int) -> tuple[dict, dict[str, list[str]]]:
    """config.yaml with every experiment repeated for seeds 1..seeds-1, and a table of them
    all; and experiment -> its row labels, seed 0 first."""
    config = repo_config()
    config["experiments"], runs = seed_copies(config["experiments"], seeds)
    rows, labels = {}, {}
    for name, names in runs.items():
        labels[name] = [f"{name} seed {seed}" for seed in range(seeds)]
        rows.update(zip(labels[name], names, strict=True))
    config["tables"][TABLE] = {"dataset": "demo", "split": "test", "rows": rows}
    return config, labels


def summary(table: Path, labels: dict[str, list[str]]) -> str:
    """Markdown: per experiment, T2V R@1 at seed 0, its range and mean, V2T R@1's range."""
    with open(table, newline="") as handle:
        values = {row["row"]: row for row in csv.DictReader(handle) if row["source"] != "paper"}
    lines = [
        "| experiment | T2V R@1, seed 0 | range | mean | V2T R@1 range |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, rows in labels.items():
        t2v = [float(values[row]["T2V_R@1"]) for row in rows]
        v2t = [float(values[row]["V2T_R@1"]) for row in rows]
        lines.append(
            f"| {name} | {t2v[0]:.1f} | {min(t2v):.1f}-{max(t2v):.1f} | "
            f"{sum(t2v) / len(t2v):.1f} | {min(v2t):.1f}-{max(v2t):.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/demo-seeds"))
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    config, labels = seeds_config(args.seeds)
    run_table(args.work, config, TABLE, os.cpu_count())
    print(f"{cpu_model()}, {os.cpu_count()} cores; seeds 0-{args.seeds - 1}\n")
    print(summary(args.work / f"results/{TABLE}.csv", labels))


if __name__ == "__main__":
    main()
