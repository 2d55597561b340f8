"""Training curves: a plot of train_log.csv, and TensorBoard scalars when it is installed."""

from __future__ import annotations

import csv
from pathlib import Path

from supportset.io import atomic_path


def plot_curves(
    log_csv: str | Path, out_png: str | Path, kept_epoch: int | None = None, selection: str = ""
) -> None:
    """Two panels: per-step losses (total, contrastive, captioning) and validation
    text-to-video R@1 / R@5 / R@10 per epoch; `kept_epoch`, the epoch model.pt holds, is
    marked on both (chosen by `selection`: val or last)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    with open(log_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    steps = [row for row in rows if row["kind"] == "train"]
    epochs = [row for row in rows if row["kind"] == "val" and row["rsum"]]  # validated
    figure, (losses, recalls) = pyplot.subplots(1, 2, figsize=(11, 4))
    for name in ("loss", "contrast", "caption"):
        losses.plot([int(r["step"]) for r in steps], [float(r[name]) for r in steps], label=name)
    losses.set(xlabel="step", ylabel="training loss", yscale="log")
    losses.legend()
    for k in (1, 5, 10):
        key = f"t2v_R@{k}"
        recalls.plot([int(r["epoch"]) for r in epochs], [float(r[key]) for r in epochs], label=key)
    recalls.set(xlabel="epoch", ylabel="validation recall (%)")
    if kept_epoch is not None:
        label = f"kept: epoch {kept_epoch} ({selection})"
        recalls.axvline(kept_epoch, color="black", linestyle="--", label=label)
        last_step = max((int(r["step"]) for r in rows if int(r["epoch"]) == kept_epoch), default=0)
        losses.axvline(last_step, color="black", linestyle="--", label=label)
        losses.legend()
    recalls.legend()
    figure.tight_layout()
    with atomic_path(out_png) as temporary:
        figure.savefig(temporary, format="png", dpi=100)
    pyplot.close(figure)


class TensorBoardScalars:
    """Writes scalars to TensorBoard under `folder` when enabled (rank 0) and tensorboard
    is installed; a no-op otherwise (the CSV log and the plot are always written)."""

    def __init__(self, folder: str | Path, enabled: bool = True) -> None:
        self.writer = None
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return
        self.writer = SummaryWriter(str(folder))

    def add(self, values: dict[str, float], step: int) -> None:
        if self.writer is not None:
            for name, value in values.items():
                self.writer.add_scalar(name, value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
