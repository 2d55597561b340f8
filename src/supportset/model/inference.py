"""Embedding whole splits with a trained model (used by validation and export)."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial

import numpy as np
import torch

from supportset.features.bank import FeatureBank, SplitData, pad_batch, pad_token_ids
from supportset.model.retrieval_model import SupportSetModel

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
    steps = bank.steps(max_video_seconds)
    pad_videos = partial(pad_batch, max_len=steps)
    videos = embed_sequences(
        model.embed_videos, bank.videos, split.video_ids, pad_videos, device, steps
    )
    if model.t5_encoder is None:
        texts, pad = bank.texts, partial(pad_batch, max_len=NO_TRUNCATION)
    else:
        texts, pad = bank.token_ids, pad_token_ids
    return videos, embed_sequences(model.embed_texts, texts, split.caption_ids, pad, device)


def embed_sequences(
    embed,
    sequences: Mapping[str, np.ndarray],
    ids: list[str],
    pad,
    device: torch.device,
    keep_steps: int | None = None,
) -> np.ndarray:
    """`embed` over the sequences of `ids`, read EVAL_BATCH at a time (only their first
    `keep_steps` are kept while the batch waits) and padded by `pad`: float32 (N, d), in
    the order of `ids`. The caller sets eval and inference mode."""
    outputs = []
    for start in range(0, len(ids), EVAL_BATCH):
        batch, valid = pad(
            [sequences[i][:keep_steps].copy() for i in ids[start : start + EVAL_BATCH]]
        )
        outputs.append(embed(batch.to(device), valid.to(device)).float().cpu())
    return torch.cat(outputs).numpy()
