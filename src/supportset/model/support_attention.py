"""Support-set attention of the cross-captioning objective (paper eq. 3, fig. 2b).

For caption i the decoder reads e_bar_i = sum_j w_ij e_v^j over a support set S_i, with
w_ij = softmax_{j in S_i}(<c_t^i, c_v^j> / T). Variants:
  identity  S_i = {i}: plain captioning of the caption's own video (eq. 2);
  full      S_i = the whole batch;
  hybrid    the mean of the identity and full weights;
  cross     S_i = the batch without i (the paper's default): caption i must be
            reconstructed from other videos only. With epochs over pairs a batch can hold
            another caption of the same video, in a row of its own; cross leaves out every
            row of caption i's video, so that it is never reconstructed from its own video.
A support-set size k > 0 draws S_i as k random members of the allowed set (Table 2f).
e_v^j is the caption memory (`training.caption_memory`): by default the video encoder's
output Psi'(v), the frozen per-second features (section 3.2). Sequences of different
lengths are mixed position by position, padding counting as zeros, and a mixed position
is valid where any weighted video is.
"""

from __future__ import annotations

import torch
from torch.nn import functional


def support_weights(
    c_t: torch.Tensor,
    c_v: torch.Tensor,
    variant: str,
    temperature: float,
    support_size: int = 0,
    generator: torch.Generator | None = None,
    owners: torch.Tensor | None = None,
    same_video: torch.Tensor | None = None,
) -> torch.Tensor:
    """Attention weights (N, B), rows summing to one, for captions c_t (N, d) over videos
    c_v (B, d), unit vectors; owners (N,) is each caption's own video row (default: caption
    i belongs to video i, N = B) and same_video (N, B) bool every row showing that video
    (default: the owner's row only)."""
    if owners is None:
        owners = torch.arange(len(c_t), device=c_t.device)
    identity = functional.one_hot(owners, len(c_v)).to(c_t.dtype)  # (N, B)
    if variant == "identity":
        return identity
    if variant not in ("full", "hybrid", "cross"):
        raise ValueError(f"unknown captioning variant '{variant}'")
    if same_video is None:
        same_video = identity.bool()
    allowed = ~same_video if variant == "cross" else torch.ones_like(same_video)
    if support_size > 0:
        allowed &= _random_subsets(allowed, support_size, generator)
    logits = (c_t @ c_v.T / temperature).masked_fill(~allowed, float("-inf"))  # (N, B)
    weights = logits.softmax(dim=1)
    return 0.5 * (identity + weights) if variant == "hybrid" else weights


def mix(
    weights: torch.Tensor, e_v: torch.Tensor, valid: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """e_bar (B, T', d) = weights (B, B) applied over the batch axis of e_v (B, T', d);
    its mask (B, T') is true where any video with a non-zero weight is valid."""
    e_bar = torch.einsum("ij,jtd->itd", weights, e_v * valid.unsqueeze(-1))
    mixed_valid = (weights > 0).float() @ valid.float() > 0
    return e_bar, mixed_valid


def _random_subsets(
    allowed: torch.Tensor, size: int, generator: torch.Generator | None
) -> torch.Tensor:
    """Per row, `size` random members of the allowed set (all of them if fewer)."""
    scores = torch.rand(allowed.shape, generator=generator).to(allowed.device)
    scores = scores.masked_fill(~allowed, -1.0)
    keep = scores.topk(min(size, allowed.shape[1]), dim=1).indices
    chosen = torch.zeros_like(allowed).scatter_(1, keep, True)
    return chosen & allowed
