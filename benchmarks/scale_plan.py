"""Planning HowTo100M pre-training at thousands of shards: wall time, peak memory (RSS of
the snakemake process tree), jobs and the size of the plan of `snakemake -n` for
results/howto100m/supportset/model.pt, with features.shards and text.shards of the
howto100m dataset at each count; a straight line fitted through the points.

The dataset folder holds a 3-line HowTo100M_v1.csv and caption.json: planning only needs
them to exist (prepare, which reads them, does not run). The configuration is the
repository's config.yaml with an overlay written in the work folder (the dataset's root
and its shard counts, as per-dataset overrides). Each shell command the plan prints is
measured too: the train job's lists every shard, and a command that grows past ARG_MAX
cannot be started.

    python benchmarks/scale_plan.py --work /tmp/scale-plan [--shards 200 500 2000 10000]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml
from machine import children_cpu_seconds, cpu_model, peak_memory_mb

REPO = Path(__file__).resolve().parents[1]
TARGET = "results/howto100m/supportset/model.pt"
SHELL_PREFIX = "Shell command: "
COLUMNS = {  # key of a measurement -> its column in the report
    "shards": "shards", "jobs": "jobs", "seconds": "seconds", "cpu_seconds": "CPU seconds",
    "peak_rss_mb": "peak RSS (MB)", "plan_mb": "plan (MB)",
    "longest_command_kb": "longest command (KB)",
}  # fmt: skip


def write_dataset(root: Path) -> None:
    """HowTo100M's two annotation files, with two videos and one narrated segment."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "HowTo100M_v1.csv").write_text(
        "video_id,category_1,category_2,rank,task_id\nv1,Food,Cooking,1,1\nv2,Food,Cooking,2,1\n"
    )
    (root / "caption.json").write_text('{"v1": {"start": [0], "end": [4], "text": ["cut it"]}}\n')


def write_overlay(work: Path, shards: int) -> Path:
    """A config file that points howto100m at work/data and gives it `shards` visual and
    text shards."""
    overrides = {"features": {"shards": shards}, "text": {"shards": shards}}
    howto100m = {"root": str(work / "data/howto100m"), "overrides": overrides}
    overlay = work / f"overlay_{shards}.yaml"
    overlay.write_text(yaml.safe_dump({"datasets": {"howto100m": howto100m}}))
    return overlay


def planned_jobs(plan: str) -> dict[str, int]:
    """Jobs per rule (and 'total') of a dry run's job stats table."""
    stats = plan.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    return {rule: int(count) for rule, count in re.findall(r"^(\w+)\s+(\d+)$", stats, re.M)}


def plan(work: Path, shards: int) -> dict:
    """Run `snakemake -n` on the target with `shards` shards; its figures (see module)."""
    overlay = write_overlay(work, shards)
    plan_path, log_path = work / f"plan_{shards}.txt", work / f"plan_{shards}.log"
    command = [
        sys.executable, "-m", "snakemake", TARGET,
        "--snakefile", str(REPO / "Snakefile"), "--directory", str(work),
        "--configfile", str(REPO / "config.yaml"), str(overlay),
        "--dry-run", "--printshellcmds", "--cores", "1",
    ]  # fmt: skip
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    with open(plan_path, "w") as out, open(log_path, "w") as log:
        started, cpu_before = time.perf_counter(), children_cpu_seconds()
        process = subprocess.Popen(command, env=env, stdout=out, stderr=log)
        try:
            peak_mb = peak_memory_mb(process)
        except RuntimeError as error:
            raise RuntimeError(f"{error}; see {log_path}") from error
        seconds, cpu_seconds = time.perf_counter() - started, children_cpu_seconds() - cpu_before
    text = plan_path.read_text()
    commands = [line for line in text.splitlines() if line.startswith(SHELL_PREFIX)]
    jobs = planned_jobs(text)
    return {
        "shards": shards,
        "jobs": jobs.pop("total"),
        "jobs_per_rule": jobs,
        "seconds": round(seconds, 2),
        "cpu_seconds": round(cpu_seconds, 2),
        "peak_rss_mb": round(peak_mb, 1),
        "plan_mb": round(plan_path.stat().st_size / 1e6, 2),
        "longest_command_kb": round(max(len(c) - len(SHELL_PREFIX) for c in commands) / 1e3, 1),
    }


def measure_planning(work: Path, shard_counts=(2000, 10000)) -> list[dict]:
    """Plan pre-training in `work` at each shard count (features.shards = text.shards);
    one dict per count: shards, jobs (total), jobs_per_rule, seconds (wall), cpu_seconds
    (user + system, less sensitive to a busy machine than the wall time), peak_rss_mb,
    plan_mb (bytes printed by the dry run, 1e6), longest_command_kb (the longest shell
    command, 1e3 bytes)."""
    write_dataset(work / "data/howto100m")
    return [plan(work, shards) for shards in shard_counts]


def fitted_line(rows: list[dict], key: str) -> tuple[float, float]:
    """(per 1,000 jobs, at 0 jobs) of a least-squares line through `key` against jobs."""
    slope, intercept = statistics.linear_regression(
        [row["jobs"] for row in rows], [row[key] for row in rows]
    )
    return 1000 * slope, intercept


def report(rows: list[dict]) -> str:
    """A Markdown table of the rows, the fitted lines and the machine."""
    lines = ["| " + " | ".join(COLUMNS.values()) + " |", "|" + "---:|" * len(COLUMNS)]
    lines += ["| " + " | ".join(str(row[key]) for key in COLUMNS) + " |" for row in rows]
    if len(rows) > 1:
        for key, unit in (("seconds", "s"), ("cpu_seconds", "s"), ("peak_rss_mb", "MB")):
            slope, intercept = fitted_line(rows, key)
            lines.append(f"\n{key}: {slope:.3g} {unit} per 1,000 jobs + {intercept:.3g} {unit}")
    arg_max_kb = os.sysconf("SC_ARG_MAX") / 1e3
    lines.append(
        f"\nARG_MAX {arg_max_kb:.0f} KB. Machine: {cpu_model()}, {os.cpu_count()} cores; "
        f"Python {platform.python_version()}, Snakemake {importlib.metadata.version('snakemake')}"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="folder for data and plans")
    parser.add_argument("--shards", type=int, nargs="+", default=[200, 500, 2000, 10000])
    args = parser.parse_args()
    print(report(measure_planning(args.work, args.shards)))


if __name__ == "__main__":
    main()
