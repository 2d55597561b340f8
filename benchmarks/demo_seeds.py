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
import copy
import csv
import os
import subprocess
import sys
from pathlib import Path

import yaml
from machine import cpu_model

REPO = Path(__file__).resolve().parents[1]
TABLE = "demo_seeds"


def seeds_config(seeds: int) -> tuple[dict, dict[str, list[str]]]:
    """config.yaml with every experiment repeated for seeds 1..seeds-1, and a table of them
    all; and experiment -> its row labels, seed 0 first."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    experiments, rows, labels = config["experiments"], {}, {}
    for name in list(experiments):
        labels[name] = []
        for seed in range(seeds):
            copy_name = name if seed == 0 else f"{name}_seed{seed}"
            if seed:
                repeated = copy.deepcopy(experiments[name])
                repeated.setdefault("overrides", {}).setdefault("training", {})["seed"] = seed
                experiments[copy_name] = repeated
            rows[f"{name} seed {seed}"] = copy_name
            labels[name].append(f"{name} seed {seed}")
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
    args.work.mkdir(parents=True, exist_ok=True)
    config, labels = seeds_config(args.seeds)
    (args.work / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    command = [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(args.work), "--cores", str(os.cpu_count()), f"results/{TABLE}.csv",
    ]  # fmt: skip
    subprocess.run(command, check=True, env={**os.environ, "PATH": path})
    print(f"{cpu_model()}, {os.cpu_count()} cores; seeds 0-{args.seeds - 1}\n")
    print(summary(args.work / f"results/{TABLE}.csv", labels))


if __name__ == "__main__":
    main()
