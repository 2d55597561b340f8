"""`train` with the feature bank, splits and output paths as separate arguments, as the
training tests call it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from supportset.features.bank import FeatureBank, SplitData
from supportset.model.retrieval_model import ModelConfig
from supportset.train import loop
from supportset.train.config import TrainConfig


def train(
    bank: FeatureBank,
    train_split: SplitData,
    val_split: SplitData | None,
    model_config: ModelConfig,
    config: TrainConfig,
    model_out: str | Path,
    log_out: str | Path,
    text_model: str | None = None,
    input_files: Sequence[str | Path] = (),
    workers: int = 0,
) -> dict:
    """loop.train on these inputs; returns the kept epoch's summary."""
    return loop.train(
        loop.TrainData(bank, train_split, val_split),
        model_config,
        config,
        loop.TrainOutputs(Path(model_out), Path(log_out)),
        text_model,
        input_files,
        workers,
    )
