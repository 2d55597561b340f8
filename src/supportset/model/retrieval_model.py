"""The support-set model: a video and a text pooling head into one joint space.

c_v = Psi(e_v) from visual features (B, T, D_v); c_t = Phi(e_t) from T5 token states
(B, L, D_t), or from token ids through a T5 encoder trained with the heads when
`text_encoder` is 'finetune' (the paper's setting); both (B, d), L2-normalised so that
dot products are cosine similarities.
With `input_norm: standardize` the visual features are first shifted and scaled per
dimension by statistics of the training split (stored in the checkpoint); the paper feeds
pre-trained features unchanged, which is the default.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import transformers
from torch import nn
from torch.nn import functional

from supportset.model.pooling import PoolingHead, Standardize, pre_encoder


@dataclass
class ModelConfig:
    dim: int = 1024  # joint embedding dimension d
    heads: int = 4  # attention heads per pooling layer
    ffn_dim: int = 2048  # feed-forward hidden width
    layers: int = 2  # transformer layers per head
    dropout: float = 0.3  # dropout in the heads (0.0 for ActivityNet)
    pooling: str = "transformer"  # video head: transformer | mean | max (Table 2b)
    input_norm: str = "none"  # none | standardize: visual features to zero mean, unit variance
    # Pre-encoders f: mlp | cnn | mlp+cnn (video), gru | cnn | gru+cnn (text). The chained
    # readings are the only ones that use every component both passages name: the MLP maps
    # into the embedding space (appendix 6.1), the CNN is the f of eq. 4 ("we integrate CNNs
    # into our transformer pooling heads", section 3.2); the text keeps its RNN (section 3.2)
    # and gets the CNN "as the ... text pre-encoders" (appendix 6.1).
    video_pre_encoder: str = "mlp+cnn"
    text_pre_encoder: str = "gru+cnn"
    # finetune: the T5 encoder trained with the heads, as 3.2 does ("we use eq. (3) to
    # finetune the parameters of all networks except the video encoder"); frozen: the
    # cached T5 states of embed_text (several times cheaper)
    text_encoder: str = "finetune"
    # both: the appearance and motion features concatenated, the paper's model; appearance
    # or motion: one of them alone (Table 2a), sliced from the stored features
    visual_features: str = "both"


class SupportSetModel(nn.Module):
    """Video and text pooling heads; `forward` returns normalised (c_v, c_t), each (B, d)."""

    def __init__(
        self,
        config: ModelConfig,
        video_dim: int,
        text_dim: int,
        t5_encoder: transformers.T5EncoderModel | None = None,
    ) -> None:
        super().__init__()
        if (config.text_encoder == "finetune") != (t5_encoder is not None):
            raise ValueError("model.text_encoder 'finetune' needs the T5 encoder, 'frozen' none")
        self.config = config
        self.video_dim = video_dim  # widths of the inputs (text: T5's d_model)
        self.text_dim = text_dim
        self.t5_encoder = t5_encoder
        head = dict(
            dim=config.dim,
            heads=config.heads,
            ffn_dim=config.ffn_dim,
            layers=config.layers,
            dropout=config.dropout,
            pooling=config.pooling,
        )
        self.video_norm = Standardize(video_dim)
        dim, dropout = config.dim, config.dropout
        video_pre = pre_encoder(
            "model.video_pre_encoder", config.video_pre_encoder, video_dim, dim, dropout
        )
        text_pre = pre_encoder(
            "model.text_pre_encoder", config.text_pre_encoder, text_dim, dim, dropout
        )
        self.video_head = PoolingHead(video_pre, **head)
        text_head = {**head, "pooling": "transformer"}  # Table 2b ablates the video side only
        self.text_head = PoolingHead(text_pre, **text_head)

    def embed_videos(self, features: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """(B, T, D_v), (B, T) bool -> (B, d) unit vectors."""
        return self.encode_videos(features, valid)[0]

    def encode_videos(
        self, features: torch.Tensor, valid: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """c_v (B, d) unit vectors, and e_v: the video head's contextualised sequence
        (B, T', d) with its mask (B, T'), which cross-captioning mixes across the batch."""
        e_v, e_valid = self.video_head.contextualise(self.video_norm(features), valid)
        c_v = functional.normalize(self.video_head.pool(e_v, e_valid), dim=-1)
        return c_v, e_v, e_valid

    def embed_texts(self, text: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Cached T5 states (B, L, D_t), or token ids (B, L) when the T5 encoder is
        fine-tuned, with their (B, L) mask -> (B, d) unit vectors."""
        if self.t5_encoder is not None:
            text = self.t5_encoder(input_ids=text, attention_mask=valid.long()).last_hidden_state
        return functional.normalize(self.text_head(text, valid), dim=-1)

    def forward(
        self,
        video: torch.Tensor,
        video_valid: torch.Tensor,
        text: torch.Tensor,
        text_valid: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.embed_videos(video, video_valid), self.embed_texts(text, text_valid)
