"""Embedding whole splits with a trained model (used by validation and export)."""

from __future__ import annotations

import numpy as np
import torch

from supportset.model.supportset import SupportSetModel
from supportset.train.data import FeatureBank, SplitData, pad_batch

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
    videos = _embed(model.embed_videos, video_sequences, bank.steps(max_video_seconds), device)
    if model.t5_encoder is None:
        text_sequences = [bank.texts[caption_id] for caption_id in split.caption_ids]
        return videos, _embed(model.embed_texts, text_sequences, NO_TRUNCATION, device)
    token_ids = [bank.token_ids[caption_id][:, None] for caption_id in split.caption_ids]
    return videos, _embed(_embed_token_ids(model), token_ids, NO_TRUNCATION, device)


def _embed_token_ids(model: SupportSetModel):
    """embed_texts for token ids padded as (B, L, 1) float columns."""
    return lambda ids, valid: model.embed_texts(ids[..., 0].long(), valid)


def _embed(embed, sequences: list[np.ndarray], max_len: int, device: torch.device) -> np.ndarray:
    outputs = []
    for start in range(0, len(sequences), EVAL_BATCH):
        batch, valid = pad_batch(sequences[start : start + EVAL_BATCH], max_len)
        outputs.append(embed(batch.to(device), valid.to(device)).float().cpu())
    return torch.cat(outputs).numpy()
