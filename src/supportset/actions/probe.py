"""The action-recognition linear probe of Table 11 (appendix 6.6), one fold at a time.

"We extract a feature per second per video by concatenating the features from each model
(2560-D), and obtain an average representation per video using either average pooling
(2560-D) or our proposed transformer pooling head (1024-D) pre-trained on HT100M using
cross-captioning objective. We then train a linear classifier for 1500 epochs for HMDB-51
(500 for UCF-101) on these features using Adam optimizer with learning rate of 1e-4 and
weight decay 1e-4 with early stopping. We also drop the learning rate by 10 at epochs 200,
400 for UCF-101 and 1000, 1200 for HMDB-51."

A fold's manifest (prepared with one of the adapter's `probe_folds`) gives each video one
caption, its class in words. Videos are pooled into one vector each: the mean of their
per-second features ("average") or c_v of a trained, frozen SupportSetModel ("head"),
both over the same first `max_video_seconds`. The classifier trains on the train split;
after every epoch its top-1 on the fold's held-out val split (never the test split)
decides which epoch's weights are kept, and only those are scored on the test split.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from supportset.data.manifest import SPLITS, read_captions, read_videos
from supportset.features.bank import FeatureBank, pad_batch
from supportset.io import atomic_path
from supportset.model.checkpoint import load_model
from supportset.model.inference import embed_sequences
from supportset.model.retrieval_model import SupportSetModel

log = logging.getLogger(__name__)
TRAIN, VAL, TEST = SPLITS
LR_DROP = 0.1  # "drop the learning rate by 10"


@dataclass
class ProbeConfig:
    """The probe's settings; the defaults are the paper's for HMDB-51. UCF-101's "500 for
    UCF-101" epochs and "epochs 200, 400 for UCF-101" milestones are dataset overrides in
    config.yaml."""

    lr: float = 1e-4  # Adam: "learning rate of 1e-4"
    weight_decay: float = 1e-4  # Adam: "weight decay 1e-4" (L2 added to the gradient)
    epochs: int = 1500  # "1500 epochs for HMDB-51 (500 for UCF-101)"
    # the learning rate is divided by 10 after each of these epochs: "drop the learning
    # rate by 10 at epochs 200, 400 for UCF-101 and 1000, 1200 for HMDB-51"
    milestones: tuple[int, ...] = (1000, 1200)
    batch_size: int = 256  # videos per step; the paper does not say (our choice)
    # epochs without a better val top-1 before stopping; the paper says only "with early
    # stopping": 0 runs the whole schedule and keeps the epoch of best val top-1
    patience: int = 0
    seed: int = 0  # of the classifier's initial weights and the order of the mini-batches
    max_video_seconds: float = 32.0  # both poolings see each video's first seconds only

    def __post_init__(self) -> None:
        self.milestones = tuple(int(epoch) for epoch in self.milestones)  # YAML gives lists
        if self.epochs < 1 or self.batch_size < 1 or self.patience < 0:
            raise ValueError(
                f"probe epochs ({self.epochs}) and batch_size ({self.batch_size}) must be "
                f"at least 1, patience ({self.patience}) at least 0"
            )


@dataclass
class ProbeData:
    """Pooled videos and their classes, per split ("train", "val", "test")."""

    features: dict[str, np.ndarray]  # split -> (N_split, D) float32
    labels: dict[str, np.ndarray]  # split -> (N_split,) int64 indices into `classes`
    classes: list[str]  # class names, sorted


@dataclass
class ProbeFit:
    """What training the classifier gave; accuracies are top-1 in percent."""

    test_top1: float  # of the kept epoch's weights
    val_top1: float  # of the kept epoch's weights
    best_epoch: int  # the kept epoch (from 1): best val top-1, then lowest val cross-entropy
    epochs_run: int  # fewer than ProbeConfig.epochs when patience stopped it
    history: list[dict]  # per epoch: epoch, lr (of that epoch), loss (mean CE), val_top1


def average_pool(sequences: Mapping[str, np.ndarray], ids: Sequence[str], steps: int) -> np.ndarray:
    """(N, D) float32: the mean of the first `steps` per-second features (T_i, D) of each
    video of `ids`, accumulated in float64."""
    means = [sequences[video_id][:steps].mean(axis=0, dtype=np.float64) for video_id in ids]
    return np.stack(means).astype(np.float32)


@torch.inference_mode()
def head_pool(
    model: SupportSetModel,
    sequences: Mapping[str, np.ndarray],
    ids: Sequence[str],
    steps: int,
    device: torch.device,
) -> np.ndarray:
    """(N, d) float32: c_v of the frozen `model` in eval mode (unit vectors) for each video
    of `ids`, from its first `steps` features (T_i, D_v), embedded as
    `model.inference.embed_split` embeds a split's videos."""
    model.eval()
    pad = partial(pad_batch, max_len=steps)
    return embed_sequences(model.embed_videos, sequences, list(ids), pad, device, steps)


def encode_labels(names: Mapping[str, Sequence[str]]) -> tuple[list[str], dict[str, np.ndarray]]:
    """Class names (sorted) of the train split, and split -> (N,) int64 labels of the class
    name of each video. A class of another split without a training video is a ValueError:
    the classifier could never predict it."""
    classes = sorted(set(names[TRAIN]))
    index = {name: position for position, name in enumerate(classes)}
    for split, split_names in names.items():
        unseen = sorted(set(split_names) - set(index))
        if unseen:
            raise ValueError(
                f"class(es) {', '.join(unseen[:10])} of the {split} split have no training "
                "video, so the linear classifier could never predict them"
            )
    labels = {
        split: np.array([index[name] for name in split_names], np.int64)
        for split, split_names in names.items()
    }
    return classes, labels


def train_probe(data: ProbeData, config: ProbeConfig, device: torch.device) -> ProbeFit:
    """Train nn.Linear(D, C) on the train split with Adam and cross-entropy, the learning
    rate dropped by 10 after each milestone epoch; keep the weights of the epoch with the
    best val top-1 (on ties the lower val cross-entropy: a small val split reaches 100%
    long before training is done) and score them on the test split, which nothing before
    reads. Deterministic for a `config.seed` on one device."""
    x = {split: torch.from_numpy(data.features[split]).to(device) for split in SPLITS}
    y = {split: torch.from_numpy(data.labels[split]).to(device) for split in SPLITS}
    classifier = _classifier(x[TRAIN].shape[1], len(data.classes), config.seed).to(device)
    optimizer = torch.optim.Adam(
        classifier.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(config.milestones), LR_DROP)
    order = torch.Generator().manual_seed(config.seed)
    best, best_epoch, best_state, history = (-1.0, 0.0), 0, {}, []
    for epoch in range(1, config.epochs + 1):
        lr = optimizer.param_groups[0]["lr"]
        loss = _train_epoch(classifier, optimizer, x[TRAIN], y[TRAIN], config.batch_size, order)
        schedule.step()
        val_top1, val_loss = _top1_and_loss(classifier, x[VAL], y[VAL])
        history.append(
            {"epoch": epoch, "lr": lr, "loss": loss, "val_top1": val_top1, "val_loss": val_loss}
        )
        if (val_top1, -val_loss) > best:
            best, best_epoch = (val_top1, -val_loss), epoch
            best_state = {name: value.clone() for name, value in classifier.state_dict().items()}
        elif config.patience and epoch - best_epoch >= config.patience:
            break
    classifier.load_state_dict(best_state)
    return ProbeFit(top1(classifier, x[TEST], y[TEST]), best[0], best_epoch, epoch, history)


@torch.no_grad()
def _top1_and_loss(
    classifier: nn.Module, features: torch.Tensor, labels: torch.Tensor
) -> tuple[float, float]:
    """Top-1 (percent) and mean cross-entropy of (N, D) `features` against their labels
    (N,), from one forward pass."""
    logits = classifier(features)
    return _percent_right(logits, labels), functional.cross_entropy(logits, labels).item()


@torch.no_grad()
def top1(classifier: nn.Module, features: torch.Tensor, labels: torch.Tensor) -> float:
    """Percent of the (N, D) `features` whose highest logit is their label (N,)."""
    return _percent_right(classifier(features), labels)


def _percent_right(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return 100.0 * (logits.argmax(dim=1) == labels).double().mean().item()


def _classifier(dim: int, classes: int, seed: int) -> nn.Linear:
    """nn.Linear(dim, classes) with PyTorch's default initialisation drawn from `seed`,
    leaving the global random state as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Linear(dim, classes)


def _train_epoch(
    classifier: nn.Module,
    optimizer: torch.optim.Optimizer,
    features: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    order: torch.Generator,
) -> float:
    """One pass over (N, D) `features` in mini-batches shuffled by `order`; the mean
    cross-entropy of the pass."""
    permutation = torch.randperm(len(labels), generator=order).to(features.device)
    total = 0.0
    for start in range(0, len(labels), batch_size):
        batch = permutation[start : start + batch_size]
        loss = functional.cross_entropy(classifier(features[batch]), labels[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item() * len(batch)
    return total / len(labels)


def read_fold(
    videos_path: str | Path, captions_path: str | Path
) -> dict[str, list[tuple[str, str]]]:
    """Split -> [(video_id, class name)] of a fold's manifest, in manifest order: each video
    must have exactly one caption, its class in words."""
    captions_of: dict[str, list[str]] = {}
    for caption in read_captions(captions_path):
        captions_of.setdefault(caption["video_id"], []).append(caption["text"])
    fold: dict[str, list[tuple[str, str]]] = {split: [] for split in SPLITS}
    for video in read_videos(videos_path):
        texts = captions_of.get(video["video_id"], [])
        if len(texts) != 1:
            raise ValueError(
                f"{captions_path}: video {video['video_id']} has {len(texts)} captions, not "
                "one class name: prepare the fold with a split choice of the adapter's "
                "probe_folds"
            )
        fold[video["split"]].append((video["video_id"], texts[0]))
    return fold


def probe_fold(
    videos_path: str | Path,
    captions_path: str | Path,
    visual_paths: Sequence[str | Path],
    model_path: str | Path | None,
    config: ProbeConfig,
    device: torch.device,
) -> dict:
    """Top-1 of a linear classifier on one fold: the fold's manifest (videos.parquet,
    captions.parquet), the visual shards of its videos, and `model_path` a trained model.pt
    whose head pools the videos, or None for average pooling. Videos without features
    (rejected at extraction) are left out, listed under "missing" and logged. Returns the
    JSON-able result (accuracies in percent)."""
    fold = read_fold(videos_path, captions_path)
    bank = FeatureBank.load(visual_paths, [])
    missing = [v for split in SPLITS for v, _ in fold[split] if v not in bank.videos]
    if missing:
        log.warning(
            "%d video(s) of %s have no features (rejected at extraction) and are left out: %s",
            len(missing), videos_path, ", ".join(missing[:10]),
        )  # fmt: skip
    kept = {split: [row for row in fold[split] if row[0] in bank.videos] for split in SPLITS}
    empty = [split for split in SPLITS if not kept[split]]
    if empty:
        raise ValueError(f"{videos_path}: no video with features in split(s) {', '.join(empty)}")
    classes, labels = encode_labels({split: [name for _, name in kept[split]] for split in SPLITS})
    ids = {split: [video_id for video_id, _ in kept[split]] for split in SPLITS}
    features = _pool(bank, ids, model_path, config, device)
    fit = train_probe(ProbeData(features, labels, classes), config, device)
    log.info(
        "kept epoch %d of %d (val top-1 %.1f%%): test top-1 %.1f%% over %d classes",
        fit.best_epoch, fit.epochs_run, fit.val_top1, fit.test_top1, len(classes),
    )  # fmt: skip
    return {
        "pooling": "average" if model_path is None else "head",
        "model": None if model_path is None else str(model_path),
        "dim": int(features[TRAIN].shape[1]),
        "top1": fit.test_top1,
        "chance": 100.0 / len(classes),
        "best_epoch": fit.best_epoch,
        "epochs_run": fit.epochs_run,
        "val_top1": fit.val_top1,
        **{f"n_{split}": len(ids[split]) for split in SPLITS},
        "classes": len(classes),
        "settings": asdict(config),
        "missing": missing,
    }


def _pool(
    bank: FeatureBank,
    ids: dict[str, list[str]],
    model_path: str | Path | None,
    config: ProbeConfig,
    device: torch.device,
) -> dict[str, np.ndarray]:
    """Split -> (N, D) pooled features: averages, or the head of the model at `model_path`
    over the part of the features it was trained on (`model.visual_features`)."""
    steps = bank.steps(config.max_video_seconds)
    if model_path is None:
        return {split: average_pool(bank.videos, ids[split], steps) for split in SPLITS}
    model = load_model(model_path, device)
    part = bank.visual_part(model.config.visual_features)
    if part.video_dim != model.video_dim:
        raise ValueError(
            f"model {model_path} takes {model.video_dim}-dim visual features "
            f"(model.visual_features '{model.config.visual_features}'), but the visual "
            f"shards give {part.video_dim}"
        )
    return {split: head_pool(model, part.videos, ids[split], steps, device) for split in SPLITS}


def write_probe_json(result: dict, path: str | os.PathLike[str]) -> None:
    """Write a `probe_fold` result as JSON, atomically."""
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
