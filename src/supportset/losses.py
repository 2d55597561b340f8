"""Contrastive objectives (paper eq. 1 and the variants of Table 2e).

Inputs are (B, d) unit vectors of videos and captions, row i of each a positive pair;
s is the cosine similarity. `same_video` (N, B) bool marks the caption-video pairs that
show the same video: with epochs over pairs a batch may hold two captions of one video
(each with its own row of that video), and such rows are never each other's negatives,
in either modality. None means row i and row j differ whenever i != j.

Triplet (the paper's, after VSE++), with margin a and hardest negatives:
  L = sum_i [ max_{j!=i} [a - s(t_i, v_i) + s(t_i, v_j)]_+
            + max_{j!=i} [a - s(t_i, v_i) + s(t_j, v_i)]_+ ]
summed over the batch as Faghri et al.'s (VSE++) code does, or with `reduction="mean"`
divided by B as eq. 1 is printed (1/B sum_i); see `TrainConfig.contrast_reduction`.
`negatives="sum"` sums the hinges over j instead of taking the largest (VSE0).
InfoNCE with temperature tau: cross-entropy of each caption over the videos and of each
video over the captions, averaged over both directions.
`intra_modal=True` adds same-modality negatives: for caption i the other captions t_j
(s(t_i, t_j) against s(t_i, v_i)), for video i the other videos v_j.
MIL-NCE (Miech et al. 2020) takes several captions per video: video i's bag of positive
captions P_i (`same_video`'s column i) against the negatives on both sides of the bag,
the other captions with v_i and the other videos with each caption of P_i:
  L = 1/B sum_i -log( sum_{p in P_i} e^{s(v_i, t_p)/tau}
                      / (sum_{p in P_i} e^{s(v_i, t_p)/tau} + sum_{negatives} e^{s/tau}) )
The other losses need one caption per video row (N = B).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

REDUCTIONS = ("sum", "mean")


def _reduce(per_anchor: torch.Tensor, reduction: str) -> torch.Tensor:
    return per_anchor.sum() if reduction == "sum" else per_anchor.mean()


def _check_reduction(reduction: str) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction '{reduction}'")
    return reduction


def _negatives(same_video: torch.Tensor | None, rows: int, device: torch.device) -> torch.Tensor:
    """(B, B) bool: True where row j is a negative of row i (not the same video)."""
    if same_video is None:
        return ~torch.eye(rows, dtype=torch.bool, device=device)
    return ~same_video


def _hinges(
    positives: torch.Tensor,
    scores: torch.Tensor,
    margin: float,
    negatives: str,
    is_negative: torch.Tensor,
) -> torch.Tensor:
    """Per anchor (row): hinge [margin - positive + score]_+ over the row's negatives,
    reduced by max ('hardest') or sum ('sum'). positives (B, 1), scores (B, B) -> (B,)."""
    hinges = (margin - positives + scores).clamp(min=0) * is_negative
    return hinges.amax(dim=1) if negatives == "hardest" else hinges.sum(dim=1)


class HardNegativeTripletLoss(nn.Module):
    """Bidirectional triplet loss over a batch of matched pairs (eq. 1)."""

    def __init__(
        self,
        margin: float = 0.2,
        negatives: str = "hardest",
        intra_modal: bool = False,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        if negatives not in ("hardest", "sum"):
            raise ValueError(f"unknown negatives '{negatives}'")
        self.margin = margin
        self.negatives = negatives
        self.intra_modal = intra_modal
        self.reduction = _check_reduction(reduction)

    def forward(
        self, video: torch.Tensor, text: torch.Tensor, same_video: torch.Tensor | None = None
    ) -> torch.Tensor:
        """video, text: (B, d) unit vectors, row i of each a positive pair -> scalar loss."""
        _require_pairs(video, text)
        is_negative = _negatives(same_video, len(video), video.device)
        scores = text @ video.T  # (B, B): scores[i, j] = s(t_i, v_j)
        positives = scores.diagonal().unsqueeze(1)  # (B, 1)
        hinge = {"margin": self.margin, "negatives": self.negatives, "is_negative": is_negative}
        loss = _hinges(positives, scores, **hinge)  # caption anchors
        loss = loss + _hinges(positives, scores.T, **hinge)  # video anchors
        if self.intra_modal:
            loss = loss + _hinges(positives, text @ text.T, **hinge)
            loss = loss + _hinges(positives, video @ video.T, **hinge)
        return _reduce(loss, self.reduction)


class InfoNCELoss(nn.Module):
    """Symmetric InfoNCE with temperature over a batch of matched pairs."""

    def __init__(
        self, temperature: float = 0.05, intra_modal: bool = False, reduction: str = "mean"
    ) -> None:
        super().__init__()
        self.temperature = temperature
        self.intra_modal = intra_modal
        self.reduction = _check_reduction(reduction)

    def forward(
        self, video: torch.Tensor, text: torch.Tensor, same_video: torch.Tensor | None = None
    ) -> torch.Tensor:
        """video, text: (B, d) unit vectors, row i of each a positive pair -> scalar loss."""
        _require_pairs(video, text)
        rows = len(video)
        diagonal = torch.eye(rows, dtype=torch.bool, device=video.device)
        not_negative = ~_negatives(same_video, rows, video.device) & ~diagonal  # other copies
        scores = (text @ video.T / self.temperature).masked_fill(not_negative, float("-inf"))
        targets = torch.arange(rows, device=video.device)
        caption_rows, video_rows = scores, scores.T  # (B, B)
        if self.intra_modal:
            same = not_negative | diagonal
            text_text = (text @ text.T / self.temperature).masked_fill(same, float("-inf"))
            video_video = (video @ video.T / self.temperature).masked_fill(same, float("-inf"))
            caption_rows = torch.cat([caption_rows, text_text], dim=1)  # (B, 2B)
            video_rows = torch.cat([video_rows, video_video], dim=1)
        per_anchor = 0.5 * (
            functional.cross_entropy(caption_rows, targets, reduction="none")
            + functional.cross_entropy(video_rows, targets, reduction="none")
        )
        return _reduce(per_anchor, self.reduction)


class MILNCELoss(nn.Module):
    """MIL-NCE over bags of captions: video (B, d), text (N, d), same_video (N, B) the bag
    of each video (default: caption i belongs to video i)."""

    def __init__(self, temperature: float = 0.05, reduction: str = "mean") -> None:
        super().__init__()
        self.temperature = temperature
        self.reduction = _check_reduction(reduction)

    def forward(
        self, video: torch.Tensor, text: torch.Tensor, same_video: torch.Tensor | None = None
    ) -> torch.Tensor:
        if same_video is None:
            same_video = torch.eye(len(text), len(video), dtype=torch.bool, device=video.device)
        scores = video @ text.T / self.temperature  # (B, N): s(v_i, t_p)
        positive = same_video.T  # (B, N)
        minus_inf = float("-inf")
        numerator = scores.masked_fill(~positive, minus_inf).logsumexp(dim=1)  # (B,)
        with_captions = scores.logsumexp(dim=1)  # positives and the other captions with v_i
        other_videos = scores.masked_fill(positive, minus_inf).logsumexp(dim=0)  # (N,)
        with_videos = other_videos[None, :].masked_fill(~positive, minus_inf).logsumexp(dim=1)
        denominator = torch.logaddexp(with_captions, with_videos)  # (B,)
        return _reduce(denominator - numerator, self.reduction)


def _require_pairs(video: torch.Tensor, text: torch.Tensor) -> None:
    if len(video) != len(text):
        raise ValueError(
            "this contrastive loss needs one caption per video; use training.loss milnce "
            "with training.captions_per_video above 1"
        )


def contrastive_loss(
    kind: str,
    margin: float,
    negatives: str,
    intra_modal: bool,
    temperature: float,
    reduction: str = "mean",
) -> nn.Module:
    """The contrastive loss named by the training settings."""
    if kind == "triplet":
        return HardNegativeTripletLoss(margin, negatives, intra_modal, reduction)
    if kind == "infonce":
        return InfoNCELoss(temperature, intra_modal, reduction)
    if kind == "milnce":
        return MILNCELoss(temperature, reduction)
    raise ValueError(f"unknown contrastive loss '{kind}'")
