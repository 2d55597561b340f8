"""Resumable training: after every epoch the whole training state is written, atomically,
to one file next to the model (training_state.pt), so that a run killed at any point and
started again continues from the last finished epoch and reaches the same result as an
uninterrupted one. Being one file, a kill leaves the state of the previous epoch or of
this one, never parts of both.

The state holds the weights of the model and the decoder, the optimizer, every random
generator (NumPy order and caption sampling, support-set subsets, and each rank's torch
CPU and CUDA generators, gathered to rank 0), the log so far and the best epoch. It is
resumed only when the settings and the input files (paths, sizes and modification times)
are those it was made with, and when it has not gone past the requested epochs (raising
`epochs` extends a run); otherwise a log line says why and training starts afresh.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from supportset.distributed import gather_objects, rank_and_size, wait_for_all_ranks
from supportset.io import atomic_path

log = logging.getLogger(__name__)

STATE_FILE = "training_state.pt"
FORMAT = 3  # layout of the state file (3: the kept decoder); another layout is not resumed


@dataclass
class Progress:
    """Where training stands after `epoch` finished epochs."""

    epoch: int = 0
    step: int = 0
    rows: list[dict] = field(default_factory=list)
    best: dict = field(default_factory=lambda: {"rsum": -1.0})
    best_state: dict | None = None  # {model, decoder} weights of the kept epoch


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
    path: Path, key: str, progress: Progress, objective, optimizer, order_rng: np.random.Generator
) -> None:
    """Write the state after an epoch. Every rank must call it: its torch generators are
    gathered, rank 0 writes the file, and no rank returns before the file is written (so
    that no rank can start again before it and read the state of the epoch before)."""
    generators = gather_objects(_torch_generators())
    if rank_and_size()[0] == 0:
        _write_state(path, key, progress, objective, optimizer, order_rng, generators)
    wait_for_all_ranks()


def _write_state(
    path: Path, key: str, progress: Progress, objective, optimizer, order_rng, generators: list
) -> None:
    """The whole state, one file, written atomically (see `save_state`)."""
    state = {
        "format": FORMAT,
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
        "generators": generators,  # one {"torch", "cuda"} per rank
    }
    with atomic_path(path) as temporary:
        torch.save(state, temporary)


def load_state(
    path: Path, key: str, epochs: int, objective, optimizer, order_rng: np.random.Generator
) -> Progress:
    """Restore a saved state that matches this run into the given objects and return its
    progress; a fresh Progress when there is none or it does not match (logged)."""
    if not path.is_file():
        return Progress()
    state = _matching_state(path, key, epochs)
    if state is None:
        return Progress()
    objective.load_state_dict(state["objective"])
    optimizer.load_state_dict(state["optimizer"])
    order_rng.bit_generator.state = json.loads(state["numpy_rng"])
    objective.generator.set_state(state["support_rng"])
    generators = state["generators"][rank_and_size()[0]]
    torch.set_rng_state(generators["torch"])
    if generators["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(generators["cuda"])
    return Progress(
        state["epoch"], state["step"], json.loads(state["rows"]), json.loads(state["best"]),
        state["best_state"],
    )  # fmt: skip


def _torch_generators() -> dict:
    """This rank's torch CPU generator state and its CUDA device's (None without CUDA)."""
    cuda = torch.cuda.get_rng_state() if torch.cuda.is_available() else None
    return {"torch": torch.get_rng_state(), "cuda": cuda}


def _matching_state(path: Path, key: str, epochs: int) -> dict | None:
    """The state saved at `path` when this run can continue it; else None, logging why."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # e.g. a file damaged on disk: never resumed, never fatal
        state, reason = None, f"it cannot be read ({type(error).__name__})"
    else:
        reason = _mismatch(state, key, epochs)
    if reason:
        log.warning("training starts afresh: the saved state %s is not used, as %s", path, reason)
        return None
    return state


def _mismatch(state: object, key: str, epochs: int) -> str:
    """Why `state` cannot be continued by the run of `key` and `epochs` ('' if it can)."""
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        return "it was written by another version of supportset"
    if state["key"] != key:
        return _changes(json.loads(state["key"]), json.loads(key)) or "its key differs"
    if state["epoch"] > epochs:
        return f"it has trained {state['epoch']} epochs, more than the {epochs} asked for"
    return ""


def _changes(saved: dict, current: dict) -> str:
    """The settings and input files that differ between two resume keys, in words."""
    names = saved["settings"].keys() | current["settings"].keys()
    settings = sorted(n for n in names if saved["settings"].get(n) != current["settings"].get(n))
    inputs = {tuple(i) for i in saved["inputs"]} ^ {tuple(i) for i in current["inputs"]}
    paths = sorted({path for path, _, _ in inputs})
    changes = [f"settings changed ({', '.join(settings)})"] if settings else []
    if paths:
        changes.append(f"{len(paths)} input file(s) changed (e.g. {paths[0]})")
    return " and ".join(changes)
