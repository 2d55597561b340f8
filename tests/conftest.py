"""Shared fixtures: a small generated corpus and its manifest, written by the tests."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import yaml

from supportset.data.demo import make_demo_corpus
from supportset.data.prepare import prepare

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port on localhost that nothing listens on (for torch.distributed's rendezvous)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 12-video demo corpus of 3-4 s videos."""
    root = tmp_path_factory.mktemp("corpus")
    make_demo_corpus(root, num_videos=12, seed=3, min_seconds=3.0, max_seconds=4.0)
    return root


@pytest.fixture(scope="session")
def manifest(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder with videos.parquet and captions.parquet of the small corpus."""
    out = tmp_path_factory.mktemp("manifest")
    prepare("demo", corpus, out)
    return out


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder where the small demo DAG ran locally (results/, resources/)."""
    from tests.workflow_runs import small_config, snakemake

    workdir = tmp_path_factory.mktemp("workflow")
    (workdir / "config.yaml").write_text(yaml.safe_dump(small_config(), sort_keys=False))
    result = snakemake(workdir)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return workdir
