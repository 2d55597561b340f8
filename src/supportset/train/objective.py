"""The training objective: L = L_contrast + lambda * L_cross-captioning (paper 3.1)."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch
from torch import nn

from supportset.distributed import all_sum, gather, rank_and_size
from supportset.features.bank import FeatureBank, pad_batch, pad_token_ids
from supportset.model.decoder import CaptionDecoder
from supportset.model.retrieval_model import SupportSetModel
from supportset.model.support_attention import mix, support_weights


@dataclass
class Batch:
    """One training batch on its device; row i pairs video i with caption i."""

    video: torch.Tensor  # (B, T, D_v) visual features
    video_valid: torch.Tensor  # (B, T) bool
    text: torch.Tensor  # (B, L, D_t) T5 token states
    text_valid: torch.Tensor  # (B, L) bool
    tokens: torch.Tensor  # (B, L) int64 T5 token ids of the captions
    token_valid: torch.Tensor  # (B, L) bool

    @classmethod
    def read(
        cls,
        bank: FeatureBank,
        video_ids: list[str],
        caption_ids: list[str],
        max_video_seconds: float,
        windows: tuple[tuple[float, float], ...] | None = None,
    ) -> Batch:
        """The batch of these videos and captions, on CPU: each video's first
        `max_video_seconds`, or with `windows` the (start, end) clip of each video."""
        if windows is None:
            sequences = [bank.videos[v] for v in video_ids]
        else:
            sequences = [
                bank.clip(v, *window) for v, window in zip(video_ids, windows, strict=True)
            ]
        video, video_valid = pad_batch(sequences, bank.steps(max_video_seconds))
        text, text_valid = pad_batch([bank.texts[c] for c in caption_ids], 1 << 30)
        tokens, token_valid = pad_token_ids([bank.token_ids[c] for c in caption_ids])
        return cls(video, video_valid, text, text_valid, tokens, token_valid)

    def to(self, device: torch.device) -> Batch:
        return Batch(*(getattr(self, f.name).to(device, non_blocking=True) for f in fields(self)))

    def pin_memory(self) -> Batch:
        """Page-locked copies, for faster host-to-GPU transfer (used by the data loader)."""
        return Batch(*(getattr(self, f.name).pin_memory() for f in fields(self)))


class Objective(nn.Module):
    """Contrastive loss on (c_v, c_t) plus, unless captioning is 'none', the captioning
    loss of the support-set decoder; `forward` returns the total and both parts."""

    def __init__(
        self,
        model: SupportSetModel,
        contrast: nn.Module,
        captioning: str,
        caption_weight: float,
        temperature: float,
        support_set_size: int,
        decoder: CaptionDecoder | None,
        seed: int,
    ) -> None:
        super().__init__()
        self.model = model
        self.contrast = contrast
        self.captioning = captioning
        self.caption_weight = caption_weight
        self.temperature = temperature
        self.support_set_size = support_set_size
        self.decoder = decoder
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        """This rank's share of the loss ("loss", to backpropagate) and the global batch's
        contrastive and captioning losses (to log). With one process the share is all."""
        rank, size = rank_and_size()
        c_v_local, e_v_local, e_valid_local = self.model.encode_videos(
            batch.video, batch.video_valid
        )  # (b, d), (b, T', d), (b, T')
        c_t_local = self.model.embed_texts(*text_input(self.model, batch))  # (b, d)
        c_v, c_t = gather(c_v_local), gather(c_t_local)  # (B, d), (N, d): the global batch
        owners = torch.arange(len(c_v), device=c_v.device).repeat_interleave(len(c_t) // len(c_v))
        contrast = self.contrast(c_v, c_t, owners)
        share = contrast / size
        if self.decoder is None:
            return {"loss": share, "contrast": contrast.detach(), "caption": torch.zeros(())}
        e_v = gather(e_v_local)  # (B, T', d)
        e_valid = gather(e_valid_local.float()) > 0.5
        weights = support_weights(
            c_t,
            c_v,
            self.captioning,
            self.temperature,
            self.support_set_size,
            self.generator,
            owners,
        )  # (N, B), identical on every rank
        local = slice(rank * len(c_t_local), (rank + 1) * len(c_t_local))
        memory, memory_valid = mix(weights[local], e_v, e_valid)  # (b, T', d)
        nll, tokens = self.decoder(memory, memory_valid, batch.tokens, batch.token_valid)
        caption_share = nll / all_sum(tokens.detach())
        return {
            "loss": share + self.caption_weight * caption_share,
            "contrast": contrast.detach(),
            "caption": all_sum(caption_share.detach()),
        }


def text_input(model: SupportSetModel, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """What the text head reads: token ids when the T5 encoder is fine-tuned, else states."""
    if model.t5_encoder is not None:
        return batch.tokens, batch.token_valid
    return batch.text, batch.text_valid


def sample_captions(
    captions_of_video: dict[str, list[str]],
    video_ids: list[str],
    rng: np.random.Generator,
    per_video: int = 1,
    windows: dict[str, tuple[float, float]] | None = None,
) -> list[str]:
    """`per_video` captions of each video drawn at random (without repeats when it has
    enough), grouped by video in the order of `video_ids`. With `windows` (caption times,
    for clips) several captions are neighbours: `per_video` consecutive segments in time."""
    drawn = []
    for video_id in video_ids:
        captions = captions_of_video[video_id]
        if per_video == 1:
            drawn.append(rng.choice(captions))
        elif windows is not None and len(captions) >= per_video:
            ordered = sorted(captions, key=lambda caption: windows[caption])
            first = rng.integers(0, len(ordered) - per_video + 1)
            drawn.extend(ordered[first : first + per_video])
        else:
            drawn.extend(rng.choice(captions, size=per_video, replace=len(captions) < per_video))
    return drawn


def clip_windows(
    caption_ids: list[str], per_video: int, windows: dict[str, tuple[float, float]] | None
) -> tuple[tuple[float, float], ...] | None:
    """For clips, each video's (start, end) in seconds: the span of its `per_video`
    consecutive captions' segments; None when training on whole videos."""
    if windows is None:
        return None
    spans = []
    for first in range(0, len(caption_ids), per_video):
        times = [windows[caption] for caption in caption_ids[first : first + per_video]]
        spans.append((min(start for start, _ in times), max(end for _, end in times)))
    return tuple(spans)
