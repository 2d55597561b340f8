"""The demo's paper tables over training seeds: mean ± std per row, and what differs.

Writes the repo's config.yaml with `seeds: [0, ..., S-1]` added to each chosen table
(default: demo_table1, Table 1's captioning variants None/Identity/Full/Hybrid/Cross;
demo_table2b, Table 2b's Mean/Max/Transformer pooling; demo_pretrain, from scratch /
pre-trained on train+val / pre-trained then fine-tuned; demo_table3), nothing else
changed, so each row trains one model per seed (`triplet+seed=1`, ...; seed 0 is the
experiment itself). It builds every table with one Snakemake run in a work folder of its
own: the corpus, features and text states are made once, and a run two tables name (e.g.
`triplet`, None in Table 1 and Transformer in 2b) is trained once. It then prints each
table's Markdown (mean ± sample std), each run's T2V R@1 from results/{table}.runs.csv,
chance R@1 of the test split, the T2V R@1 differences the tables are about (Table 1: each
variant minus None; 2b: Transformer minus Mean and minus Max; the pre-training chain:
fine-tuned minus from scratch) in pooled sample standard deviations, the machine and the
elapsed time.

The default run trains 27 models (5 + 2 + 2 distinct rows x 3 seeds; demo_table3's rows
are all shared), one at a time on 2 cores, 15-120 s each (fine-tuning is the shortest),
plus about 3 minutes of corpus and feature extraction: 35-40 minutes on an idle 2-core
machine; 48 minutes on a shared one, where a few trainings took 5-6 minutes.

    .venv/bin/python benchmarks/demo_tables.py [--work /tmp/demo-tables] [--seeds 3]
        [--cores 2] [--tables demo_table1 ...] [--dry-run]
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import os
import statistics
import time
from pathlib import Path

from demo_runs import REPO, repo_config, run_targets
from machine import cpu_model

from supportset.config import load_schema, validate_config

TABLES = ("demo_table1", "demo_table2b", "demo_pretrain", "demo_table3")
# table -> (row, the row it is compared with): what each table asks of the method.
COMPARISONS = {
    "demo_table1": [(variant, "None") for variant in ("Identity", "Full", "Hybrid", "Cross")],
    "demo_table2b": [("Transformer", "Mean"), ("Transformer", "Max")],
    "demo_pretrain": [("Pre-trained, fine-tuned on train", "From scratch (train)")],
}
METRIC = "T2V_R@1"


def seeded_config(tables: list[str], seeds: int) -> dict:
    """The repo's config.yaml with `seeds: [0, ..., seeds-1]` added to each of `tables`."""
    config = repo_config()
    unknown = [name for name in tables if name not in config["tables"]]
    if unknown:
        raise ValueError(f"tables {unknown} are not in config.yaml")
    for name in tables:
        config["tables"][name]["seeds"] = list(range(seeds))
    return config


def split_of(config: dict, name: str) -> str:
    """The split table `name` scores: its own, else the schema's default. An invalid
    config raises supportset.config.ConfigError."""
    schema = load_schema(REPO / "workflow/schemas/config.schema.yaml")
    return validate_config(copy.deepcopy(config), schema)["tables"][name]["split"]


def read_run_values(path: Path) -> dict[str, dict[str, float]]:
    """Row label -> run ("dataset/experiment") -> T2V R@1 (%) of a results/{table}.runs.csv,
    rows and runs in file order."""
    values: dict[str, dict[str, float]] = {}
    with open(path, newline="") as handle:
        for line in csv.DictReader(handle):
            values.setdefault(line["row"], {})[line["run"]] = float(line[METRIC])
    return values


def runs_text(values: dict[str, dict[str, float]]) -> str:
    """One line per row: each run's T2V R@1, in seed order."""
    return "\n".join(
        f"- {label}: " + ", ".join(f"{run} {value:.1f}" for run, value in runs.items())
        for label, runs in values.items()
    )


def pooled_difference(values: list[float], baseline: list[float]) -> tuple[float, float]:
    """mean(values) - mean(baseline) and the pooled sample standard deviation of the two
    groups, sqrt(((n1 - 1) s1^2 + (n2 - 1) s2^2) / (n1 + n2 - 2))."""
    pooled_variance = (
        (len(values) - 1) * statistics.variance(values)
        + (len(baseline) - 1) * statistics.variance(baseline)
    ) / (len(values) + len(baseline) - 2)
    return statistics.mean(values) - statistics.mean(baseline), pooled_variance**0.5


def comparison_line(values: dict[str, dict[str, float]], row: str, baseline: str) -> str:
    """Mean T2V R@1 of `row` minus `baseline`'s, in points and in pooled sample std."""
    difference, pooled = pooled_difference(
        list(values[row].values()), list(values[baseline].values())
    )
    head = f"{row} minus {baseline}, mean T2V R@1: {difference:+.1f} points"
    if pooled == 0:
        return f"{head} (pooled std 0)."
    return f"{head}, {difference / pooled:+.1f} pooled std ({pooled:.1f})."


def table_summary(results: Path, name: str) -> str:
    """A table's Markdown, each run's T2V R@1 and the table's comparisons (COMPARISONS)."""
    values = read_run_values(results / f"{name}.runs.csv")
    comparisons = [
        comparison_line(values, row, baseline) for row, baseline in COMPARISONS.get(name, [])
    ]
    sections = [
        f"### {name}",
        (results / f"{name}.md").read_text().rstrip(),
        f"T2V R@1 of each run:\n{runs_text(values)}",
    ]
    return "\n\n".join(sections + (["\n".join(comparisons)] if comparisons else []))


def chance_line(results: Path, run: str, split: str) -> str:
    """Chance R@1 of a split (either direction: 1 / its number of videos), read from the
    metrics of `run` ("dataset/experiment")."""
    metrics = json.loads((results / run / f"metrics_{split}.json").read_text())
    videos, captions = metrics["v2t"]["n_queries"], metrics["t2v"]["n_queries"]
    return (
        f"Chance R@1 (either direction) = 100 / {videos} {split} videos = {100 / videos:.1f}% "
        f"({captions} caption queries, {videos} video queries)."
    )


def summary(results: Path, tables: list[str], split: str) -> str:
    """Every table's summary, then chance R@1 of `split` (that of the first table's runs)."""
    first_row = next(iter(read_run_values(results / f"{tables[0]}.runs.csv").values()))
    texts = [table_summary(results, name) for name in tables]
    return "\n\n".join([*texts, chance_line(results, next(iter(first_row)), split)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/demo-tables"))
    parser.add_argument("--seeds", type=int, default=3, help="training seeds 0..S-1 (S >= 2)")
    parser.add_argument("--cores", type=int, default=2, help="snakemake --cores")
    parser.add_argument("--tables", nargs="+", default=list(TABLES), help="tables of config.yaml")
    parser.add_argument("--dry-run", action="store_true", help="only plan the DAG (-n)")
    args = parser.parse_args()
    if args.seeds < 2:
        parser.error("--seeds must be at least 2 for a standard deviation over seeds")
    try:
        config = seeded_config(args.tables, args.seeds)
    except ValueError as error:
        parser.error(str(error))
    split = split_of(config, args.tables[0])
    start = time.monotonic()
    targets = [f"results/{name}.csv" for name in args.tables]
    run_targets(args.work, config, targets, args.cores, dry_run=args.dry_run)
    if args.dry_run:
        return
    minutes, seconds = divmod(round(time.monotonic() - start), 60)
    print(f"\n{summary(args.work / 'results', args.tables, split)}\n")
    print(
        f"Machine: {cpu_model()}, {os.cpu_count()} cores, snakemake --cores {args.cores}; "
        f"seeds 0-{args.seeds - 1}; elapsed {minutes} min {seconds} s."
    )


if __name__ == "__main__":
    main()
