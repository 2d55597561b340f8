"""The demo DAG through profiles/slurm on a real single-node SLURM cluster.

Skipped where SLURM cannot start (not installed, not root), except when
SUPPORTSET_REQUIRE_SLURM=1 (set by .ci/run, which installs it): there a skip would hide a
broken cluster path, so it fails instead.
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import pytest
import yaml

from tests import slurm_cluster
from tests.conftest import REPO
from tests.workflow_runs import small_config, snakemake

pytestmark = [pytest.mark.e2e, pytest.mark.slurm]
HARD_TIMEOUT_S = 900
ROW = "Triplet only (demo corpus)"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    reason = slurm_cluster.available()
    if reason:
        if os.environ.get("SUPPORTSET_REQUIRE_SLURM") == "1":
            pytest.fail(f"SUPPORTSET_REQUIRE_SLURM=1 but SLURM cannot run here: {reason}")
        pytest.skip(reason)
    folder = tmp_path_factory.mktemp("slurm")
    env = slurm_cluster.start(folder)
    yield env
    slurm_cluster.stop(folder)


def test_demo_dag_through_the_slurm_profile_equals_the_local_run(
    cluster: dict, demo_run: Path, tmp_path: Path
):
    """Every stage of the DAG as its own SLURM job, for a one-row table (the triplet run of
    the demo table): each job's result equals the local run's."""
    config = small_config()
    config["tables"]["slurm"] = {"dataset": "demo", "rows": {ROW: "triplet"}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    result = snakemake(
        tmp_path,
        "results/slurm.csv",
        "--profile", str(REPO / "profiles/slurm"),
        "--slurm-init-seconds-before-status-checks", "2",
        "--set-resources", "extract_visual:gpu=0", "embed_text:gpu=0", "train:gpu=0",
        "--jobs", "4",
        timeout=HARD_TIMEOUT_S,
        **cluster,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-6000:]
    submitted = re.findall(r"Job \d+ has been submitted with SLURM jobid (\d+)", result.stderr)
    # corpus, prepare, tiny T5, 2 extraction shards, text, train, export of the test split
    # and of the train split (QB-Norm's query bank: demo_table3 shows the run with it),
    # evaluate, table
    assert len(submitted) == 11, result.stderr[-4000:]
    metrics = "results/demo/triplet/metrics_test.json"
    assert (tmp_path / metrics).read_text() == (demo_run / metrics).read_text()
    with open(demo_run / "results/demo_table3.csv", newline="") as handle:
        local = next(row for row in csv.DictReader(handle) if row["row"] == ROW)
    with open(tmp_path / "results/slurm.csv", newline="") as handle:
        (through_slurm,) = csv.DictReader(handle)
    assert through_slurm == local
