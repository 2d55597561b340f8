"""Contrastive objectives (paper eq. 1 and the variants of Table 2e).

Inputs are (B, d) unit vectors of videos and captions, row i of each a positive pair;
s is the cosine similarity.

Triplet (the paper's, after VSE++), with margin a and hardest negatives:
  L = 1/B sum_i [ max_{j!=i} [a - s(t_i, v_i) + s(t_i, v_j)]_+
                + max_{j!=i} [a - s(t_i, v_i) + s(t_j, v_i)]_+ ]
`negatives="sum"` sums the hinges over j instead of taking the largest (VSE0).
InfoNCE with temperature tau: cross-entropy of each caption over the videos and of each
video over the captions, averaged over both directions.
`intra_modal=True` adds same-modality negatives: for caption i the other captions t_j
(s(t_i, t_j) against s(t_i, v_i)), for video i the other videos v_j.
MIL-NCE (Miech et al. 2020) takes several captions per video: video i's bag of positive
captions P_i against the negatives on both sides of the bag, the other captions with v_i
and the other videos with each caption of P_i:
  L = 1/B sum_i -log( sum_{p in P_i} e^{s(v_i, t_p)/tau}
                      / (sum_{p in P_i} e^{s(v_i, t_p)/tau} + sum_{negatives} e^{s/tau}) )
The other losses need one caption per video (`owners` None or the identity).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional


def _hinges(
    positives: torch.Tensor, scores: torch.Tensor, margin: float, negatives: str
) -> torch.Tensor:
    """Per anchor (row): hinge [margin - positive + score]_+ over the off-diagonal scores,
    reduced by max ('hardest') or sum ('sum'). positives (B, 1), scores (B, B) -> (B,)."""
    off_diagonal = ~torch.eye(len(scores), dtype=torch.bool, device=scores.device)
    hinges = (margin - positives + scores).clamp(min=0) * off_diagonal
    return hinges.amax(dim=1) if negatives == "hardest" else hinges.sum(dim=1)


class HardNegativeTripletLoss(nn.Module):
    """Bidirectional triplet loss over a batch of matched pairs (eq. 1)."""

    def __init__(
        self, margin: float = 0.2, negatives: str = "hardest", intra_modal: bool = False
    ) -> None:
        super().__init__()
        if negatives not in ("hardest", "sum"):
            raise ValueError(f"unknown negatives '{negatives}'")
        self.margin = margin
        self.negatives = negatives
        self.intra_modal = intra_modal

    def forward(
        self, video: torch.Tensor, text: torch.Tensor, owners: torch.Tensor | None = None
    ) -> torch.Tensor:
        """video, text: (B, d) unit vectors, row i of each a positive pair -> scalar loss."""
        _require_pairs(video, text, owners)
        scores = text @ video.T  # (B, B): scores[i, j] = s(t_i, v_j)
        positives = scores.diagonal().unsqueeze(1)  # (B, 1)
        loss = _hinges(positives, scores, self.margin, self.negatives)  # caption anchors
        loss = loss + _hinges(positives, scores.T, self.margin, self.negatives)  # video anchors
        if self.intra_modal:
            loss = loss + _hinges(positives, text @ text.T, self.margin, self.negatives)
            loss = loss + _hinges(positives, video @ video.T, self.margin, self.negatives)
        return loss.mean()


class InfoNCELoss(nn.Module):
    """Symmetric InfoNCE with temperature over a batch of matched pairs."""

    def __init__(self, temperature: float = 0.05, intra_modal: bool = False) -> None:
        super().__init__()
        self.temperature = temperature
        self.intra_modal = intra_modal

    def forward(
        self, video: torch.Tensor, text: torch.Tensor, owners: torch.Tensor | None = None
    ) -> torch.Tensor:
        """video, text: (B, d) unit vectors, row i of each a positive pair -> scalar loss."""
        _require_pairs(video, text, owners)
        scores = text @ video.T / self.temperature  # (B, B)
        targets = torch.arange(len(scores), device=scores.device)
        if not self.intra_modal:
            return 0.5 * (
                functional.cross_entropy(scores, targets)
                + functional.cross_entropy(scores.T, targets)
            )
        same = torch.eye(len(scores), dtype=torch.bool, device=scores.device)
        text_text = (text @ text.T / self.temperature).masked_fill(same, float("-inf"))
        video_video = (video @ video.T / self.temperature).masked_fill(same, float("-inf"))
        caption_rows = torch.cat([scores, text_text], dim=1)  # (B, 2B)
        video_rows = torch.cat([scores.T, video_video], dim=1)
        return 0.5 * (
            functional.cross_entropy(caption_rows, targets)
            + functional.cross_entropy(video_rows, targets)
        )


class MILNCELoss(nn.Module):
    """MIL-NCE over bags of captions: video (B, d), text (N, d), owners (N,) video of each."""

    def __init__(self, temperature: float = 0.05) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(
        self, video: torch.Tensor, text: torch.Tensor, owners: torch.Tensor | None = None
    ) -> torch.Tensor:
        if owners is None:
            owners = torch.arange(len(text), device=text.device)
        scores = video @ text.T / self.temperature  # (B, N): s(v_i, t_p)
        positive = owners[None, :] == torch.arange(len(video), device=video.device)[:, None]
        minus_inf = float("-inf")
        numerator = scores.masked_fill(~positive, minus_inf).logsumexp(dim=1)  # (B,)
        with_captions = scores.logsumexp(dim=1)  # positives and the other captions with v_i
        other_videos = scores.masked_fill(positive, minus_inf).logsumexp(dim=0)  # (N,)
        with_videos = other_videos[None, :].masked_fill(~positive, minus_inf).logsumexp(dim=1)
        denominator = torch.logaddexp(with_captions, with_videos)  # (B,)
        return (denominator - numerator).mean()


def _require_pairs(video: torch.Tensor, text: torch.Tensor, owners: torch.Tensor | None) -> None:
    pairs = owners is None or (
        len(owners) == len(video)
        and torch.equal(owners, torch.arange(len(video), device=owners.device))
    )
    if not pairs or len(video) != len(text):
        raise ValueError(
            "this contrastive loss needs one caption per video; use training.loss milnce "
            "with training.captions_per_video above 1"
        )


def contrastive_loss(
    kind: str, margin: float, negatives: str, intra_modal: bool, temperature: float
) -> nn.Module:
    """The contrastive loss named by the training settings."""
    if kind == "triplet":
        return HardNegativeTripletLoss(margin, negatives, intra_modal)
    if kind == "infonce":
        return InfoNCELoss(temperature, intra_modal)
    if kind == "milnce":
        return MILNCELoss(temperature)
    raise ValueError(f"unknown contrastive loss '{kind}'")
