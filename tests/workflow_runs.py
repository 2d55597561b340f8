"""Running the real Snakemake DAG from the tests: a small demo config and the command."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def small_config() -> dict:
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    demo = config["datasets"]["demo"]
    demo["corpus"] = {"num_videos": 20, "seed": 1, "min_seconds": 3.0, "max_seconds": 4.0}
    demo["overrides"]["text"]["tiny"] = {"d_model": 16, "num_layers": 1, "d_ff": 32}
    demo["overrides"]["model"].update(dim=32, ffn_dim=64)
    demo["overrides"]["training"].update(epochs=2, batch_size=8)
    return config


def snakemake(
    workdir: Path, *args: str, timeout: float = 900, **env_changes: str
) -> subprocess.CompletedProcess:
    """Run snakemake on the repository's workflow in `workdir` (its config.yaml), with a
    hard timeout: on expiry the whole process group is killed and TimeoutExpired raised."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    env = {**os.environ, "PATH": path, **env_changes}
    command = [
        sys.executable, "-m", "snakemake",
        "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(workdir),
        "--configfile", str(workdir / "config.yaml"),
        "--cores", "2",
        *args,
    ]  # fmt: skip
    with subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    ) as process:  # fmt: skip
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def job_counts(stdout: str) -> dict[str, int]:
    """Jobs per rule of a dry run's output (Snakemake's job stats table)."""
    stats = stdout.split("Job stats:", 1)[1].split("total", 1)[0]
    return {rule: int(count) for rule, count in re.findall(r"^(\w+)\s+(\d+)$", stats, re.M)}
