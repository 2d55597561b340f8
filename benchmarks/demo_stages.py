"""Where the demo's time goes: wall time and peak memory of every Snakemake job.

Reads the `benchmark:` files that each rule writes under results/benchmarks/ after a run
(`make demo`), sums them per rule and prints a Markdown table with each rule's share of
the total, plus the machine line for docs/benchmarks.md. Shares are ratios within one run,
which is what this shared, noisy machine can measure reliably.

    python benchmarks/demo_stages.py [results/benchmarks]
"""

from __future__ import annotations

import csv
import os
import platform
import sys
from collections import defaultdict
from pathlib import Path

from machine import cpu_model


def read_jobs(root: Path) -> dict[str, list[dict]]:
    """Rule name -> its jobs' benchmark rows (s, max_rss in MB, ...)."""
    jobs: dict[str, list[dict]] = defaultdict(list)
    for path in sorted(root.rglob("*.tsv")):
        rule = path.relative_to(root).parts[0]
        with open(path, newline="") as handle:
            jobs[rule].extend(csv.DictReader(handle, delimiter="\t"))
    return jobs


def summary_table(jobs: dict[str, list[dict]]) -> str:
    """Markdown: rule, jobs, total seconds, share of total, largest peak RSS (MB)."""
    totals = {rule: sum(float(row["s"]) for row in rows) for rule, rows in jobs.items()}
    grand_total = sum(totals.values())
    lines = [
        "| rule | jobs | wall s (sum) | share | peak RSS MB (max) |",
        "|---|---:|---:|---:|---:|",
    ]
    for rule, total in sorted(totals.items(), key=lambda item: -item[1]):
        peak = max(float(row["max_rss"]) for row in jobs[rule] if row["max_rss"] != "NA")
        share = 100 * total / grand_total
        lines.append(f"| {rule} | {len(jobs[rule])} | {total:.1f} | {share:.0f}% | {peak:.0f} |")
    lines.append(f"| **all jobs** | {sum(map(len, jobs.values()))} | {grand_total:.1f} | 100% | |")
    return "\n".join(lines)


def machine_line() -> str:
    """CPU model, core count, Python and torch versions."""
    import torch

    cpu = cpu_model()
    return (
        f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"torch {torch.__version__} (threads {torch.get_num_threads()})"
    )


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "results/benchmarks")
    jobs = read_jobs(root)
    if not jobs:
        sys.exit(f"no benchmark files under {root}: run `make demo` first")
    print(f"Machine: {machine_line()}\n")
    print(summary_table(jobs))


if __name__ == "__main__":
    main()
