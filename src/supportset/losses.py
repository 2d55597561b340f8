"""Contrastive objective of the paper (eq. 1): hinge triplet loss with the hardest negative.

L = 1/B sum_i [ max_j [a - s(t_i, v_i) + s(t_i, v_j)]_+ + max_j [a - s(t_i, v_i) + s(t_j, v_i)]_+ ]
over j != i, with s the cosine similarity and a the margin (0.2), following VSE++.
"""

from __future__ import annotations

import torch
from torch import nn


class HardNegativeTripletLoss(nn.Module):
    """Bidirectional max-of-hinges triplet loss over a batch of matched pairs."""

    def __init__(self, margin: float = 0.2) -> None:
        super().__init__()
        self.margin = margin

    def forward(self, video: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """video, text: (B, d) unit vectors, row i of each a positive pair -> scalar loss."""
        scores = text @ video.T  # (B, B): scores[i, j] = s(t_i, v_j)
        positives = scores.diagonal().unsqueeze(1)  # (B, 1)
        is_positive = torch.eye(len(scores), dtype=torch.bool, device=scores.device)
        text_to_video = (self.margin - positives + scores).clamp(min=0).masked_fill(is_positive, 0)
        video_to_text = (
            (self.margin - positives.T + scores).clamp(min=0).masked_fill(is_positive, 0)
        )
        hardest_video = text_to_video.amax(dim=1)  # for each caption, its hardest wrong video
        hardest_text = video_to_text.amax(dim=0)  # for each video, its hardest wrong caption
        return (hardest_video + hardest_text).mean()
