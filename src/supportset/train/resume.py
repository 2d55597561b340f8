"""Resumable training: after every epoch the whole training state is written atomically
next to the model (training_state.pt, plus one small RNG file per rank), so that a killed
run started again continues from the last finished epoch and reaches the same result as
an uninterrupted one.

The state holds the weights of the model and the decoder, the optimizer, every random
generator (NumPy order and caption sampling, support-set subsets, and each rank's torch
CPU and CUDA generators), the log so far and the best epoch. It is resumed only when the
settings and the input files (paths, sizes and modification times) are those it was made
with, and when it has not gone past the requested epochs; raising `epochs` extends a run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from supportset.io import atomic_path

STATE_FILE = "training_state.pt"


@dataclass
class Progress:
    """Where training stands after `epoch` finished epochs."""

    epoch: int = 0
    step: int = 0
    rows: list[dict] = field(default_factory=list)
    best: dict = field(default_factory=lambda: {"rsum": -1.0})
    best_state: dict | None = None  # model weights of the best epoch


def resume_key(settings: dict, input_files: Iterable[str | Path]) -> str:
    """What must match for a state to be resumed: every setting but the epoch count, and
    each input file's path, size and modification time (or a folder's files')."""
    inputs = []
    for path in sorted(str(path) for path in input_files):
        files = sorted(Path(path).rglob("*")) if Path(path).is_dir() else [Path(path)]
        for file in files:
            if file.is_file():
                stat = file.stat()
                inputs.append([str(file), stat.st_size, stat.st_mtime_ns])
    settings = {key: value for key, value in settings.items() if key != "epochs"}
    return json.dumps({"settings": settings, "inputs": inputs}, sort_keys=True)


def state_path(model_out: str | Path) -> Path:
    return Path(model_out).with_name(STATE_FILE)


def save_state(
    path: Path, key: str, progress: Progress, objective, optimizer, order_rng, rank: int
) -> None:
    """Every rank writes its torch generators; rank 0 also writes everything else."""
    generators = {
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    with atomic_path(_rank_file(path, rank)) as temporary:
        torch.save(generators, temporary)
    if rank != 0:
        return
    state = {
        "key": key,
        "epoch": progress.epoch,
        "step": progress.step,
        "rows": json.dumps(progress.rows),
        "best": json.dumps(progress.best),
        "best_state": progress.best_state,
        "objective": objective.state_dict(),
        "optimizer": optimizer.state_dict(),
        "numpy_rng": json.dumps(order_rng.bit_generator.state),
        "support_rng": objective.generator.get_state(),
    }
    with atomic_path(path) as temporary:
        torch.save(state, temporary)


def load_state(
    path: Path, key: str, epochs: int, objective, optimizer, order_rng: np.random.Generator,
    rank: int,
) -> Progress:  # fmt: skip
    """Restore a matching saved state into the given objects; a fresh Progress otherwise."""
    if not path.is_file() or not _rank_file(path, rank).is_file():
        return Progress()
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state["key"] != key or state["epoch"] > epochs:
        return Progress()
    generators = torch.load(_rank_file(path, rank), map_location="cpu", weights_only=True)
    objective.load_state_dict(state["objective"])
    optimizer.load_state_dict(state["optimizer"])
    order_rng.bit_generator.state = json.loads(state["numpy_rng"])
    objective.generator.set_state(state["support_rng"])
    torch.set_rng_state(generators["torch_rng"])
    if generators["cuda_rng"]:
        torch.cuda.set_rng_state_all(generators["cuda_rng"])
    return Progress(
        state["epoch"], state["step"], json.loads(state["rows"]), json.loads(state["best"]),
        state["best_state"],
    )  # fmt: skip


def _rank_file(path: Path, rank: int) -> Path:
    return path.with_name(f"{path.stem}.rank{rank}{os.extsep}pt")
