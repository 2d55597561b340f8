"""Transformer pooling heads (paper section 3.2, eq. 4, fig. 4).

A head maps a padded sequence (B, T, D_in) with a validity mask (B, T) to one vector (B, d):
pre-encoder f -> prepend a learned aggregation token -> `layers` x
[e_attn = BN(MHA(e) + e); e = BN(FFN(e_attn) + e_attn)] -> the aggregation token's output
(the first position). Padding is masked in attention and BatchNorm statistics are computed
over valid positions only. `mean` and `max` pooling of the pre-encoded sequence are the
ablations of the paper's Table 2b.

The paper names the pre-encoders twice. Section 3.2: "we integrate CNNs into our transformer
pooling heads to better capture video temporal signals ... f is a pre-encoder that refines the
video representation; we found empirically that a 1D CNN works well for this purpose", and
for text "f is set to a recurrent neural network (RNN) instead of a CNN". Appendix 6.1: "we
use a one-layer MLP with a d-dimensional output for mapping video features into the common
embedding space. We use 1024-dimension bi-directional GRU as the text pre-encoder. For the
1D-CNN prior, we use kernels with size [2, 3, 4, 6] as the visual and text pre-encoders."
`pre_encoder` builds f from its setting:
- video (`model.video_pre_encoder`): `mlp` (the MLP alone), `cnn` (the 1D-CNN on the raw
  features) or `mlp+cnn` (the MLP maps D_in -> d, then the 1D-CNN d -> d);
- text (`model.text_pre_encoder`): `gru` (the bi-GRU alone), `cnn` (the 1D-CNN on the T5
  states) or `gru+cnn` (the bi-GRU maps D_in -> d, then the 1D-CNN d -> d).
Every pre-encoder returns zeros at padded positions, and padded inputs never reach valid ones.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from supportset.distributed import all_sum


class MaskedBatchNorm1d(nn.Module):
    """BatchNorm over the feature axis of (B, T, d), with statistics from valid positions
    only, summed over all ranks when training is distributed (so that one process on a
    global batch and several on its slices compute the same thing)."""

    def __init__(self, dim: int, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.momentum = momentum
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.register_buffer("running_mean", torch.zeros(dim))
        self.register_buffer("running_var", torch.ones(dim))

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        values = x[valid]  # (N_valid, d)
        if self.training:
            count = values.new_tensor([len(values)], dtype=values.dtype)
            sums = all_sum(torch.cat([values.sum(dim=0), count]))
            total = sums[-1]
            mean = sums[:-1] / total
            centred_sq = all_sum(((values - mean) ** 2).sum(dim=0))
            var = centred_sq / total
            with torch.no_grad():
                unbiased = var * total / (total - 1).clamp(min=1)
                self.running_mean.lerp_(mean.detach(), self.momentum)
                self.running_var.lerp_(unbiased.detach(), self.momentum)
        else:
            mean, var = self.running_mean, self.running_var
        out = torch.zeros_like(x)
        out[valid] = (values - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias
        return out


class Standardize(nn.Module):
    """Per-dimension (x - mean) / std with fixed statistics; the identity until `fit`."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def fit(self, sequences: Iterable[np.ndarray], eps: float = 1e-3) -> None:
        """Statistics over every time step of `sequences`, each (T_i, dim)."""
        total = np.zeros(self.mean.shape[0])
        total_sq = np.zeros(self.mean.shape[0])
        count = 0
        for sequence in sequences:
            values = sequence.astype(np.float64)
            total += values.sum(axis=0)
            total_sq += (values**2).sum(axis=0)
            count += len(values)
        mean = total / count
        std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0)) + eps
        self.mean.copy_(torch.from_numpy(mean))
        self.std.copy_(torch.from_numpy(std))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class PoolingLayer(nn.Module):
    """One layer of eq. 4: BN(FFN(e_attn) + e_attn), e_attn = BN(MHA(e) + e)."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.attention_norm = MaskedBatchNorm1d(dim)
        self.ffn = nn.Sequential(
            nn.Linear(dim, ffn_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn_dim, dim)
        )
        self.ffn_norm = MaskedBatchNorm1d(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, e: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        attended, _ = self.attention(e, e, e, key_padding_mask=~valid, need_weights=False)
        e_attn = self.attention_norm(self.dropout(attended) + e, valid)  # (B, T, d)
        return self.ffn_norm(self.dropout(self.ffn(e_attn)) + e_attn, valid)


class MLPPreEncoder(nn.Module):
    """Video pre-encoder: one linear layer + ReLU per time step, (B, T, D_in) -> (B, T, d)."""

    def __init__(self, in_dim: int, dim: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, dim), nn.ReLU())

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        return self.net(x) * valid.unsqueeze(-1)


class GRUPreEncoder(nn.Module):
    """Text pre-encoder: bi-GRU, d/2 units per direction, (B, T, D_in) -> (B, T, d)."""

    def __init__(self, in_dim: int, dim: int, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.gru = nn.GRU(in_dim, dim // 2, batch_first=True, bidirectional=True)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        lengths = valid.sum(dim=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(
            self.dropout(x), lengths, batch_first=True, enforce_sorted=False
        )
        out, _ = self.gru(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return out  # (B, T, d), zeros at padding


class CNNPreEncoder(nn.Module):
    """1D-CNN pre-encoder (appendix 6.1): parallel temporal convolutions with kernels
    2, 3, 4 and 6 ('same' length, padding outside the sequence counts as zeros), each with
    d/4 channels, concatenated and ReLU-ed; (B, T, D_in) -> (B, T, d)."""

    KERNELS = (2, 3, 4, 6)

    def __init__(self, in_dim: int, dim: int, dropout: float) -> None:
        super().__init__()
        if dim % len(self.KERNELS):
            raise ValueError(f"model.dim {dim} must be divisible by {len(self.KERNELS)}")
        self.dropout = nn.Dropout(dropout)
        self.convs = nn.ModuleList(
            nn.Conv1d(in_dim, dim // len(self.KERNELS), kernel) for kernel in self.KERNELS
        )

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        x = (self.dropout(x) * valid.unsqueeze(-1)).transpose(1, 2)  # (B, D_in, T)
        outputs = [
            conv(functional.pad(x, ((kernel - 1) // 2, kernel // 2)))
            for conv, kernel in zip(self.convs, self.KERNELS, strict=True)
        ]
        return torch.relu(torch.cat(outputs, dim=1)).transpose(1, 2) * valid.unsqueeze(-1)


class ChainedPreEncoder(nn.Module):
    """Pre-encoders applied in turn, (B, T, D_in) -> (B, T, d): the first maps D_in -> d, the
    rest d -> d. Each stage zeroes padded positions, so the chain does too."""

    def __init__(self, stages: Iterable[nn.Module]) -> None:
        super().__init__()
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            x = stage(x, valid)
        return x


PRE_ENCODER_STAGES = {"mlp": MLPPreEncoder, "gru": GRUPreEncoder, "cnn": CNNPreEncoder}
PRE_ENCODER_CHOICES = {
    "model.video_pre_encoder": ("mlp", "cnn", "mlp+cnn"),
    "model.text_pre_encoder": ("gru", "cnn", "gru+cnn"),
}


def pre_encoder(setting: str, name: str, in_dim: int, dim: int, dropout: float) -> nn.Module:
    """The pre-encoder f called `name` for `setting` (a key of PRE_ENCODER_CHOICES),
    (B, T, in_dim) -> (B, T, dim). A single name is that module itself (so its state-dict
    keys are those of older checkpoints); 'a+b' chains a (in_dim -> dim) and b (dim -> dim),
    each stage with its own input dropout."""
    if name not in PRE_ENCODER_CHOICES[setting]:
        raise ValueError(f"{setting} must be one of {PRE_ENCODER_CHOICES[setting]}, got '{name}'")
    first, *rest = name.split("+")
    stages = [PRE_ENCODER_STAGES[first](in_dim, dim, dropout)]
    stages += [PRE_ENCODER_STAGES[stage](dim, dim, dropout) for stage in rest]
    return stages[0] if len(stages) == 1 else ChainedPreEncoder(stages)


class PoolingHead(nn.Module):
    """Pre-encoder followed by transformer, mean or max pooling: (B, T, D_in) -> (B, d)."""

    def __init__(
        self,
        pre_encoder: nn.Module,
        dim: int,
        heads: int,
        ffn_dim: int,
        layers: int,
        dropout: float,
        pooling: str,
    ) -> None:
        super().__init__()
        if pooling not in ("transformer", "mean", "max"):
            raise ValueError(f"unknown pooling '{pooling}'")
        self.pre_encoder = pre_encoder
        self.pooling = pooling
        self.aggregation_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.layers = nn.ModuleList(
            PoolingLayer(dim, heads, ffn_dim, dropout)
            for _ in range(layers if pooling == "transformer" else 0)
        )

    def contextualise(
        self, x: torch.Tensor, valid: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The sequence the head pools, with its mask: (B, 1+T, d) after the transformer
        layers (position 0 is the aggregation token), or (B, T, d) pre-encoded for mean/max."""
        e = self.pre_encoder(x, valid)  # (B, T, d)
        if self.pooling != "transformer":
            return e, valid
        batch = e.shape[0]
        e = torch.cat([self.aggregation_token.expand(batch, -1, -1), e], dim=1)  # (B, 1+T, d)
        valid = torch.cat([valid.new_ones(batch, 1), valid], dim=1)
        for layer in self.layers:
            e = layer(e, valid)
        return e, valid

    def pool(self, e: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """(B, T', d) contextualised sequence -> (B, d)."""
        if self.pooling == "mean":
            return e.sum(dim=1) / valid.sum(dim=1, keepdim=True).clamp(min=1)
        if self.pooling == "max":
            return e.masked_fill(~valid.unsqueeze(-1), float("-inf")).amax(dim=1)
        return e[:, 0]

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        return self.pool(*self.contextualise(x, valid))  # (B, d)
