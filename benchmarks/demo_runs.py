"""Helpers of the benchmarks that retrain the demo's experiments over several training seeds
(demo_seeds.py, demo_table1.py): seed copies of experiments, and a Snakemake run of one
table in a work folder of its own.

The work folder needs nothing copied from the repo: Snakemake reads the repo's Snakefile
and rules where they are, the config is written into the folder, and the demo corpus,
features, text states and every run's results are made under it (shared by all seeds),
never in the repo's resources/ or results/.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def repo_config() -> dict:
    """The repo's config.yaml, as written (no defaults filled in)."""
    return yaml.safe_load((REPO / "config.yaml").read_text())


def seed_copies(experiments: dict, seeds: int) -> tuple[dict, dict[str, list[str]]]:
    """`experiments` plus, for each, copies with `training.seed` 1..seeds-1, named
    NAME_seedK (seed 0 is the experiment itself, with the config's `training.seed`); and
    experiment -> the names of its runs, seed 0 first. `experiments` is not modified."""
    repeated, runs = copy.deepcopy(experiments), {}
    for name, experiment in experiments.items():
        runs[name] = [name]
        for seed in range(1, seeds):
            seeded = copy.deepcopy(experiment)
            seeded.setdefault("overrides", {}).setdefault("training", {})["seed"] = seed
            repeated[f"{name}_seed{seed}"] = seeded
            runs[name].append(f"{name}_seed{seed}")
    return repeated, runs


def run_table(work: Path, config: dict, table: str, cores: int, dry_run: bool = False) -> None:
    """Write `config` to work/config.yaml and build work/results/{table}.csv with Snakemake
    on `cores` cores (`dry_run`: only plan it, `snakemake -n`). A failed run raises."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    command = [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(work), "--cores", str(cores), f"results/{table}.csv",
        *(["-n"] if dry_run else []),
    ]  # fmt: skip
    subprocess.run(command, check=True, env={**os.environ, "PATH": path})
