"""Faults at scale: a shard job killed half-way leaves no shard, and a rerun after failed
shard jobs redoes only those."""

from __future__ import annotations

import multiprocessing
import os
import re
import shutil
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from supportset.features.store import ShardWriter, read_sequences, visual_schema
from tests.workflow_runs import job_counts, small_config, snakemake

ROWS_BEFORE_KILL = 7  # 2 rows a group: 3 groups (Parquet) or appends (HDF5) when it dies


def write_shard(path: Path, rows: int, kill_after: int | None = None) -> None:
    """A visual shard of `rows` videos in 2-row groups; with `kill_after` the process
    SIGKILLs itself after writing that many rows."""
    with ShardWriter(path, visual_schema(4, "float32"), {"stage": "test"}, rows_per_group=2) as w:
        for index in range(rows):
            if index == kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
            w.write((f"v{index}",), (np.arange(3, dtype=np.float32), np.ones((3, 4), np.float32)))


@pytest.mark.parametrize("suffix", ["parquet", "h5"])
def test_a_shard_job_killed_half_way_leaves_no_shard(tmp_path: Path, suffix: str):
    """What is left is the writer's temporary file, hidden and named after the shard
    (.00000.parquet.XXXX.tmp): no shard pattern matches it, and the rerun's writer removes
    it before it writes the shard under a new temporary name."""
    neighbour, shard = tmp_path / f"00001.{suffix}", tmp_path / f"00000.{suffix}"
    write_shard(neighbour, rows=3)  # another job's shard (and the writer's imports, warm)
    child = multiprocessing.get_context("fork").Process(
        target=write_shard, args=(shard, 20, ROWS_BEFORE_KILL)
    )
    child.start()
    child.join(timeout=60)
    assert child.exitcode == -signal.SIGKILL
    assert not shard.exists()
    (leftover,) = set(tmp_path.iterdir()) - {neighbour}
    assert leftover.name.startswith(f".{shard.name}.") and leftover.name.endswith(".tmp")
    assert leftover.stat().st_size > 0  # half-written
    assert sorted(tmp_path.glob(f"[0-9]*.{suffix}")) == [neighbour]

    write_shard(shard, rows=20)  # the rerun
    assert len(read_sequences([shard], "video_id", "features")) == 20
    assert sorted(tmp_path.iterdir()) == sorted([shard, neighbour])


TARGET = "results/demo/demo_pretrain/model.pt"  # the demo's pre-training
# one of five text shard jobs fails (36 s on 2 cores); ten shards, a tenth failing, take
# ~15 s more: each embed-text process spends ~6 CPU seconds importing torch and T5
TEXT_SHARDS, FAILING_SHARD = 5, 3
UPSTREAM = (  # what the text shards and training read, copied from the demo run
    "resources", "results/demo/manifest", "results/demo/text_model", "results/demo/features/visual",
)  # fmt: skip


def shard_outputs(output: str, rule: str) -> list[str]:
    """The first output (the shard) of every job of `rule` that Snakemake printed, sorted."""
    parts = re.split(r"^(?:local)?rule (\w+):$", output, flags=re.M)
    bodies = [body for name, body in zip(parts[1::2], parts[2::2], strict=True) if name == rule]
    return sorted({re.search(r"^\s+output: ([^,\n]+)", body, re.M).group(1) for body in bodies})


def failing_supportset(folder: Path) -> str:
    """A PATH whose `supportset` SIGKILLs itself when asked to embed text shard
    FAILING_SHARD and is the real command otherwise."""
    real = Path(sys.executable).parent / "supportset"
    folder.mkdir()
    (folder / "supportset").write_text(
        "#!/bin/sh\n"
        f'case " $* " in *" embed-text "*" --shard {FAILING_SHARD} "*) kill -KILL $$ ;; esac\n'
        f'exec {real} "$@"\n'
    )
    (folder / "supportset").chmod(0o755)
    return os.pathsep.join([str(folder), str(real.parent), os.environ["PATH"]])


def modification_times(workdir: Path) -> dict[str, int]:
    """Modification time of every file the demo's jobs wrote (not their logs)."""
    return {
        str(path): path.stat().st_mtime_ns
        for path in (workdir / "results/demo").rglob("*")
        if path.is_file()
    }


@pytest.mark.e2e
def test_a_rerun_after_failed_shard_jobs_redoes_only_those(demo_run: Path, tmp_path: Path):
    """Pre-training on the demo's corpus, manifest, tiny T5 and visual shards (copied from
    the demo run) with 5 text shards, one of whose jobs is killed: with --keep-going the
    other four are written. The rerun runs that one job and nothing upstream, and its writer
    removes the killed writer's leftover temporary file (training, which follows, is left
    out of the rerun to keep the test short: the first run's plan shows it)."""
    workdir = tmp_path / "run"
    for name in UPSTREAM:
        shutil.copytree(demo_run / name, workdir / name)
    config = small_config()
    config["datasets"]["demo"]["overrides"]["text"]["shards"] = TEXT_SHARDS
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    first = snakemake(
        workdir, TARGET, "--keep-going", "--set-threads", "embed_text=1",
        PATH=failing_supportset(tmp_path / "bin"),
    )  # fmt: skip
    output = first.stdout + first.stderr
    assert first.returncode != 0
    assert job_counts(output) == {"embed_text": TEXT_SHARDS, "train": 1}, output[-3000:]
    shards = shard_outputs(output, "embed_text")
    failed = shards[FAILING_SHARD]
    assert len(shards) == TEXT_SHARDS and f"/{FAILING_SHARD:05d}." in failed
    assert [shard for shard in shards if not (workdir / shard).exists()] == [failed]
    assert not (workdir / TARGET).exists()
    leftover = (workdir / failed).with_name(f".{Path(failed).name}.x1y2z3.tmp")
    leftover.write_bytes((workdir / shards[0]).read_bytes()[:100])  # as a killed writer leaves
    before = modification_times(workdir)

    rerun = snakemake(workdir, TARGET, "--omit-from", "train")
    output = rerun.stdout + rerun.stderr
    assert rerun.returncode == 0, output[-3000:]
    assert job_counts(output) == {"embed_text": 1}
    after = modification_times(workdir)
    assert not leftover.exists()  # removed by the rerun's writer
    kept = {path: time for path, time in before.items() if path != str(leftover)}
    assert [path for path, time in kept.items() if after.get(path) != time] == []
    new = sorted(Path(path).name for path in set(after) - set(before))
    assert new == [f"{FAILING_SHARD:05d}.parquet", f"{FAILING_SHARD:05d}.rejects.parquet"]
