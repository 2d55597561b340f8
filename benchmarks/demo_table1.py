"""The paper's Table 1 (captioning objectives) on the demo corpus, over training seeds.

Table 1 of the paper compares the variants of its captioning objective (eq. 3): "None"
(the contrastive loss alone), "Identity" ("generates the caption from the corresponding
video"), "Full" ("considers all videos as possible candidates for captioning"), "Hybrid"
("the average of the weights for identity captioning and full support") and "Cross"
("considers all but the video that one wishes to caption"). This script writes a config
with five experiments t1_none ... t1_cross that differ from config.yaml's demo setting in
`training.captioning` only (nothing is tuned per variant), each trained with
`training.seed` 0..S-1 (seed 0 is config.yaml's `training.seed`, 0; seed K is the copy
t1_VARIANT_seedK), and a table of all of them on the demo's test split. It runs the demo
DAG for that table in a work folder of its own (the corpus, features and text states are
made once there and shared by every run), then prints per variant T2V R@1 mean ± sample
standard deviation over seeds, each seed's value, seed 0's bootstrap 95% interval and
V2T R@1 mean ± sample std; chance R@1 for the test split; how far Cross's mean is above
or below None's, in pooled standard deviations; the machine and the elapsed time.

Each demo training takes about 30-60 s on 2 cores, so the default run (15 trainings,
one at a time on 2 cores, plus about 1.5 minutes of corpus and feature extraction) takes
about 10-20 minutes on an idle machine, longer on a loaded one.

    .venv/bin/python benchmarks/demo_table1.py [--work /tmp/demo-table1] [--seeds 3]
        [--cores 2] [--dry-run]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from demo_runs import repo_config, run_table, seed_copies
from machine import cpu_model

TABLE = "demo_table1"
DATASET, SPLIT = "demo", "test"
# training.captioning value -> the row name of the paper's Table 1.
VARIANTS = {
    "none": "None",
    "identity": "Identity",
    "full": "Full",
    "hybrid": "Hybrid",
    "cross": "Cross",
}


def table1_config(seeds: int) -> tuple[dict, dict[str, list[str]]]:
    """config.yaml with its experiments and tables replaced by the Table 1 variants, each
    for `seeds` training seeds, and one table of them all; and captioning variant -> the
    experiment names of its runs, seed 0 first."""
    config = repo_config()
    variants = {
        f"t1_{variant}": {
            "description": f"Table 1, captioning '{variant}' ({label}), demo setting.",
            "overrides": {"training": {"captioning": variant}},
        }
        for variant, label in VARIANTS.items()
    }
    config["experiments"], runs = seed_copies(variants, seeds)
    rows = {
        f"{VARIANTS[variant]} seed {seed}": name
        for variant in VARIANTS
        for seed, name in enumerate(runs[f"t1_{variant}"])
    }
    config["tables"] = {TABLE: {"dataset": DATASET, "split": SPLIT, "rows": rows}}
    return config, {variant: runs[f"t1_{variant}"] for variant in VARIANTS}


def read_metrics(results: Path, runs: dict[str, list[str]]) -> dict[str, list[dict]]:
    """Variant -> the metrics JSON (see supportset.retrieval.metrics) of each seed's run,
    read from results/{DATASET}/{experiment}/metrics_{SPLIT}.json."""
    return {
        variant: [
            json.loads((results / DATASET / name / f"metrics_{SPLIT}.json").read_text())
            for name in names
        ]
        for variant, names in runs.items()
    }


def mean_std(values: list[float]) -> str:
    """'mean ± sample std' (n - 1 in the denominator) of percentages, one decimal."""
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def pooled_difference(higher: list[float], lower: list[float]) -> tuple[float, float]:
    """mean(higher) - mean(lower) and the pooled sample standard deviation of the two
    groups, sqrt(((n1 - 1) s1^2 + (n2 - 1) s2^2) / (n1 + n2 - 2))."""
    pooled_variance = (
        (len(higher) - 1) * statistics.variance(higher)
        + (len(lower) - 1) * statistics.variance(lower)
    ) / (len(higher) + len(lower) - 2)
    return statistics.mean(higher) - statistics.mean(lower), pooled_variance**0.5


def comparison_line(t2v_cross: list[float], t2v_none: list[float]) -> str:
    """Whether Cross's mean T2V R@1 beats None's, and by how many pooled std."""
    difference, pooled = pooled_difference(t2v_cross, t2v_none)
    verdict = "beats" if difference > 0 else "does not beat"
    if pooled == 0:
        return f"Cross's mean T2V R@1 {verdict} None's by {difference:.1f} points (pooled std 0)."
    return (
        f"Cross's mean T2V R@1 {verdict} None's: {difference:+.1f} points, "
        f"{difference / pooled:+.1f} pooled sample std ({pooled:.1f})."
    )


def summary(metrics: dict[str, list[dict]]) -> str:
    """Markdown: the table (one row per variant), the chance line and Cross against None."""
    seeds = len(next(iter(metrics.values())))
    lines = [
        "| variant | T2V R@1 mean ± sample std | "
        + " | ".join(f"seed {seed}" for seed in range(seeds))
        + " | seed 0 bootstrap 95% | V2T R@1 mean ± sample std |",
        "|---|" + "---:|" * (seeds + 3),
    ]
    t2v = {}
    for variant, runs in metrics.items():
        t2v[variant] = [run["t2v"]["R@1"] for run in runs]
        low, high = runs[0]["t2v"]["CI95"]["R@1"]
        lines.append(
            f"| {VARIANTS[variant]} | {mean_std(t2v[variant])} | "
            + " | ".join(f"{value:.1f}" for value in t2v[variant])
            + f" | {low:.1f}-{high:.1f} | {mean_std([run['v2t']['R@1'] for run in runs])} |"
        )
    first = metrics["none"][0]
    videos, captions = first["v2t"]["n_queries"], first["t2v"]["n_queries"]
    lines += [
        "",
        f"Chance R@1 (either direction) = 100 / {videos} test videos = {100 / videos:.1f}% "
        f"({captions} caption queries, {videos} video queries).",
        comparison_line(t2v["cross"], t2v["none"]),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/demo-table1"))
    parser.add_argument("--seeds", type=int, default=3, help="training seeds 0..S-1 (S >= 2)")
    parser.add_argument("--cores", type=int, default=2, help="snakemake --cores")
    parser.add_argument("--dry-run", action="store_true", help="only plan the DAG (-n)")
    args = parser.parse_args()
    if args.seeds < 2:
        parser.error("--seeds must be at least 2 for a standard deviation over seeds")
    config, runs = table1_config(args.seeds)
    start = time.monotonic()
    run_table(args.work, config, TABLE, args.cores, dry_run=args.dry_run)
    if args.dry_run:
        return
    minutes, seconds = divmod(round(time.monotonic() - start), 60)
    print(f"\n{summary(read_metrics(args.work / 'results', runs))}\n")
    print(
        f"Machine: {cpu_model()}, {os.cpu_count()} cores, snakemake --cores {args.cores}; "
        f"seeds 0-{args.seeds - 1}; elapsed {minutes} min {seconds} s."
    )


if __name__ == "__main__":
    main()
