"""Embedding whole splits with a trained model (used by validation and export)."""

from __future__ import annotations

from functools import partial

import numpy as np
import torch

from supportset.model.supportset import SupportSetModel
from supportset.train.data import FeatureBank, SplitData, pad_batch, pad_token_ids

EVAL_BATCH = 256
NO_TRUNCATION = 1 << 30


@torch.inference_mode()
def embed_split(
    model: SupportSetModel,
    bank: FeatureBank,
    split: SplitData,
    max_video_seconds: float,
    device: torch.device,
) -> tuple[np.ndarray, np.ndarray]:
    """Unit-norm embeddings of the split's videos (N_v, d), each truncated to its first
    `max_video_seconds`, and captions (N_c, d), float32, in the split's order, eval mode."""
    model.eval()
    video_sequences = [bank.videos[video_id] for video_id in split.video_ids]
    pad_videos = partial(pad_batch, max_len=bank.steps(max_video_seconds))
    videos = _embed(model.embed_videos, video_sequences, pad_videos, device)
    if model.t5_encoder is None:
        text_sequences = [bank.texts[caption_id] for caption_id in split.caption_ids]
        pad = partial(pad_batch, max_len=NO_TRUNCATION)
    else:
        text_sequences = [bank.token_ids[caption_id] for caption_id in split.caption_ids]
        pad = pad_token_ids
    return videos, _embed(model.embed_texts, text_sequences, pad, device)


def _embed(embed, sequences: list[np.ndarray], pad, device: torch.device) -> np.ndarray:
    """`embed` over `sequences` in batches of EVAL_BATCH, each padded by `pad`."""
    outputs = []
    for start in range(0, len(sequences), EVAL_BATCH):
        batch, valid = pad(sequences[start : start + EVAL_BATCH])
        outputs.append(embed(batch.to(device), valid.to(device)).float().cpu())
    return torch.cat(outputs).numpy()
