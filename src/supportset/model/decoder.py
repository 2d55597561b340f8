"""The caption decoder of the cross-captioning objective: a T5 decoder (pre-trained t5-base
in production, the offline tiny T5 in the demo) that reads a mixed video sequence.
`training.decoder` names another T5 than text.model for it (Table 2d compares T5-small
and T5-base decoders); its vocabulary must be the text model's.

The support-set sequence e_bar (B, T', d) is projected to the decoder's width and given
as the encoder states its cross-attention reads; the loss is the token-level negative
log-likelihood of the caption's T5 token ids, averaged over the tokens of the (global)
batch (T5's own loss).
"""

from __future__ import annotations

import json

import torch
import transformers
from torch import nn
from torch.nn import functional

from supportset.features.text import TextModelError, missing_model_message


class CaptionDecoder(nn.Module):
    """Projection d -> d_model, T5 decoder stack and LM head."""

    def __init__(self, t5: transformers.T5ForConditionalGeneration, dim: int) -> None:
        super().__init__()
        self.config = t5.config
        self.projection = nn.Linear(dim, t5.config.d_model)
        self.decoder = t5.decoder
        self.lm_head = t5.lm_head

    def forward(
        self,
        memory: torch.Tensor,
        memory_valid: torch.Tensor,
        token_ids: torch.Tensor,
        token_valid: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(summed NLL, number of tokens) of captions (B, L) given memory (B, T', d); their
        ratio is T5's token-averaged loss (the caller divides, possibly over all ranks)."""
        start = torch.full_like(token_ids[:, :1], self.config.decoder_start_token_id)
        inputs = torch.cat([start, token_ids[:, :-1]], dim=1)  # teacher forcing, shifted right
        hidden = self.decoder(
            input_ids=inputs,
            attention_mask=token_valid.long(),
            encoder_hidden_states=self.projection(memory),
            encoder_attention_mask=memory_valid.long(),
        ).last_hidden_state  # (B, L, d_model)
        if scales_outputs(self.config):
            hidden = hidden * self.config.d_model**-0.5
        logits = self.lm_head(hidden)  # (B, L, vocab)
        targets = token_ids.masked_fill(~token_valid, -100)
        nll = functional.cross_entropy(
            logits.transpose(1, 2), targets, ignore_index=-100, reduction="sum"
        )
        return nll, token_valid.sum().to(nll.dtype)


def scales_outputs(config: transformers.T5Config) -> bool:
    """Whether T5 scales the decoder's output by d_model^-0.5 before the LM head, as
    T5ForConditionalGeneration (and so `generate`) does: the original T5 does, v1.1 does
    not. Transformers 5 says so in `scale_decoder_outputs` (and ties the embeddings of
    every T5); older versions in `tie_word_embeddings`."""
    return getattr(config, "scale_decoder_outputs", config.tie_word_embeddings)


def decoder_record(decoder: CaptionDecoder | None, state: dict, memory: str) -> dict | None:
    """What model.pt keeps of the caption decoder (None without one): its weights `state`,
    its T5 configuration (JSON), the width of the memory it reads and which memory that is
    (training.caption_memory: 'features' or 'head'), so that it can be rebuilt offline."""
    if decoder is None:
        return None
    return {
        "state": state,
        "t5_config": decoder.config.to_json_string(),
        "memory_dim": decoder.projection.in_features,
        "memory": memory,
    }


def decoder_from_record(
    record: dict,
) -> tuple[CaptionDecoder, transformers.T5ForConditionalGeneration]:
    """The CaptionDecoder of a `decoder_record`, in eval mode, and the T5 around it whose
    `generate` runs it (its decoder stack and LM head are the CaptionDecoder's; its
    encoder is never run: generation is given the projected memory as encoder states)."""
    saved = json.loads(record["t5_config"])
    config = transformers.T5Config.from_dict(saved)
    if "scale_decoder_outputs" in saved:  # transformers 5 re-derives it from the tie flag
        config.scale_decoder_outputs = saved["scale_decoder_outputs"]
    t5 = transformers.T5ForConditionalGeneration(config)
    decoder = CaptionDecoder(t5, record["memory_dim"])
    decoder.load_state_dict(record["state"])
    return decoder.eval(), t5.eval()


def load_caption_decoder(model: str, dim: int, setting: str = "text.model") -> CaptionDecoder:
    """A CaptionDecoder with the decoder of T5 `model` (local directory or HF cache only),
    named by `setting` (text.model, or training.decoder when that is set)."""
    try:
        t5 = transformers.T5ForConditionalGeneration.from_pretrained(model, local_files_only=True)
    except OSError as error:
        raise TextModelError(_missing_message(model, setting)) from error
    return CaptionDecoder(t5, dim)


def check_decoder_available(model: str) -> None:
    """Raise TextModelError unless the config of `training.decoder` `model` loads offline."""
    _config(model, "training.decoder")


def check_same_vocabulary(decoder: str, text_model: str) -> None:
    """Stop unless T5 `decoder` (training.decoder) has the vocabulary of `text_model`, whose
    token ids the text shards hold and the decoder learns to predict (t5-small and t5-base
    share one); compares the configs' vocab_size, from local files only."""
    decoder_size = _config(decoder, "training.decoder").vocab_size
    text_size = _config(text_model, "text.model").vocab_size
    if decoder_size != text_size:
        raise ValueError(
            f"training.decoder '{decoder}' has a vocabulary of {decoder_size} tokens, but the "
            f"captions are token ids of text.model '{text_model}' ({text_size} tokens): use a "
            "decoder of the same vocabulary (t5-small and t5-base share one)"
        )


def _config(model: str, setting: str) -> transformers.PretrainedConfig:
    try:
        return transformers.AutoConfig.from_pretrained(model, local_files_only=True)
    except OSError as error:
        raise TextModelError(_missing_message(model, setting)) from error


def _missing_message(model: str, setting: str) -> str:
    """text.model's own message (it names the tokenizer, which text.model needs too), or
    the same advice for the T5 that `setting` names."""
    if setting == "text.model":
        return missing_model_message(model)
    return (
        f"{setting} '{model}' is not available offline. Either set {setting} to a local "
        f"directory holding the T5 model, or fill the Hugging Face cache (HF_HOME, default "
        f'~/.cache/huggingface) on a machine with internet: python -c "import transformers '
        f"as t; t.T5ForConditionalGeneration.from_pretrained('{model}')\""
    )
