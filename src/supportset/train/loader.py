"""Batches read from the shards by worker processes, in the order the training loop plans.

The loop decides every batch (its videos and captions, and the seeds of its crop draws,
from its seeded RNG) in the main process; workers only read and pad them. So the
batches, and the run, are the same for any number of workers, and memory is bounded by
the workers' row-group caches and `prefetch` batches each, not by the size of the feature
store.

The loader draws its workers' base seed from a generator of its own: torch's DataLoader
takes it from the global generator (which dropout uses) whenever an iterator is made, and
that is every epoch without workers but only once with persistent ones, and again after a
resume. Drawing from the global generator would make the dropout masks, and the result,
depend on the number of workers and on whether the run was resumed.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset

from supportset.features.bank import FeatureBank
from supportset.train.objective import Batch
from supportset.train.plan import BatchKey, CroppedKey

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


@dataclass(frozen=True)
class ReadFailure:
    """The error a reader met instead of a batch, carried to the main process and raised
    there as itself: raised in a worker, torch would wrap its message in the worker's whole
    traceback (a one-line error, e.g. a corrupt shard's, would read as a crash)."""

    error: Exception


class BatchReader(Dataset):
    """Maps a batch key to its `Batch` (CPU tensors), reading the shards on demand."""

    def __init__(self, bank: FeatureBank, max_video_seconds: float, text_states: bool) -> None:
        self.bank = bank
        self.max_video_seconds = max_video_seconds
        self.text_states = text_states

    def __getitem__(self, key: BatchKey | CroppedKey) -> Batch | ReadFailure:
        try:
            return Batch.read(self.bank, key, self.max_video_seconds, self.text_states)
        except Exception as error:  # raised by BatchLoader, in the main process
            return ReadFailure(error)


class BatchLoader:
    """The batches of a DataLoader over a BatchReader, in order; a batch that could not be
    read raises its reader's error here."""

    def __init__(self, loader: DataLoader) -> None:
        self.loader = loader

    def __iter__(self) -> Iterator[Batch]:
        for batch in self.loader:
            if isinstance(batch, ReadFailure):
                raise batch.error
            yield batch

    def __len__(self) -> int:
        return len(self.loader)


class EpochPlan:
    """The batch keys of the current epoch; the loop sets `keys` before each epoch."""

    def __init__(self) -> None:
        self.keys: list[BatchKey | CroppedKey] = []

    def __iter__(self) -> Iterator[BatchKey | CroppedKey]:
        return iter(self.keys)

    def __len__(self) -> int:
        return len(self.keys)


def return_freed_batches_to_the_system(worker_id: int = 0) -> None:
    """Serve every allocation above 1 MiB with its own mmap in this process (glibc).

    A worker allocates and frees a batch-sized buffer (tens of MB) per step. glibc raises
    its mmap threshold after each such free (up to 32 MiB), so later buffers come from the
    heap, which is not given back: a worker then holds hundreds of MB more than it uses.
    A fixed threshold keeps it at what it uses. Elsewhere than glibc this does nothing.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.mallopt(M_MMAP_THRESHOLD, 1 << 20)


def batch_loader(
    bank: FeatureBank,
    plan: EpochPlan,
    max_video_seconds: float,
    workers: int,
    prefetch: int = 2,
    text_states: bool = True,
) -> BatchLoader:
    """A loader yielding the plan's batches in order; `workers` 0 reads in this process.
    Workers persist across epochs (they are forked once, with the bank's file index).
    Iterating it never draws from torch's global random generator. Without `text_states`
    the cached T5 states are not read (see Batch.read)."""
    loader = DataLoader(
        BatchReader(bank, max_video_seconds, text_states),
        batch_size=None,
        sampler=plan,
        num_workers=workers,
        prefetch_factor=prefetch if workers else None,
        persistent_workers=workers > 0,
        worker_init_fn=return_freed_batches_to_the_system,
        pin_memory=torch.cuda.is_available(),
        generator=torch.Generator().manual_seed(0),  # reading draws nothing at random
    )
    return BatchLoader(loader)
