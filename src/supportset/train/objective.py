"""The training objective: L = L_contrast + lambda * L_cross-captioning (paper 3.1).

Both terms are reduced as `TrainConfig.contrast_reduction` and `caption_reduction` say;
by default the triplet loss is summed over the batch and the captioning loss is T5's
token mean, so that at lambda = 10 the two weighted terms have similar magnitudes, as
3.1.2 says they do ("We set lambda = 10 to ensure similar magnitudes for both losses").

With `crop_contrast_weight` w above 0 (StiCA's feature crops, not the paper's), L gains
w * L_crops: the symmetric InfoNCE between two crop views of each video through the video
head, over the batch (see `Objective.crop_contrast`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np
import torch
from torch import nn

from supportset.distributed import all_sum, gather, rank_and_size
from supportset.features.bank import FeatureBank, pad_batch, pad_token_ids
from supportset.losses import InfoNCELoss, contrastive_loss
from supportset.model.decoder import CaptionDecoder
from supportset.model.retrieval_model import SupportSetModel
from supportset.model.support_attention import mix, support_weights
from supportset.train.config import TrainConfig
from supportset.train.plan import BatchKey, CropDraws, CroppedKey


@dataclass
class Batch:
    """One training batch on its device; video row i is the video of captions
    i*K .. (i+1)*K - 1 (K = captions per video row, 1 but for MIL-NCE bags)."""

    video: torch.Tensor  # (B, T, D_v) visual features
    video_valid: torch.Tensor  # (B, T) bool
    text: torch.Tensor  # (N, L, D_t) T5 token states
    text_valid: torch.Tensor  # (N, L) bool
    tokens: torch.Tensor  # (N, L) int64 T5 token ids of the captions
    token_valid: torch.Tensor  # (N, L) bool
    groups: torch.Tensor  # (B,) int64: rows of equal label show the same video
    # (2, B, T, D_v) two crop views of each video row (training.crop_contrast_weight); (0,)
    views: torch.Tensor = field(default_factory=lambda: torch.zeros(0))

    @classmethod
    def read(
        cls,
        bank: FeatureBank,
        key: BatchKey | CroppedKey,
        max_video_seconds: float,
        text_states: bool = True,
    ) -> Batch:
        """The batch of a plan's key, on CPU: each video's first `max_video_seconds`, or
        with windows the (start, end) clip of each row. Without `text_states` (a fine-tuned
        T5 encoder reads the token ids) the cached states are not read: text is (N, 0, 0).
        A CroppedKey reads crop features (`bank.crops`) as its draws say (see `read_crops`)."""
        draws = None
        if isinstance(key, CroppedKey):
            key, draws = key
        max_steps = bank.steps(max_video_seconds)
        lengths = [bank.length(video_id) for video_id in key.video_ids]
        steps = video_steps(bank, key, lengths, max_steps)
        sequences = [bank.read_steps(v, span) for v, span in zip(key.video_ids, steps, strict=True)]
        views = torch.zeros(0)
        if draws is not None:
            sequences, views = read_crops(bank, key.video_ids, steps, draws, sequences)
        video, video_valid = pad_batch(sequences, max_steps)
        if text_states:
            text, text_valid = pad_batch([bank.texts[c] for c in key.caption_ids], 1 << 30)
        else:
            text = torch.zeros(len(key.caption_ids), 0, 0)
            text_valid = torch.zeros(len(key.caption_ids), 0, dtype=torch.bool)
        tokens, token_valid = pad_token_ids([bank.token_ids[c] for c in key.caption_ids])
        groups = torch.tensor(key.groups, dtype=torch.long)
        return cls(video, video_valid, text, text_valid, tokens, token_valid, groups, views)

    def to(self, device: torch.device) -> Batch:
        return Batch(*(getattr(self, f.name).to(device, non_blocking=True) for f in fields(self)))

    def pin_memory(self) -> Batch:
        """Page-locked copies, for faster host-to-GPU transfer (used by the data loader)."""
        return Batch(*(getattr(self, f.name).pin_memory() for f in fields(self)))


def video_steps(
    bank: FeatureBank, key: BatchKey, lengths: list[int], max_steps: int
) -> list[slice]:
    """The steps each video row reads, of videos of `lengths` steps: its first `max_steps`,
    or of its (start, end) clip with windows."""
    if key.windows is None:
        spans = [slice(0, length) for length in lengths]
    else:
        rows = zip(key.video_ids, lengths, key.windows, strict=True)
        spans = [bank.clip_steps(video_id, length, *window) for video_id, length, window in rows]
    return [slice(span.start, min(span.stop, span.start + max_steps)) for span in spans]


def read_crops(
    bank: FeatureBank,
    video_ids: tuple[str, ...],
    steps: list[slice],
    draws: CropDraws,
    full_frames: list[np.ndarray],
) -> tuple[list[np.ndarray], torch.Tensor]:
    """Each row's video sequence (T_i, D) - with `draws.augment` one of its step's K crops
    drawn at random per step, else its full-frame features `full_frames` - and, with
    `draws.views`, the padded (2, B, T, D) of two more crops drawn per step ((0,) without).
    Row i draws from numpy default_rng(draws.seeds[i]): the augmenting crops, then the two
    views, each independently and uniformly among the step's K."""
    if bank.crops is None:
        raise ValueError(
            "training.crop_augment and training.crop_contrast_weight read crop features, "
            "which this feature bank has not read: extract with features.crops above 0"
        )
    count = int(draws.augment) + 2 * int(draws.views)
    drawn = [
        draw_crops(bank.crops[video_id][span], seed, count)
        for video_id, span, seed in zip(video_ids, steps, draws.seeds, strict=True)
    ]  # (count, T_i, D) each
    sequences = [crops[0] for crops in drawn] if draws.augment else full_frames
    if not draws.views:
        return sequences, torch.zeros(0)
    views = [pad_batch([crops[view] for crops in drawn], 1 << 30)[0] for view in (-2, -1)]
    return sequences, torch.stack(views)  # (2, B, T, D)


def draw_crops(crops: np.ndarray, seed: int, count: int) -> np.ndarray:
    """`count` crops per step drawn independently and uniformly: crops (T, K, D) ->
    (count, T, D), from numpy default_rng(seed)."""
    picks = np.random.default_rng(seed).integers(0, crops.shape[1], size=(count, len(crops)))
    return crops[np.arange(len(crops)), picks]


class Objective(nn.Module):
    """Contrastive loss on (c_v, c_t) plus, unless captioning is 'none', the captioning
    loss of the support-set decoder, plus with `crop_contrast_weight` the within-video crop
    term; `forward` returns the total and each part."""

    def __init__(
        self, model: SupportSetModel, config: TrainConfig, decoder: CaptionDecoder | None
    ) -> None:
        super().__init__()
        if (config.captioning == "none") != (decoder is None):
            raise ValueError("training.captioning 'none' takes no decoder, the others one")
        self.model = model
        self.config = config
        self.contrast = contrastive_loss(
            config.loss,
            config.margin,
            config.negatives,
            config.intra_modal,
            config.nce_temperature,
            config.contrast_reduction,
        )
        self.crops = InfoNCELoss(config.crop_temperature)
        self.decoder = decoder
        self.generator = torch.Generator().manual_seed(config.seed)

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        """This rank's share of the loss ("loss", to backpropagate) and the global batch's
        contrastive, crop and captioning losses ("contrast", "crops", "caption", to log).
        With one process the share is all."""
        rank, size = rank_and_size()
        c_v_local, e_v_local, e_valid_local = self.model.encode_videos(
            batch.video, batch.video_valid
        )  # (b, d), (b, T', d), (b, T')
        c_t_local = self.model.embed_texts(*text_input(self.model, batch))  # (n, d)
        c_v, c_t = gather(c_v_local), gather(c_t_local)  # (B, d), (N, d): the global batch
        groups = gather(batch.groups)  # (B,)
        owners = torch.arange(len(c_v), device=c_v.device).repeat_interleave(len(c_t) // len(c_v))
        same_video = groups[owners][:, None] == groups[None, :]  # (N, B)
        contrast = self.contrast(c_v, c_t, same_video)
        crops = self.crop_contrast(batch)
        share = (contrast + self.config.crop_contrast_weight * crops) / size
        logged = {"contrast": contrast.detach(), "crops": crops.detach()}
        if self.decoder is None:
            return {"loss": share, **logged, "caption": torch.zeros(())}
        if self.config.caption_memory == "features":
            e_v_local = self.model.video_norm(batch.video)  # Psi'(v): fixed, no gradient
            e_valid_local = batch.video_valid
        e_v = gather(e_v_local)  # (B, T', D)
        e_valid = gather(e_valid_local.float()) > 0.5
        weights = support_weights(
            c_t,
            c_v,
            self.config.captioning,
            self.config.temperature,
            self.config.support_set_size,
            self.generator,
            owners,
            same_video,
        )  # (N, B), identical on every rank
        local = slice(rank * len(c_t_local), (rank + 1) * len(c_t_local))
        memory, memory_valid = mix(weights[local], e_v, e_valid)  # (n, T', D)
        nll, tokens = self.decoder(memory, memory_valid, batch.tokens, batch.token_valid)
        if self.config.caption_reduction == "token_mean":
            caption_share = nll / all_sum(tokens.detach())
        else:
            caption_share = nll / all_sum(nll.new_tensor(float(len(batch.tokens))))
        return {
            "loss": share + self.config.caption_weight * caption_share,
            **logged,
            "caption": all_sum(caption_share.detach()),
        }

    def crop_contrast(self, batch: Batch) -> torch.Tensor:
        """L_crops of the global batch: the symmetric InfoNCE (temperature
        `crop_temperature`, mean over the batch) between the video head's embeddings of the
        two crop views of each video, rows of one video not being each other's negatives;
        0 without `crop_contrast_weight`."""
        if self.config.crop_contrast_weight == 0:
            return torch.zeros((), device=batch.video.device)
        views, rows = batch.views.flatten(0, 1), len(batch.video)  # (2B, T, D)
        c_views, _, _ = self.model.encode_videos(views, batch.video_valid.repeat(2, 1))
        view_a, view_b = gather(c_views[:rows]), gather(c_views[rows:])  # (B, d) each
        groups = gather(batch.groups)  # (B,)
        return self.crops(view_a, view_b, groups[:, None] == groups[None, :])


def text_input(model: SupportSetModel, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """What the text head reads: token ids when the T5 encoder is fine-tuned, else states."""
    if model.t5_encoder is not None:
        return batch.tokens, batch.token_valid
    return batch.text, batch.text_valid


def memory_width(model: SupportSetModel, config: TrainConfig) -> int:
    """Width of the sequence the caption decoder reads: the visual features' (features)
    or the joint space's (head)."""
    return model.video_dim if config.caption_memory == "features" else model.config.dim
