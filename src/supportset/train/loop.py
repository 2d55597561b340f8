"""The `train` stage: pooling heads, hard-negative triplet loss and cross-captioning.

`train` = `setup` (check the data, build the model, the objective, the optimizer and the
loader, resume a saved state), then `run_epoch` for each epoch, then `finish` (checkpoint,
log, curves). What an epoch visits is `train.plan`'s (every pair by default). After each
epoch the model is scored on the validation split (text-to-video R@1 + R@5 + R@10) when
there is one; `training.selection` keeps the best epoch on it (`val`) or the last epoch
(`last`, the paper's fixed schedule). The test split is never looked at here.
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
from supportset.model.checkpoint import initialise_decoder, initialise_from, save_checkpoint
from supportset.model.decoder import (
    CaptionDecoder,
    check_same_vocabulary,
    decoder_record,
    load_caption_decoder,
)
from supportset.model.inference import embed_split
from supportset.model.retrieval_model import ModelConfig, SupportSetModel
from supportset.retrieval.metrics import evaluate_embeddings
from supportset.torch_utils import pick_device, seed_everything
from supportset.train.config import TrainConfig
from supportset.train.curves import TensorBoardScalars, plot_curves
from supportset.train.loader import BatchLoader, EpochPlan, batch_loader
from supportset.train.objective import Objective, memory_width
from supportset.train.plan import epoch_plan
from supportset.train.resume import Progress, load_state, resume_key, save_state, state_path

log = logging.getLogger(__name__)

LOG_COLUMNS = (
    "epoch",
    "step",
    "kind",
    "loss",
    "contrast",
    "caption",
    "crops",
    "lr",
    "t2v_R@1",
    "t2v_R@5",
    "t2v_R@10",
    "rsum",
    "seconds",
)


@dataclass
class TrainData:
    """What training reads: the feature bank, the pairs trained on, and the validation
    split (None: no validation, e.g. when val is trained on)."""

    bank: FeatureBank
    train: SplitData
    val: SplitData | None


@dataclass
class TrainOutputs:
    model: Path  # model.pt
    log: Path  # train_log.csv (curves and TensorBoard scalars are written beside it)


@dataclass(frozen=True)
class CheckpointRecords:
    """What model.pt keeps about the run besides the weights (see model.checkpoint)."""

    text_features: dict | None = None  # features.bank.text_features_record of the text shards
    provenance: dict | None = None  # supportset.provenance.provenance of the run


@dataclass
class Session:
    """Everything the epochs share, built by `setup`."""

    config: TrainConfig
    data: TrainData
    model: SupportSetModel
    objective: Objective
    optimizer: torch.optim.Optimizer
    order_rng: np.random.Generator
    plan: EpochPlan
    loader: BatchLoader
    device: torch.device
    key: str  # what a saved state must match to be resumed
    state_file: Path
    scalars: TensorBoardScalars


def train(
    data: TrainData,
    model_config: ModelConfig,
    config: TrainConfig,
    outputs: TrainOutputs,
    text_model: str | None = None,
    input_files: Sequence[str | Path] = (),
    workers: int = 0,
    records: CheckpointRecords | None = None,
) -> dict:
    """Train, write the kept checkpoint and the log; return the kept epoch's summary.

    `text_model` (a T5 name or folder) provides the caption decoder (unless
    `config.decoder` names another T5) and the fine-tuned encoder; `input_files` (the
    shards) decide, with the settings, whether a saved state resumes; `workers` processes
    read the batches (0: this process), which changes no result; `records` are stored in
    the checkpoint as they are (how the captions were encoded, the run's provenance).
    """
    session = setup(data, model_config, config, outputs, text_model, input_files, workers)
    progress = load_state(
        session.state_file,
        session.key,
        config.epochs,
        session.objective,
        session.optimizer,
        session.order_rng,
    )
    if progress.epoch:
        log.info("resuming after epoch %d from %s", progress.epoch, session.state_file)
    for epoch in range(progress.epoch + 1, config.epochs + 1):
        progress = run_epoch(session, epoch, progress)
        save_state(
            session.state_file,
            session.key,
            progress,
            session.objective,
            session.optimizer,
            session.order_rng,
        )
    return finish(session, progress, outputs, records or CheckpointRecords())


def setup(
    data: TrainData,
    model_config: ModelConfig,
    config: TrainConfig,
    outputs: TrainOutputs,
    text_model: str | None,
    input_files: Sequence[str | Path],
    workers: int,
) -> Session:
    """Check the data against the settings and build what the epochs share; the bank's
    video sequences are the part of the features `model.visual_features` names."""
    _check_clips(data, config)
    bank = data.bank.with_crops() if config.reads_crops else data.bank  # features.crops
    data = TrainData(bank.visual_part(model_config.visual_features), data.train, data.val)
    if config.selection == "val" and data.val is None:
        raise ValueError("training.selection 'val' needs a validation split; use 'last'")
    seed_everything(config.seed)
    device = pick_device()
    rank, size = rank_and_size()
    log.info("training on %s with %d process(es)", device, size)
    model = _build_model(data.bank, data.train, model_config, config, text_model)
    decoder = _caption_decoder(model, config, text_model)
    objective = Objective(model, config, decoder).to(device)
    optimizer = torch.optim.Adam(objective.parameters(), lr=config.lr)
    order_rng = np.random.default_rng(config.seed)  # the same on every rank
    torch.manual_seed(config.seed + rank)  # dropout masks differ between ranks
    _log_schedule(data.train, config, size)
    models = (text_model, config.decoder, config.init_from)
    inputs = [*input_files, *(path for path in models if path)]
    settings = {**asdict(model_config), **asdict(config), "processes": size}
    plan = EpochPlan()
    return Session(
        config,
        data,
        model,
        objective,
        optimizer,
        order_rng,
        plan,
        batch_loader(
            data.bank,
            plan,
            config.max_video_seconds,
            workers,
            text_states=model.t5_encoder is None,  # a fine-tuned encoder reads token ids
        ),
        device,
        resume_key(settings, inputs),  # another process count draws other dropout masks
        state_path(outputs.model),
        TensorBoardScalars(outputs.log.with_name("tensorboard"), enabled=rank == 0),
    )


def run_epoch(session: Session, epoch: int, progress: Progress) -> Progress:
    """Train one epoch, validate, and return the progress after it."""
    config, rows, step = session.config, list(progress.rows), progress.step
    started = time.perf_counter()
    session.objective.train()
    rank, size = rank_and_size()
    session.plan.keys = epoch_plan(session.data.train, config, session.order_rng, rank, size)
    quiet = rank != 0 or not sys.stderr.isatty()  # no bar in job logs or on other ranks
    for batch in tqdm(session.loader, desc=f"epoch {epoch}", leave=False, disable=quiet):
        losses = _train_step(session, batch.to(session.device))
        step += 1
        rows.append({"epoch": epoch, "step": step, "kind": "train", **losses, "lr": config.lr})
        session.scalars.add({f"train/{name}": value for name, value in losses.items()}, step)
    if step == progress.step:
        raise ValueError(
            f"epoch {epoch} drew no batch of two or more videos from the training split; "
            "it is too small for training.batch_size"
        )
    summary = _validate_epoch(session)
    rows.append(
        {
            "epoch": epoch,
            "step": step,
            "kind": "val",
            **summary,
            "seconds": round(time.perf_counter() - started, 3),
        }
    )
    log.info("epoch %d: loss %.4f, %s", epoch, rows[-2]["loss"], _summary_words(summary))
    session.scalars.add({f"val/{name}": value for name, value in summary.items()}, step)
    best, best_state = progress.best, progress.best_state
    first = best_state is None  # kept until an epoch beats it (a NaN rsum never does)
    if config.selection == "last" or first or summary["rsum"] > best["rsum"]:
        best = {"epoch": epoch, **summary}
        best_state = _kept_state(session)
    return Progress(epoch, step, rows, best, best_state)


def _kept_state(session: Session) -> dict:
    """CPU copies of the weights a checkpoint keeps: the model's, and the caption
    decoder's (empty without captioning), which `supportset caption` generates with. A
    tensor two names share (T5's tied embeddings and LM head) is copied once and stays
    shared, so it is saved once."""
    copies: dict[int, torch.Tensor] = {}

    def copy(value: torch.Tensor) -> torch.Tensor:
        if id(value) not in copies:
            copies[id(value)] = value.detach().cpu().clone()
        return copies[id(value)]

    modules = {"model": session.model, "decoder": session.objective.decoder}
    return {
        part: {name: copy(value) for name, value in module.state_dict(keep_vars=True).items()}
        if module is not None
        else {}
        for part, module in modules.items()
    }


def finish(
    session: Session, progress: Progress, outputs: TrainOutputs, records: CheckpointRecords
) -> dict:
    """Write the kept epoch's checkpoint, the log and the curves (rank 0)."""
    session.scalars.close()
    if rank_and_size()[0] == 0:
        save_checkpoint(
            outputs.model,
            progress.best_state["model"],
            session.model,
            progress.best,
            session.data.bank.tokenizer,
            records.text_features,
            records.provenance,
            decoder_record(
                session.objective.decoder,
                progress.best_state["decoder"],
                session.config.caption_memory,
            ),
        )
        write_log(outputs.log, progress.rows)
        plot_curves(
            outputs.log,
            outputs.log.with_name("train_curves.png"),
            progress.best["epoch"],
            session.config.selection,
        )
    return progress.best


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
    """train_log.csv: one row per step (kind=train) and per epoch (kind=val; its metrics
    are empty when there is no validation split)."""
    with atomic_path(path) as temporary, open(temporary, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=LOG_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def _build_model(
    bank: FeatureBank,
    train_split: SplitData,
    model_config: ModelConfig,
    config: TrainConfig,
    text_model: str | None,
) -> SupportSetModel:
    """The model, from `init_from` or fresh (input statistics fitted on the train split)."""
    t5_encoder = None
    if model_config.text_encoder == "finetune":
        if text_model is None:
            raise ValueError("model.text_encoder 'finetune' needs the T5 model (text_model)")
        t5_encoder = load_t5_encoder(text_model)
    text_dim = t5_encoder.config.d_model if t5_encoder is not None else bank.text_dim
    model = SupportSetModel(model_config, bank.video_dim, text_dim, t5_encoder)  # same on all ranks
    if config.init_from:
        initialise_from(model, config.init_from, bank.tokenizer)
    elif model_config.input_norm == "standardize":
        steps = bank.steps(config.max_video_seconds)
        model.video_norm.fit(bank.videos[v][:steps] for v in train_split.video_ids)
    return model


def _caption_decoder(
    model: SupportSetModel, config: TrainConfig, text_model: str | None
) -> CaptionDecoder | None:
    """The caption decoder (None without captioning): `training.decoder`'s T5, after
    checking its vocabulary is the text model's, or the text model's own; started from the
    decoder `training.init_from` kept, when it kept one."""
    if config.captioning == "none":
        return None
    if text_model is None:
        raise ValueError(
            "training.captioning needs the T5 model (text_model) for its decoder, or for the "
            "vocabulary training.decoder's must match"
        )
    width = memory_width(model, config)
    if config.decoder:
        check_same_vocabulary(config.decoder, text_model)
        decoder = load_caption_decoder(config.decoder, width, "training.decoder")
    else:
        decoder = load_caption_decoder(text_model, width)
    if config.init_from:
        initialise_decoder(decoder, config.init_from, config.caption_memory)
    return decoder


def _check_clips(data: TrainData, config: TrainConfig) -> None:
    """With clips, every caption needs its segment's start and end."""
    splits = (("train", data.train), ("val", data.val)) if config.clips else ()
    for name, split in splits:
        untimed = len(split.caption_ids) - len(split.caption_windows) if split else 0
        if untimed:
            raise ValueError(
                f"training.clips needs captions with start and end times (e.g. HowTo100M's); "
                f"{untimed} of the {len(split.caption_ids)} {name} captions have none"
            )


def _log_schedule(train_split: SplitData, config: TrainConfig, size: int) -> None:
    """Log what an epoch visits and how many steps it takes; refuse a split that gives
    no batch."""
    steps = len(epoch_plan(train_split, config, np.random.default_rng(0), 0, size))
    if not steps:
        raise ValueError("the training split gives no batch of two or more videos")
    unit = (
        f"{len(train_split.caption_ids)} pairs"
        if config.epoch_unit == "pairs"
        else f"{len(train_split.video_ids)} videos"
    )
    log.info(
        "an epoch visits %s (training.epoch_unit %s) in %d steps of up to %d; %d epochs, "
        "%d steps in all",
        unit,
        config.epoch_unit,
        steps,
        config.batch_size,
        config.epochs,
        steps * config.epochs,
    )


def _validate_epoch(session: Session) -> dict:
    """The validation summary; empty without a validation split."""
    data, config = session.data, session.config
    if data.val is None:
        return {}
    if config.clips:
        bank, split = clip_split(data.bank, data.val)
    else:
        bank, split = data.bank, data.val
    return validate(session.model, bank, split, config.max_video_seconds, session.device)


def _summary_words(summary: dict) -> str:
    return f"val rsum {summary['rsum']:.1f}" if summary else "no validation split"


def _train_step(session: Session, batch) -> dict:
    """One update; returns the global batch's losses (the same on every rank)."""
    objective, optimizer = session.objective, session.optimizer
    losses = objective(batch)
    optimizer.zero_grad(set_to_none=True)
    losses["loss"].backward()
    sum_gradients(objective.parameters())
    torch.nn.utils.clip_grad_norm_(objective.parameters(), session.config.grad_clip)
    optimizer.step()
    contrast, caption, crops = (float(losses[name]) for name in ("contrast", "caption", "crops"))
    config = session.config
    weighted = contrast + config.caption_weight * caption + config.crop_contrast_weight * crops
    return {"loss": weighted, "contrast": contrast, "caption": caption, "crops": crops}
