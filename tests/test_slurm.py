"""The demo DAG through profiles/slurm on a real single-node SLURM cluster.

Skipped where SLURM cannot start (not installed, not root), except when
SUPPORTSET_REQUIRE_SLURM=1 (set by .ci/run, which installs it): there a skip would hide a
broken cluster path, so it fails instead.
"""

from __future__ import annotations

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
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(small_config(), sort_keys=False))
    result = snakemake(
        tmp_path,
        "--profile", str(REPO / "profiles/slurm"),
        "--slurm-init-seconds-before-status-checks", "2",
        "--set-resources", "extract_visual:gpu=0", "embed_text:gpu=0", "train:gpu=0",
        "--jobs", "4",
        timeout=HARD_TIMEOUT_S,
        **cluster,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-6000:]
    submitted = re.findall(r"Job \d+ has been submitted with SLURM jobid (\d+)", result.stderr)
    assert len(submitted) == 19, result.stderr[-4000:]  # every job but the `all` target
    local = (demo_run / "results/demo_table3.csv").read_text()
    assert (tmp_path / "results/demo_table3.csv").read_text() == local
