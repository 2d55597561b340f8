"""The `train` stage: pooling heads + hard-negative triplet loss, best epoch chosen on val.

Each epoch visits every training video once, in a seeded random order, paired with one of
its captions drawn at random (the usual protocol for multi-caption datasets). With
`clips`, the video is cut to that caption's segment (and K neighbouring segments form the
MIL-NCE bag), and validation retrieves every caption's clip. After each epoch the model is
scored on the validation split (text-to-video R@1 + R@5 + R@10); the checkpoint keeps the
best epoch's weights. The test split is never looked at here.
"""

from __future__ import annotations

import csv
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from supportset.distributed import rank_and_size, sum_gradients
from supportset.features.bank import FeatureBank, SplitData, clip_split
from supportset.features.text import load_t5_encoder
from supportset.io import atomic_path
from supportset.losses import contrastive_loss
from supportset.model.checkpoint import initialise_from, save_checkpoint
from supportset.model.decoder import load_caption_decoder
from supportset.model.inference import embed_split
from supportset.model.retrieval_model import ModelConfig, SupportSetModel
from supportset.retrieval.metrics import evaluate_embeddings
from supportset.torch_utils import pick_device, seed_everything
from supportset.train.curves import TensorBoardScalars, plot_curves
from supportset.train.loader import BatchKey, EpochPlan, batch_loader
from supportset.train.objective import Objective, clip_windows, sample_captions
from supportset.train.resume import Progress, load_state, resume_key, save_state, state_path

log = logging.getLogger(__name__)

LOG_COLUMNS = (
    "epoch",
    "step",
    "kind",
    "loss",
    "contrast",
    "caption",
    "lr",
    "t2v_R@1",
    "t2v_R@5",
    "t2v_R@10",
    "rsum",
    "seconds",
)


@dataclass
class TrainConfig:
    batch_size: int = 64  # video-caption pairs per step
    lr: float = 5e-5  # Adam learning rate
    grad_clip: float = 0.2  # gradient norm clipping
    epochs: int = 20  # passes over the training videos
    loss: str = "triplet"  # contrastive loss: triplet | infonce (Table 2e) | milnce
    captions_per_video: int = 1  # captions of each video in a batch (>1: MIL-NCE positives)
    margin: float = 0.2  # triplet margin alpha
    negatives: str = "hardest"  # triplet over the hardest negative, or the sum of all
    intra_modal: bool = False  # add same-modality negatives (Table 2e, inter+intra)
    nce_temperature: float = 0.05  # InfoNCE temperature
    max_video_seconds: int = 32  # seconds of each video kept (its first ones)
    clips: bool = False  # train on each caption's segment of its video (captions with times)
    seed: int = 0  # initialisation, order and caption sampling
    captioning: str = "cross"  # none | identity | full | hybrid | cross (support set)
    caption_weight: float = 10.0  # lambda of the captioning loss
    temperature: float = 0.1  # T of the support-set softmax
    support_set_size: int = 0  # members of each support set; 0 = the whole batch
    init_from: str = ""  # model.pt to start from (e.g. HowTo100M pre-training); "" = scratch


def train(
    bank: FeatureBank,
    train_split: SplitData,
    val_split: SplitData,
    model_config: ModelConfig,
    config: TrainConfig,
    model_out: str | Path,
    log_out: str | Path,
    text_model: str | None = None,
    input_files: Sequence[str | Path] = (),
    workers: int = 0,
) -> dict:
    """Train, write the best checkpoint and the log; return the best validation summary.

    `text_model` (a T5 name or folder) provides the caption decoder when captioning is on;
    `input_files` (the shards) decide, with the settings, whether a saved state resumes;
    `workers` processes read the batches (0: this process), which changes no result.
    """
    if config.captions_per_video > 1 and config.loss != "milnce":
        raise ValueError("training.captions_per_video above 1 needs training.loss milnce")
    for name, split in (("train", train_split), ("val", val_split)) if config.clips else ():
        untimed = len(split.caption_ids) - len(split.caption_windows)
        if untimed:
            raise ValueError(
                f"training.clips needs captions with start and end times (e.g. HowTo100M's); "
                f"{untimed} of the {len(split.caption_ids)} {name} captions have none"
            )
    seed_everything(config.seed)
    device = pick_device()
    rank, size = rank_and_size()
    log.info("training on %s with %d process(es)", device, size)
    t5_encoder = None
    if model_config.text_encoder == "finetune":
        if text_model is None:
            raise ValueError("model.text_encoder 'finetune' needs the T5 model (text_model)")
        t5_encoder = load_t5_encoder(text_model)
    text_dim = t5_encoder.config.d_model if t5_encoder is not None else bank.text_dim
    model = SupportSetModel(model_config, bank.video_dim, text_dim, t5_encoder)  # same on all ranks
    if config.init_from:
        initialise_from(model, config.init_from)
    elif model_config.input_norm == "standardize":
        model.video_norm.fit(
            bank.videos[v][: bank.steps(config.max_video_seconds)] for v in train_split.video_ids
        )
    decoder = None
    if config.captioning != "none":
        if text_model is None:
            raise ValueError("training.captioning needs the T5 model (text_model) for its decoder")
        decoder = load_caption_decoder(text_model, model_config.dim)
    contrast = contrastive_loss(
        config.loss, config.margin, config.negatives, config.intra_modal, config.nce_temperature
    )
    objective = Objective(
        model, contrast, config.captioning, config.caption_weight, config.temperature,
        config.support_set_size, decoder, config.seed,
    ).to(device)  # fmt: skip
    optimizer = torch.optim.Adam(objective.parameters(), lr=config.lr)
    order_rng = np.random.default_rng(config.seed)  # the same on every rank
    torch.manual_seed(config.seed + rank)  # dropout masks differ between ranks
    inputs = [*input_files, *(path for path in (text_model, config.init_from) if path)]
    settings = {**asdict(model_config), **asdict(config), "processes": size}
    key = resume_key(settings, inputs)  # another process count draws other dropout masks
    saved = state_path(model_out)
    progress = load_state(saved, key, config.epochs, objective, optimizer, order_rng)
    if progress.epoch:
        log.info("resuming after epoch %d from %s", progress.epoch, saved)
    rows, best, step, best_state = progress.rows, progress.best, progress.step, progress.best_state
    if not _epoch_batches(train_split, config.batch_size, np.random.default_rng(0), size):
        raise ValueError("the training split gives no batch of two or more videos")
    scalars = TensorBoardScalars(Path(log_out).with_name("tensorboard"), enabled=rank == 0)
    plan = EpochPlan()
    loader = batch_loader(bank, plan, config.max_video_seconds, workers)
    validation = (model, *clip_split(bank, val_split)) if config.clips else (model, bank, val_split)
    for epoch in range(progress.epoch + 1, config.epochs + 1):
        started = time.perf_counter()
        objective.train()
        plan.keys = _epoch_plan(train_split, config, order_rng, rank, size)
        quiet = rank != 0 or not sys.stderr.isatty()  # no bar in job logs or on other ranks
        for batch in tqdm(loader, desc=f"epoch {epoch}", leave=False, disable=quiet):
            losses = _train_step(
                objective, optimizer, batch.to(device), config.grad_clip, config.caption_weight
            )
            step += 1
            rows.append({"epoch": epoch, "step": step, "kind": "train", **losses, "lr": config.lr})
            scalars.add({f"train/{name}": value for name, value in losses.items()}, step)
        summary = validate(*validation, config.max_video_seconds, device)
        rows.append(
            {
                "epoch": epoch,
                "step": step,
                "kind": "val",
                **summary,
                "seconds": round(time.perf_counter() - started, 3),
            }
        )
        log.info("epoch %d: loss %.4f, val rsum %.1f", epoch, rows[-2]["loss"], summary["rsum"])
        scalars.add({f"val/{name}": value for name, value in summary.items()}, step)
        if summary["rsum"] > best["rsum"]:
            best = {"epoch": epoch, **summary}
            best_state = {
                name: value.detach().cpu().clone() for name, value in model.state_dict().items()
            }
        progress = Progress(epoch, step, rows, best, best_state)
        save_state(saved, key, progress, objective, optimizer, order_rng)
    scalars.close()
    if rank == 0:
        save_checkpoint(model_out, best_state, model, best)
        write_log(log_out, rows)
        plot_curves(log_out, Path(log_out).with_name("train_curves.png"))
    return best


def validate(
    model: SupportSetModel,
    bank: FeatureBank,
    split: SplitData,
    max_video_seconds: float,
    device: torch.device,
) -> dict:
    """Text-to-video R@1, R@5, R@10 and their sum on `split`."""
    video_emb, caption_emb = embed_split(model, bank, split, max_video_seconds, device)
    metrics = evaluate_embeddings(
        split.video_ids,
        video_emb,
        split.caption_ids,
        split.caption_video_ids,
        caption_emb,
        device=str(device),
    )["t2v"]
    recalls = {f"t2v_R@{k}": metrics[f"R@{k}"] for k in (1, 5, 10)}
    return {**recalls, "rsum": sum(recalls.values())}


def write_log(path: str | Path, rows: list[dict]) -> None:
    """train_log.csv: one row per step (kind=train) and per epoch (kind=val)."""
    with atomic_path(path) as temporary, open(temporary, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=LOG_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def _epoch_batches(
    split: SplitData, batch_size: int, rng: np.random.Generator, world_size: int = 1
) -> list[list[str]]:
    """Global batches of video ids in a random order, each trimmed to a multiple of the
    world size (ranks take equal slices); batches of one video are dropped."""
    order = rng.permutation(len(split.video_ids))
    batches = [
        [split.video_ids[i] for i in order[start : start + batch_size]]
        for start in range(0, len(order), batch_size)
    ]
    batches = [batch[: len(batch) - len(batch) % world_size] for batch in batches]
    return [batch for batch in batches if len(batch) >= max(2, world_size)]


def _epoch_plan(
    split: SplitData, config: TrainConfig, rng: np.random.Generator, rank: int, size: int
) -> list[BatchKey]:
    """This rank's (video ids, caption ids) for every step of an epoch: a random order of
    the videos and random captions of each, drawn from `rng` (the same on every rank)."""
    windows = split.caption_windows if config.clips else None
    keys = []
    for video_ids in _epoch_batches(split, config.batch_size, rng, size):
        caption_ids = sample_captions(
            split.captions_of_video, video_ids, rng, config.captions_per_video, windows
        )
        videos = slice(rank * len(video_ids) // size, (rank + 1) * len(video_ids) // size)
        captions = slice(rank * len(caption_ids) // size, (rank + 1) * len(caption_ids) // size)
        clip_times = clip_windows(caption_ids[captions], config.captions_per_video, windows)
        keys.append((tuple(video_ids[videos]), tuple(caption_ids[captions]), clip_times))
    return keys


def _train_step(objective, optimizer, batch, grad_clip: float, caption_weight: float) -> dict:
    """One update; returns the global batch's losses (the same on every rank)."""
    losses = objective(batch)
    optimizer.zero_grad(set_to_none=True)
    losses["loss"].backward()
    sum_gradients(objective.parameters())
    torch.nn.utils.clip_grad_norm_(objective.parameters(), grad_clip)
    optimizer.step()
    contrast, caption = float(losses["contrast"]), float(losses["caption"])
    return {"loss": contrast + caption_weight * caption, "contrast": contrast, "caption": caption}
