"""Resumable training: after every epoch the whole training state is written atomically
next to the model (training_state.pt), so that a killed run started again continues from
the last finished epoch and reaches the same result as an uninterrupted one.

The state holds the weights of the model and the decoder, the optimizer, every random
generator (NumPy order and caption sampling, torch CPU and CUDA, support-set subsets), the
log so far and the best epoch. It is used only when the settings match, except `epochs`,
so that a finished run can also be extended.
"""

from __future__ import annotations

import json
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


def resume_key(settings: dict) -> str:
    """What must match for a state to be resumed: every setting but the epoch count."""
    return json.dumps(
        {key: value for key, value in settings.items() if key != "epochs"}, sort_keys=True
    )


def state_path(model_out: str | Path) -> Path:
    return Path(model_out).with_name(STATE_FILE)


def save_state(path: Path, key: str, progress: Progress, objective, optimizer, order_rng) -> None:
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
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "support_rng": objective.generator.get_state(),
    }
    with atomic_path(path) as temporary:
        torch.save(state, temporary)


def load_state(
    path: Path, key: str, objective, optimizer, order_rng: np.random.Generator
) -> Progress:
    """Restore a matching saved state into the given objects; a fresh Progress otherwise."""
    if not path.is_file():
        return Progress()
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state["key"] != key:
        return Progress()
    objective.load_state_dict(state["objective"])
    optimizer.load_state_dict(state["optimizer"])
    order_rng.bit_generator.state = json.loads(state["numpy_rng"])
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"]:
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    objective.generator.set_state(state["support_rng"])
    return Progress(
        state["epoch"], state["step"], json.loads(state["rows"]), json.loads(state["best"]),
        state["best_state"],
    )  # fmt: skip
