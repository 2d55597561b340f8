"""The `embed_text` stage: T5 token ids and per-token encoder states for every caption.

Captions are tokenised with the model's tokenizer (ending in </s>), truncated to
`max_tokens`, and encoded by the T5 encoder into one d_model-dim vector per token
(768 for t5-base). Batches are grouped by length so that little padding is computed.
Models load from the Hugging Face cache or a local directory only, never the network.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import transformers

from supportset import __version__
from supportset.data.manifest import read_captions
from supportset.features.store import write_text_shard
from supportset.torch_utils import autocast, pick_device

log = logging.getLogger(__name__)


@dataclass
class TinyT5Settings:
    d_model: int = 64  # width of the offline T5
    num_layers: int = 2  # encoder and decoder layers
    num_heads: int = 4  # attention heads
    d_ff: int = 128  # feed-forward width
    vocab_size: int = 512  # tokenizer vocabulary trained on the training captions
    seed: int = 0  # random initialisation


@dataclass
class TextSettings:
    model: str = "t5-base"  # HF cache name, local directory, or "tiny"
    max_tokens: int = 100  # truncation, </s> included
    dtype: str = "float16"  # storage type of the token states
    batch_size: int = 64  # captions per forward pass
    shards: int = 1  # independent jobs
    tiny: TinyT5Settings = field(default_factory=TinyT5Settings)


class TextModelError(RuntimeError):
    """A T5 that is not available offline; the message says how to provide it."""


def load_t5(model: str) -> tuple[transformers.PreTrainedTokenizerBase, transformers.T5EncoderModel]:
    """Tokenizer and encoder from a local directory or the Hugging Face cache (no network)."""
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(model, local_files_only=True)
        encoder = transformers.T5EncoderModel.from_pretrained(model, local_files_only=True)
    except OSError as error:
        raise TextModelError(_missing_model_message(model)) from error
    return tokenizer, encoder.eval()


def _missing_model_message(model: str) -> str:
    return (
        f"text.model '{model}' is not available offline. Either set text.model to a local "
        f"directory holding the model and tokenizer, or fill the Hugging Face cache "
        f"(HF_HOME, default ~/.cache/huggingface) on a machine with internet: "
        f"python -c \"import transformers as t; t.AutoTokenizer.from_pretrained('{model}'); "
        f"t.T5EncoderModel.from_pretrained('{model}')\""
    )


def check_model_available(model: str) -> None:
    """Raise TextModelError unless the config and tokenizer of `model` load offline."""
    try:
        transformers.AutoConfig.from_pretrained(model, local_files_only=True)
        transformers.AutoTokenizer.from_pretrained(model, local_files_only=True)
    except OSError as error:
        raise TextModelError(_missing_model_message(model)) from error


def tokenize(
    tokenizer: transformers.PreTrainedTokenizerBase, texts: list[str], max_tokens: int
) -> list[np.ndarray]:
    """Token ids per text, (L_i,) int64, truncated to `max_tokens` (</s> kept last)."""
    encoded = tokenizer(texts, truncation=True, max_length=max_tokens)
    return [np.array(ids, dtype=np.int64) for ids in encoded["input_ids"]]


def length_batches(lengths: list[int], batch_size: int) -> list[np.ndarray]:
    """Indices grouped into batches of similar length (longest first), to minimise padding."""
    order = np.argsort(-np.array(lengths), kind="stable")
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


@torch.inference_mode()
def encode(
    encoder: transformers.T5EncoderModel, token_ids: list[np.ndarray], batch_size: int, pad_id: int
) -> list[np.ndarray]:
    """Encoder states per text, float32 (L_i, d_model), in the order of `token_ids`."""
    device = next(encoder.parameters()).device
    states: list[np.ndarray | None] = [None] * len(token_ids)
    for batch in length_batches([len(ids) for ids in token_ids], batch_size):
        width = max(len(token_ids[i]) for i in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, index in enumerate(batch):
            ids[row, : len(token_ids[index])] = torch.from_numpy(token_ids[index])
            mask[row, : len(token_ids[index])] = 1
        with autocast(device):
            hidden = encoder(
                input_ids=ids.to(device), attention_mask=mask.to(device)
            ).last_hidden_state
        hidden = hidden.float().cpu().numpy()  # (B, width, d_model)
        for row, index in enumerate(batch):
            states[index] = hidden[row, : len(token_ids[index])]
    return states


def embed_shard(
    manifest: str | Path, shard: int, settings: TextSettings, model_dir: str | None, out: str | Path
) -> int:
    """Embed the captions of one shard (every shards-th caption); return their count.

    `model_dir` replaces `settings.model` when the model was built by the pipeline ('tiny').
    """
    captions = read_captions(manifest)[shard :: settings.shards]
    model = model_dir or settings.model
    tokenizer, encoder = load_t5(model)
    encoder.to(pick_device())
    texts = [caption["text"] for caption in captions]
    token_ids = tokenize(tokenizer, texts, settings.max_tokens)
    states = encode(encoder, token_ids, settings.batch_size, tokenizer.pad_token_id)
    metadata = {
        "stage": "embed_text",
        "model": model,
        "settings": asdict(settings),
        "dim": encoder.config.d_model,
        "version": __version__,
    }
    write_text_shard(
        out,
        [caption["caption_id"] for caption in captions],
        [caption["video_id"] for caption in captions],
        token_ids,
        states,
        encoder.config.d_model,
        settings.dtype,
        metadata,
    )
    log.info("embedded %d captions with %s", len(captions), model)
    return len(captions)
