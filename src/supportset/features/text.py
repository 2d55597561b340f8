"""The `embed_text` stage: T5 token ids and per-token encoder states for every caption.

Captions are tokenised with the model's tokenizer (ending in </s>), truncated to
`max_tokens`, and encoded by the T5 encoder into one d_model-dim vector per token
(768 for t5-base). Batches are grouped by length so that little padding is computed.
With `token_ids_only` (the text set of a fine-tuned text encoder, which computes the states
itself) nothing is encoded and no encoder weights are loaded: at HowTo100M's scale the
states would take 136M captions x ~20 tokens x 768 x 2 bytes, about 4 TB.
A shard reads the manifest a batch at a time and encodes a chunk of captions at a time,
so memory holds its captions' token ids, not the manifest nor the states of the shard.
Models load from the Hugging Face cache or a local directory only, never the network.
The shards' metadata names the model, its revision and `tokenizer_sha256`, the fingerprint
of the tokenizer's vocabulary, which says what the stored token ids mean.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
import transformers

from supportset import __version__
from supportset.features.store import ShardWriter, text_schema, token_ids_schema, write_rejects
from supportset.torch_utils import autocast, pick_device

log = logging.getLogger(__name__)

CAPTION_COLUMNS = ("caption_id", "video_id", "text")  # what embed_text reads of the manifest
MANIFEST_BATCH_ROWS = 65_536  # manifest rows read at a time
ENCODE_CHUNK_BATCHES = 32  # batches encoded, then written, at a time: the states held
EMPTY_CAPTION = "empty or whitespace-only text"
# the files of a local model folder its revision hashes: tokenizer and config, weights
TOKENIZER_SUFFIXES = (".json", ".model")
WEIGHTS_SUFFIXES = (".safetensors", ".bin")
WEIGHTS_FILES = (  # one of them holds a model's weights (Hugging Face's names)
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


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


@dataclass(slots=True)
class TokenizedCaption:
    """One usable caption of a shard, tokenised."""

    caption_id: str
    video_id: str
    token_ids: np.ndarray  # (L,) int64, truncated to max_tokens, ending in </s>
    n_tokens: int  # the caption's length in tokens before truncation


def load_t5(model: str) -> tuple[transformers.PreTrainedTokenizerBase, transformers.T5EncoderModel]:
    """Tokenizer and encoder from a local directory or the Hugging Face cache (no network)."""
    return load_t5_tokenizer(model), load_t5_encoder(model).eval()


def load_t5_tokenizer(
    model: str, token_ids_only: bool = False
) -> transformers.PreTrainedTokenizerBase:
    """The tokenizer alone, from a local directory or the Hugging Face cache (no network);
    `token_ids_only`: the error says that the tokenizer and config are all that is needed."""
    try:
        return transformers.AutoTokenizer.from_pretrained(model, local_files_only=True)
    except OSError as error:
        raise TextModelError(missing_model_message(model, token_ids_only)) from error


def load_t5_config(model: str, token_ids_only: bool = False) -> transformers.PretrainedConfig:
    """The model's config (its revision and width), offline; no weights are read."""
    try:
        return transformers.AutoConfig.from_pretrained(model, local_files_only=True)
    except OSError as error:
        raise TextModelError(missing_model_message(model, token_ids_only)) from error


def load_t5_encoder(model: str) -> transformers.T5EncoderModel:
    """The T5 encoder alone, from a local directory or the Hugging Face cache (no network)."""
    try:
        return transformers.T5EncoderModel.from_pretrained(model, local_files_only=True)
    except OSError as error:
        raise TextModelError(missing_model_message(model)) from error


def missing_model_message(model: str, token_ids_only: bool = False) -> str:
    """How to provide text.model `model` offline: its tokenizer and config for token ids
    alone (`token_ids_only`), and its T5 encoder too for the encoder's states."""
    if token_ids_only:
        needed = "its tokenizer and config; token ids alone need no encoder weights"
        loads = (
            f"t.AutoTokenizer.from_pretrained('{model}'); t.AutoConfig.from_pretrained('{model}')"
        )
    else:
        needed = "its tokenizer and the T5 encoder's config and weights"
        loads = (
            f"t.AutoTokenizer.from_pretrained('{model}'); "
            f"t.T5EncoderModel.from_pretrained('{model}')"
        )
    return (
        f"text.model '{model}' is not available offline ({needed}). Either set text.model to "
        f"a local directory holding them, or fill the Hugging Face cache (HF_HOME, default "
        f'~/.cache/huggingface) on a machine with internet: python -c "import transformers '
        f'as t; {loads}"'
    )


def check_model_available(model: str, token_ids_only: bool = False) -> None:
    """Raise TextModelError unless what embedding the captions with `model` loads is there
    offline: its config and tokenizer, and unless `token_ids_only` its weights (one of
    WEIGHTS_FILES, found without being read)."""
    load_t5_config(model, token_ids_only)
    load_t5_tokenizer(model, token_ids_only)
    if not token_ids_only and not any(_cached(model, name) for name in WEIGHTS_FILES):
        raise TextModelError(
            f"{missing_model_message(model)}: found its tokenizer and config, but none of "
            f"{', '.join(WEIGHTS_FILES)}"
        )


def _cached(model: str, name: str) -> bool:
    """Whether file `name` of `model` (a local directory or a cached name) is on disk."""
    path = transformers.utils.cached_file(
        model,
        name,
        local_files_only=True,
        _raise_exceptions_for_missing_entries=False,
        _raise_exceptions_for_connection_errors=False,
    )
    return path is not None


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


def shard_captions(
    manifest: str | Path, shard: int, shards: int, batch_rows: int = MANIFEST_BATCH_ROWS
) -> Iterator[list[dict]]:
    """The captions of one shard, those whose row index in the captions manifest is `shard`
    modulo `shards`, in manifest order: one list of dicts (caption_id, video_id, text) per
    batch of at most `batch_rows` manifest rows, read with those three columns alone, so
    memory holds one batch of the manifest whatever its size."""
    start = 0  # the manifest row index of the batch's first row
    with pq.ParquetFile(manifest) as file:
        for batch in file.iter_batches(batch_size=batch_rows, columns=list(CAPTION_COLUMNS)):
            rows = np.arange((shard - start) % shards, batch.num_rows, shards)
            yield batch.take(rows).to_pylist()
            start += batch.num_rows


def tokenize_shard(
    tokenizer: transformers.PreTrainedTokenizerBase,
    manifest: str | Path,
    shard: int,
    settings: TextSettings,
) -> tuple[list[TokenizedCaption], list[tuple[str, str]]]:
    """The usable captions of one shard (see `shard_captions`) tokenised and truncated to
    `max_tokens`, in manifest order, and its rejects (caption_id, reason): empty and
    whitespace-only captions."""
    captions: list[TokenizedCaption] = []
    rejected: list[tuple[str, str]] = []
    for rows in shard_captions(manifest, shard, settings.shards):
        usable = [row for row in rows if row["text"].strip()]
        rejected += [(row["caption_id"], EMPTY_CAPTION) for row in rows if not row["text"].strip()]
        if not usable:
            continue
        full_ids = tokenize(tokenizer, [row["text"] for row in usable])
        captions += [
            TokenizedCaption(
                row["caption_id"], row["video_id"], truncate(ids, settings.max_tokens), len(ids)
            )
            for row, ids in zip(usable, full_ids, strict=True)
        ]
    return captions, rejected


def embed_shard(
    manifest: str | Path,
    shard: int,
    settings: TextSettings,
    model_dir: str | None,
    out: str | Path,
    rejects: str | Path,
    token_ids_only: bool = False,
) -> tuple[int, int]:
    """Embed the captions of one shard (every shards-th caption); return (written, rejected).

    `model_dir` replaces `settings.model` when the model was built by the pipeline ('tiny').
    Empty and whitespace-only captions go to the rejects table; longer captions than
    `max_tokens` are truncated (their full length is kept in the n_tokens column).
    `token_ids_only` writes the token ids alone (`store.token_ids_schema`): the tokenizer
    and config are loaded, not the encoder.
    """
    model = model_dir or settings.model
    tokenizer = load_t5_tokenizer(model, token_ids_only)
    captions, rejected = tokenize_shard(tokenizer, manifest, shard, settings)
    truncated = sum(caption.n_tokens > settings.max_tokens for caption in captions)
    metadata = {
        "stage": "embed_text",
        "model": model,
        "tokenizer_sha256": tokenizer_sha256(tokenizer),
        "settings": asdict(settings),
        "truncated_captions": truncated,
        "version": __version__,
    }
    if token_ids_only:
        config = load_t5_config(model, token_ids_only)
        metadata |= {"revision": model_revision(model, config, False), "token_ids_only": True}
        write_token_ids(out, captions, metadata)
    else:
        encoder = load_t5_encoder(model).eval().to(pick_device())
        metadata |= {
            "revision": model_revision(model, encoder.config),
            "dim": encoder.config.d_model,
        }
        write_states(out, captions, encoder, tokenizer.pad_token_id, settings, metadata)
    write_rejects(rejects, "caption_id", rejected)
    log.info(
        "%s %d captions with %s (%d truncated to %d tokens), rejected %d",
        "tokenised" if token_ids_only else "embedded", len(captions), model, truncated,
        settings.max_tokens, len(rejected),
    )  # fmt: skip
    return len(captions), len(rejected)


def write_token_ids(out: str | Path, captions: list[TokenizedCaption], metadata: dict) -> None:
    """A token-id text shard of `captions`, in their order."""
    with ShardWriter(out, token_ids_schema(), metadata) as writer:
        for caption in captions:
            writer.write(
                (caption.caption_id, caption.video_id), (caption.token_ids,), (caption.n_tokens,)
            )


def write_states(
    out: str | Path,
    captions: list[TokenizedCaption],
    encoder: transformers.T5EncoderModel,
    pad_id: int,
    settings: TextSettings,
    metadata: dict,
) -> None:
    """A text shard of `captions` with their encoder states, in their order, encoded
    ENCODE_CHUNK_BATCHES batches at a time (length-grouped within each chunk)."""
    chunk = settings.batch_size * ENCODE_CHUNK_BATCHES
    schema = text_schema(encoder.config.d_model, settings.dtype)
    with ShardWriter(out, schema, metadata) as writer:
        for start in range(0, len(captions), chunk):
            part = captions[start : start + chunk]
            states = encode(encoder, [c.token_ids for c in part], settings.batch_size, pad_id)
            for caption, values in zip(part, states, strict=True):
                writer.write(
                    (caption.caption_id, caption.video_id),
                    (caption.token_ids, values),
                    (caption.n_tokens,),
                )


def tokenizer_sha256(tokenizer: transformers.PreTrainedTokenizerBase) -> str:
    """sha256 (64 hex digits) of the tokenizer's vocabulary, its (token, id) pairs sorted by
    token as JSON: what a stored token id means. T5's checkpoints (t5-small, t5-base, a local
    copy) share one vocabulary and so one value; two tiny tokenizers trained on different
    captions have different ones."""
    pairs = sorted(tokenizer.get_vocab().items())
    return hashlib.sha256(json.dumps(pairs, ensure_ascii=False).encode()).hexdigest()


def model_revision(
    model: str, config: transformers.PretrainedConfig, with_weights: bool = True
) -> str:
    """The Hugging Face commit of a cached model, or sha256 of a local folder's tokenizer
    and config files and, `with_weights`, its weights files."""
    commit = getattr(config, "_commit_hash", None)
    if commit:
        return commit
    suffixes = TOKENIZER_SUFFIXES + (WEIGHTS_SUFFIXES if with_weights else ())
    digest = hashlib.sha256()
    for path in sorted(Path(model).glob("*")):
        if path.suffix in suffixes:
            digest.update(path.name.encode())
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return f"sha256:{digest.hexdigest()}"
