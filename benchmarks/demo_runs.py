"""Helpers of the benchmarks that run the demo DAG in a work folder of their own
(demo_tables.py): the repo's config, and a Snakemake run of several targets.

The work folder needs nothing copied from the repo: Snakemake reads the repo's Snakefile
and rules where they are, the config is written into the folder, and the demo corpus,
features, text states and every run's results are made under it (shared by all targets),
never in the repo's resources/ or results/.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def repo_config() -> dict:
    """The repo's config.yaml, as written (no defaults filled in)."""
    return yaml.safe_load((REPO / "config.yaml").read_text())


def run_targets(
    work: Path, config: dict, targets: list[str], cores: int, dry_run: bool = False
) -> None:
    """Write `config` to work/config.yaml and build `targets` (paths relative to `work`)
    with one Snakemake run on `cores` cores (`dry_run`: only plan it, `snakemake -n`).
    A failed run raises."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    command = [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(work), "--cores", str(cores), *targets,
        *(["-n"] if dry_run else []),
    ]  # fmt: skip
    subprocess.run(command, check=True, env={**os.environ, "PATH": path})
