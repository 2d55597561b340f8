"""A killed training run started again reaches the same log and weights as an uninterrupted
one: in process, with 0 or 2 reader workers, with two gloo ranks, killed while the state
is written, and through the `train` rule's own command killed with SIGKILL. A saved state
that does not fit the run is set aside with a log line saying why."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as multiprocessing

from supportset.cli import main
from supportset.data.manifest import write_manifest
from supportset.train.config import TrainConfig
from tests.conftest import free_port
from tests.test_train import (
    CROSS_TRAINING,
    DROPOUT_MODEL,
    MODEL,
    TRAINING,
    assert_same_weights,
    log_without_seconds,
    save_tiny_t5,
    synthetic_bank,
    write_bank_shards,
)
from tests.train_runs import train


def assert_same_run(first: Path, second: Path) -> None:
    """Two run folders hold the same train_log.csv (but for seconds) and model.pt."""
    assert log_without_seconds(first / "l.csv") == log_without_seconds(second / "l.csv")
    assert_same_weights(first / "m.pt", second / "m.pt")


@pytest.fixture(scope="module")
def tiny_t5(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One tiny T5 (random weights) shared by every run compared here."""
    return save_tiny_t5(tmp_path_factory.mktemp("t5") / "t5")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory, tiny_t5: str) -> Path:
    """A run of 3 epochs with dropout and cross-captioning, 2 reader workers."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    bank, train_split, val_split = synthetic_bank()
    train(bank, train_split, val_split, DROPOUT_MODEL, CROSS_TRAINING, folder / "m.pt",
          folder / "l.csv", tiny_t5, workers=2)  # fmt: skip
    return folder


@pytest.mark.parametrize("workers_after", [2, 0])
def test_resumed_run_reaches_the_same_result_as_an_uninterrupted_one(
    tmp_path, tiny_t5, uninterrupted, workers_after
):
    """Stopped after epoch 1 with 2 workers, started again with 2 (or 0)."""
    bank, train_split, val_split = synthetic_bank()
    first = TrainConfig(**{**CROSS_TRAINING.__dict__, "epochs": 1})
    for config, workers in ((first, 2), (CROSS_TRAINING, workers_after)):
        train(bank, train_split, val_split, DROPOUT_MODEL, config, tmp_path / "m.pt",
              tmp_path / "l.csv", tiny_t5, workers=workers)  # fmt: skip
    assert_same_run(uninterrupted, tmp_path)


class Killed(BaseException):
    """Stands for SIGKILL: no `except Exception` stops it."""


def test_a_kill_while_the_state_is_written_resumes_the_epoch_before(
    tmp_path, tiny_t5, uninterrupted, monkeypatch
):
    """The process dies while writing epoch 2's state (after whatever it wrote first):
    started again, it continues from epoch 1 and ends as the uninterrupted run."""
    save = torch.save
    state_writes = []

    def dying_on_the_second_state(value, destination, *args, **kwargs):
        if Path(destination).name.startswith(".training_state.pt."):
            state_writes.append(destination)
            if len(state_writes) == 2:
                raise Killed("while writing epoch 2's state")
        return save(value, destination, *args, **kwargs)

    bank, train_split, val_split = synthetic_bank()
    run = (bank, train_split, val_split, DROPOUT_MODEL, CROSS_TRAINING, tmp_path / "m.pt",
           tmp_path / "l.csv", tiny_t5)  # fmt: skip
    monkeypatch.setattr(torch, "save", dying_on_the_second_state)
    with pytest.raises(Killed):
        train(*run, workers=2)
    monkeypatch.setattr(torch, "save", save)
    train(*run, workers=2)
    assert_same_run(uninterrupted, tmp_path)


def two_rank_runs(rank: int, port: int, folder: str) -> None:
    """Each rank: an uninterrupted run of 2 epochs, and one stopped after epoch 1 and
    started again. Dropout in the heads is what draws at random; the batches are read in
    the main process (workers are tested above)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.set_num_threads(1)
    try:
        bank, train_split, val_split = synthetic_bank()
        two = TrainConfig(**{**TRAINING.__dict__, "epochs": 2})
        one = TrainConfig(**{**two.__dict__, "epochs": 1})
        for name, config in (("whole", two), ("killed", one), ("killed", two)):
            out = Path(folder) / name
            out.mkdir(exist_ok=True)
            train(bank, train_split, val_split, DROPOUT_MODEL, config, out / "m.pt",
                  out / "l.csv", workers=0)  # fmt: skip
    finally:
        dist.destroy_process_group()


def test_two_ranks_resume_each_their_own_random_generators(tmp_path):
    """Dropout masks differ between ranks; a resumed 2-process run continues each rank's."""
    args = (free_port(), str(tmp_path))
    multiprocessing.spawn(two_rank_runs, args=args, nprocs=2, join=True)
    assert_same_run(tmp_path / "whole", tmp_path / "killed")


def test_a_state_that_does_not_fit_is_logged_and_training_starts_afresh(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="supportset.train")
    bank, train_split, val_split = synthetic_bank()
    shard = tmp_path / "shard.parquet"
    shard.write_bytes(b"first")
    two = TrainConfig(**{**TRAINING.__dict__, "epochs": 2})
    run = (bank, train_split, val_split, MODEL)
    out = (tmp_path / "m.pt", tmp_path / "l.csv")
    train(*run, two, *out, input_files=[shard])
    caplog.clear()
    train(*run, two, *out, input_files=[shard])
    assert "resuming after epoch 2" in caplog.text  # same inputs: the saved state is used
    state = tmp_path / "training_state.pt"
    saved = state.read_bytes()
    refusals = [  # (settings, what is done to the state or inputs, the reason logged)
        (TrainConfig(**{**two.__dict__, "epochs": 1}), None, "2 epochs, more than the 1 asked"),
        (TrainConfig(**{**two.__dict__, "lr": 1e-4}), None, "settings changed (lr)"),
        (two, lambda: state.write_bytes(b"damaged"), "it cannot be read"),
        (two, lambda: torch.save({"epoch": 2}, state), "another version of supportset"),
        (two, lambda: shard.write_bytes(b"second"), f"1 input file(s) changed (e.g. {shard})"),
    ]
    for config, change, reason in refusals:
        state.write_bytes(saved)  # the state of the 2 epochs above, each time
        if change:
            change()
        caplog.clear()
        train(*run, config, *out, input_files=[shard])
        assert "resuming" not in caplog.text
        assert f"training starts afresh: the saved state {state} is not used, as " in caplog.text
        assert reason in caplog.text
    (tmp_path / "fresh").mkdir()
    train(*run, two, tmp_path / "fresh/m.pt", tmp_path / "fresh/l.csv")
    assert log_without_seconds(tmp_path / "l.csv") == log_without_seconds(tmp_path / "fresh/l.csv")
    assert_same_weights(tmp_path / "m.pt", tmp_path / "fresh/m.pt")


def write_inputs(folder: Path) -> dict[str, list[str]]:
    """The synthetic corpus as the `train` rule's inputs: manifests and shards."""
    bank, train_split, val_split = synthetic_bank()
    write_bank_shards(folder / "shards", bank)
    videos, captions = [], []
    for split in (train_split, val_split):
        name = "train" if split is train_split else "val"
        videos += [{"video_id": v, "path": f"{v}.mp4", "split": name} for v in split.video_ids]
        captions += [
            {"caption_id": c, "video_id": v, "text": c, "split": name, "start": None, "end": None}
            for c, v in zip(split.caption_ids, split.caption_video_ids, strict=True)
        ]
    write_manifest(videos, captions, folder / "manifest")
    shards = folder / "shards"
    return {
        "--videos": [str(folder / "manifest/videos.parquet")],
        "--captions": [str(folder / "manifest/captions.parquet")],
        "--visual": [str(shards / "v0.parquet"), str(shards / "v1.h5")],
        "--text": [str(shards / "t.parquet")],
    }


def rule_command(inputs: dict[str, list[str]], t5: str, out: Path) -> list[str]:
    """The shell command of workflow/rules/train.smk with one GPU (or none): `supportset
    --threads 2 train ...`, with the reader workers at their default (2)."""
    model = json.dumps(asdict(DROPOUT_MODEL), sort_keys=True)
    training = json.dumps(asdict(CROSS_TRAINING), sort_keys=True)
    arguments = [argument for flag, values in inputs.items() for argument in (flag, *values)]
    return [
        "supportset", "--threads", "2", "train", *arguments, "--model-settings", model,
        "--training-settings", training, "--text-model", t5,
        "--out-model", str(out / "model.pt"), "--out-log", str(out / "train_log.csv"),
    ]  # fmt: skip


def start_command(command: list[str], log: Path) -> subprocess.Popen:
    """The command in a session of its own (it and its reader workers are one process
    group), stdout and stderr to `log`."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    with open(log, "w") as handle:
        return subprocess.Popen(
            command, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )


def finished(job: subprocess.Popen, log: Path) -> str:
    """The log of a job that ran to its end without error."""
    assert job.wait() == 0, log.read_text()[-3000:]
    return log.read_text()


def test_the_train_command_killed_and_run_again_ends_as_if_never_killed(tmp_path, tiny_t5):
    """SIGKILL to the command and its reader workers once epoch 1's state is on disk, then
    the same command again: the weights and the log are those of the command run without
    a kill (at the same time, in another folder)."""
    inputs = write_inputs(tmp_path)
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    jobs = []
    try:
        for folder in (whole, killed):
            folder.mkdir()
            jobs.append(start_command(rule_command(inputs, tiny_t5, folder), folder / "1.log"))
        deadline = time.monotonic() + 120
        while not (killed / "training_state.pt").exists() and jobs[1].poll() is None:
            assert time.monotonic() < deadline, "no training state after 120 s"
            time.sleep(0.01)
        assert jobs[1].poll() is None, (killed / "1.log").read_text()[-3000:]
        os.killpg(jobs[1].pid, signal.SIGKILL)
        assert jobs[1].wait() == -signal.SIGKILL
        assert not (killed / "model.pt").exists()  # killed before its end
        jobs.append(start_command(rule_command(inputs, tiny_t5, killed), killed / "2.log"))
        finished(jobs[0], whole / "1.log")
        assert re.search(r"resuming after epoch [12] ", finished(jobs[2], killed / "2.log"))
    finally:
        for job in jobs:
            if job.poll() is None:
                os.killpg(job.pid, signal.SIGKILL)
                job.wait()
    assert log_without_seconds(whole / "train_log.csv") == log_without_seconds(
        killed / "train_log.csv"
    )
    assert_same_weights(whole / "model.pt", killed / "model.pt")


def test_the_train_command_trains_on_train_and_val_keeping_the_last_epoch(tmp_path, caplog):
    """MSR-VTT's paper setting through the command: train_splits [train, val] and selection
    last train on all 64 videos (128 pairs: 48 train, 16 val), with no validation."""
    inputs = write_inputs(tmp_path)
    training = {
        **asdict(TRAINING),
        "epochs": 2,
        "train_splits": ["train", "val"],
        "selection": "last",
    }
    arguments = [argument for flag, values in inputs.items() for argument in (flag, *values)]
    with caplog.at_level(logging.INFO):
        status = main(
            ["train", *arguments, "--model-settings", json.dumps(asdict(MODEL)),
             "--training-settings", json.dumps(training), "--workers", "0",
             "--out-model", str(tmp_path / "m.pt"), "--out-log", str(tmp_path / "l.csv")]
        )  # fmt: skip
    assert status == 0
    assert "an epoch visits 128 pairs" in caplog.text
    assert "kept epoch 2 (last)" in caplog.text
    val_rows = [line for line in (tmp_path / "l.csv").read_text().splitlines() if ",val," in line]
    assert len(val_rows) == 2 and all(",,,," in row for row in val_rows)  # no metrics
