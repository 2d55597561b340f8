"""The `embed_text` stage: T5 token ids and per-token encoder states for every caption.

Captions are tokenised with the model's tokenizer (ending in </s>), truncated to
`max_tokens`, and encoded by the T5 encoder into one d_model-dim vector per token
(768 for t5-base). Batches are grouped by length so that little padding is computed.
Models load from the Hugging Face cache or a local directory only, never the network.
The shards' metadata names the model, its revision and `tokenizer_sha256`, the fingerprint
of the tokenizer's vocabulary, which says what the stored token ids mean.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import transformers

from supportset import __version__
from supportset.data.manifest import read_captions
from supportset.features.store import ShardWriter, text_schema, write_rejects
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
    format: str = "parquet"  # parquet | hdf5
    batch_size: int = 64  # captions per forward pass
    shards: int = 1  # independent jobs
    tiny: TinyT5Settings = field(default_factory=TinyT5Settings)


class TextModelError(RuntimeError):
    """A T5 that is not available offline; the message says how to provide it."""


def load_t5(model: str) -> tuple[transformers.PreTrainedTokenizerBase, transformers.T5EncoderModel]:
    """Tokenizer and encoder from a local directory or the Hugging Face cache (no network)."""
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(model, local_files_only=True)
    except OSError as error:
        raise TextModelError(missing_model_message(model)) from error
    return tokenizer, load_t5_encoder(model).eval()


def load_t5_encoder(model: str) -> transformers.T5EncoderModel:
    """The T5 encoder alone, from a local directory or the Hugging Face cache (no network)."""
    try:
        return transformers.T5EncoderModel.from_pretrained(model, local_files_only=True)
    except OSError as error:
        raise TextModelError(missing_model_message(model)) from error


def missing_model_message(model: str) -> str:
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
        raise TextModelError(missing_model_message(model)) from error


def tokenize(tokenizer: transformers.PreTrainedTokenizerBase, texts: list[str]) -> list[np.ndarray]:
    """Token ids per text, (L_i,) int64, ending in </s>, not truncated."""
    encoded = tokenizer(texts, truncation=False, verbose=False)
    return [np.array(ids, dtype=np.int64) for ids in encoded["input_ids"]]


def truncate(token_ids: np.ndarray, max_tokens: int) -> np.ndarray:
    """The first max_tokens - 1 tokens and the final </s>, as T5's tokenizer truncates."""
    if len(token_ids) <= max_tokens:
        return token_ids
    return np.concatenate([token_ids[: max_tokens - 1], token_ids[-1:]])


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
    manifest: str | Path,
    shard: int,
    settings: TextSettings,
    model_dir: str | None,
    out: str | Path,
    rejects: str | Path,
) -> tuple[int, int]:
    """Embed the captions of one shard (every shards-th caption); return (written, rejected).

    `model_dir` replaces `settings.model` when the model was built by the pipeline ('tiny').
    Empty and whitespace-only captions go to the rejects table; longer captions than
    `max_tokens` are truncated (their full length is kept in the n_tokens column).
    """
    captions = read_captions(manifest)[shard :: settings.shards]
    usable = [caption for caption in captions if caption["text"].strip()]
    rejected = [
        (c["caption_id"], "empty or whitespace-only text")
        for c in captions
        if not c["text"].strip()
    ]
    model = model_dir or settings.model
    tokenizer, encoder = load_t5(model)
    encoder.to(pick_device())
    full_ids = tokenize(tokenizer, [caption["text"] for caption in usable])
    token_ids = [truncate(ids, settings.max_tokens) for ids in full_ids]
    states = encode(encoder, token_ids, settings.batch_size, tokenizer.pad_token_id)
    truncated = sum(len(ids) > settings.max_tokens for ids in full_ids)
    metadata = {
        "stage": "embed_text",
        "model": model,
        "revision": model_revision(model, encoder.config),
        "tokenizer_sha256": tokenizer_sha256(tokenizer),
        "settings": asdict(settings),
        "dim": encoder.config.d_model,
        "truncated_captions": truncated,
        "version": __version__,
    }
    schema = text_schema(encoder.config.d_model, settings.dtype)
    with ShardWriter(out, schema, metadata) as writer:
        for caption, ids, full, values in zip(usable, token_ids, full_ids, states, strict=True):
            writer.write((caption["caption_id"], caption["video_id"]), (ids, values), (len(full),))
    write_rejects(rejects, "caption_id", rejected)
    log.info(
        "embedded %d captions with %s (%d truncated to %d tokens), rejected %d",
        len(usable), model, truncated, settings.max_tokens, len(rejected),
    )  # fmt: skip
    return len(usable), len(rejected)


def tokenizer_sha256(tokenizer: transformers.PreTrainedTokenizerBase) -> str:
    """sha256 (64 hex digits) of the tokenizer's vocabulary, its (token, id) pairs sorted by
    token as JSON: what a stored token id means. T5's checkpoints (t5-small, t5-base, a local
    copy) share one vocabulary and so one value; two tiny tokenizers trained on different
    captions have different ones."""
    pairs = sorted(tokenizer.get_vocab().items())
    return hashlib.sha256(json.dumps(pairs, ensure_ascii=False).encode()).hexdigest()


def model_revision(model: str, config: transformers.PretrainedConfig) -> str:
    """The Hugging Face commit of a cached model, or sha256 of a local folder's weights."""
    commit = getattr(config, "_commit_hash", None)
    if commit:
        return commit
    digest = hashlib.sha256()
    for path in sorted(Path(model).glob("*")):
        if path.suffix in (".safetensors", ".bin", ".json", ".model"):
            digest.update(path.name.encode())
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return f"sha256:{digest.hexdigest()}"
