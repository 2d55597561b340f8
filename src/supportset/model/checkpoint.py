"""model.pt: the trained heads (and fine-tuned T5 encoder) with what rebuilding them needs.

Written atomically by `save_checkpoint` and read back with torch.load(weights_only=True):
weights, the model settings, the input widths, the tokenizer of the captions it was trained
on, how those captions were encoded (`text_features`: the T5, truncation and storage type,
which `supportset search` repeats for a query), the provenance block of the run
(`supportset.provenance`), with a fine-tuned T5 encoder its configuration as JSON, and
the caption decoder of the kept epoch (`decoder`), which `supportset caption` generates with.
`load_model` rebuilds the model for export and search; `initialise_from` starts training
from another run's weights (e.g. HowTo100M pre-training). Both, and export, check that the
text shards they read share the checkpoint's tokenizer (`check_tokenizer`): a model is
reused on other datasets.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

import torch
import transformers

from supportset.features.bank import TokenizerIdentity
from supportset.io import atomic_path
from supportset.model.decoder import CaptionDecoder
from supportset.model.retrieval_model import ModelConfig, SupportSetModel

log = logging.getLogger(__name__)

CHECKPOINT_KEYS = ("model", "model_config", "video_dim", "text_dim")  # what loading needs
# model settings that checkpoints of older versions lack, with the values they were
# trained with (the defaults of their day; today's defaults differ)
TRAINING_ONLY_SETTINGS = ("dropout",)
LEGACY_MODEL_SETTINGS = {
    "text_encoder": "frozen",
    "video_pre_encoder": "mlp",
    "text_pre_encoder": "gru",
    "visual_features": "both",
}


def save_checkpoint(
    path: str | Path,
    state: dict,
    model: SupportSetModel,
    best: dict,
    tokenizer: TokenizerIdentity | None = None,
    text_features: dict | None = None,
    provenance: dict | None = None,
    decoder: dict | None = None,
) -> None:
    """Atomic checkpoint loadable with torch.load(weights_only=True); with a fine-tuned T5
    encoder it also holds that encoder's configuration (JSON) and weights. `tokenizer` is
    that of the training bank's text shards (None: unknown, and later uses warn);
    `text_features` their `features.bank.text_features_record`; `provenance` the run's
    `supportset.provenance.provenance` block; `decoder` the caption decoder's
    `model.decoder.decoder_record` (None: trained without captioning)."""
    t5 = model.t5_encoder
    checkpoint = {
        "model": state,
        "model_config": asdict(model.config),
        "video_dim": model.video_dim,
        "text_dim": model.text_dim,
        "t5_config": t5.config.to_json_string() if t5 is not None else "",
        "tokenizer": asdict(tokenizer) if tokenizer is not None else None,
        "best": best,
        "text_features": text_features,
        "provenance": provenance,
        "decoder": decoder,
    }
    with atomic_path(path) as temporary:
        torch.save(checkpoint, temporary)


def read_checkpoint(path: str | Path, what: str, mmap: bool = False) -> dict:
    """The contents of a model.pt written by `save_checkpoint`, read with weights_only
    (`mmap`: memory-mapped, so only the tensors used are read); any other file is a
    ValueError whose one sentence names `what` (the setting or argument that pointed at
    it) and the path."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except OSError as error:
        raise ValueError(f"{what} {path} cannot be read: {error.strerror}") from None
    except Exception as error:  # truncated, not a torch file, or objects besides tensors
        raise ValueError(
            f"{what} {path} is not a model.pt written by `supportset train`: torch cannot "
            f"read it as weights ({type(error).__name__}), so it is damaged or of another kind"
        ) from None
    held = set(checkpoint) if isinstance(checkpoint, dict) else set()
    missing = [key for key in CHECKPOINT_KEYS if key not in held]
    if missing:
        raise ValueError(
            f"{what} {path} is not a model.pt written by `supportset train`: it is a torch "
            f"file of another kind (without {', '.join(missing)})"
        )
    return checkpoint


def checkpoint_provenance(path: str | Path) -> dict | None:
    """The provenance block of a model.pt (None for files written before it was kept),
    read without loading the weights into memory (the file is memory-mapped)."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # not a zip-format torch file: read_checkpoint says what it is
        checkpoint = read_checkpoint(path, "model file")
    return checkpoint.get("provenance")


def model_settings(checkpoint: dict) -> dict:
    """The model settings a checkpoint was trained with, those it predates included."""
    return {**LEGACY_MODEL_SETTINGS, **checkpoint["model_config"]}


def check_tokenizer(
    checkpoint: dict, path: str | Path, what: str, tokenizer: TokenizerIdentity | None
) -> None:
    """Refuse to read text shards made by another tokenizer than the captions `checkpoint`
    was trained on: the same token id would mean another word (and a frozen encoder's
    states other captions), so every number would silently mean nothing. The ValueError
    names `what` (the setting or argument that pointed at `path`) and both tokenizers.
    When either side has no record (written before it was kept) the check is skipped with
    a warning saying why."""
    unrecorded = _unrecorded_tokenizer(checkpoint, tokenizer)
    if unrecorded:
        log.warning(
            "%s %s: not checked that the text shards share its tokenizer, as %s",
            what,
            path,
            unrecorded,
        )
        return
    trained = TokenizerIdentity(**checkpoint["tokenizer"])
    if trained.sha256 != tokenizer.sha256:
        raise ValueError(
            f"{what} {path} was trained on captions tokenized by {trained.describe()}, but "
            f"the text shards read here were tokenized by {tokenizer.describe()}: the same "
            "token id means different words to the two, so its numbers would mean nothing. "
            "Embed both datasets' captions with one text.model ('tiny' trains a tokenizer "
            "on each dataset's own captions; t5-small, t5-base and their local copies share one)"
        )


def _unrecorded_tokenizer(checkpoint: dict, tokenizer: TokenizerIdentity | None) -> str:
    """Why the tokenizers cannot be compared; empty when both are recorded."""
    before = "written before embed_text recorded tokenizer_sha256, or not read from shards"
    if "tokenizer" not in checkpoint:
        return "the model.pt was written before checkpoints recorded a tokenizer"
    if checkpoint["tokenizer"] is None:
        return f"the text shards it was trained on recorded no tokenizer ({before})"
    if tokenizer is None:
        return f"the text shards read here record no tokenizer ({before})"
    return ""


def initialise_from(
    model: SupportSetModel, path: str | Path, tokenizer: TokenizerIdentity | None = None
) -> None:
    """Load the weights (and input statistics) of a checkpoint of the same architecture,
    trained on features of the same dimensions and captions tokenized as `tokenizer` (the
    text shards' tokenizer of the experiment; None: unknown, the check is skipped)."""
    checkpoint = read_checkpoint(path, "training.init_from")
    settings = _shaping(model_settings(checkpoint))
    if settings != _shaping(asdict(model.config)):
        raise ValueError(
            f"training.init_from {path}: its model settings {settings} "
            f"differ from this experiment's {_shaping(asdict(model.config))}"
        )
    video_dim, text_dim = model.video_dim, model.text_dim
    if (checkpoint["video_dim"], checkpoint["text_dim"]) != (video_dim, text_dim):
        raise ValueError(
            f"training.init_from {path} was trained on {checkpoint['video_dim']}-dim visual "
            f"and {checkpoint['text_dim']}-dim text inputs, this experiment has {video_dim} "
            f"and {text_dim}"
        )
    check_tokenizer(checkpoint, path, "training.init_from", tokenizer)
    model.load_state_dict(checkpoint["model"])


def initialise_decoder(decoder: CaptionDecoder, path: str | Path, memory: str) -> None:
    """Start the caption decoder from the one a checkpoint kept (training.init_from: the
    whole pre-trained model is fine-tuned, appendix 6.2); a checkpoint without one (trained
    without captioning, or by an older version) leaves the T5's, and says so. The file is
    memory-mapped: `initialise_from` has read the heads from it already. A decoder of
    another shape (T5, memory width) or reading another memory (`memory`: this run's
    training.caption_memory) is a ValueError."""
    record = read_checkpoint(path, "training.init_from", mmap=True).get("decoder")
    if record is None:
        log.info("training.init_from %s keeps no caption decoder: it starts from the T5", path)
        return
    theirs = json.loads(record["t5_config"])
    ours = decoder.config.to_dict()
    shape = ("vocab_size", "d_model", "d_ff", "num_decoder_layers", "num_heads", "d_kv")
    mine = {key: ours.get(key) for key in shape} | {
        "memory_dim": decoder.projection.in_features,
        "memory": memory,
    }
    kept = {key: theirs.get(key) for key in shape} | {
        "memory_dim": record["memory_dim"],
        "memory": record["memory"],
    }
    if mine != kept:
        raise ValueError(
            f"training.init_from {path} kept a caption decoder of shape {kept}, this "
            f"experiment's is {mine}: use the same T5 (training.decoder) and caption memory"
        )
    decoder.load_state_dict(record["state"])


def _shaping(settings: dict) -> dict:
    """The model settings that a checkpoint's weights depend on: all but the dropout rate,
    which ActivityNet fine-tuning sets to 0 ("Dropout rate is 0.3 for all datasets besides
    ActivityNet (0.0)", appendix 6.2) on a model pre-trained with 0.3."""
    return {key: value for key, value in settings.items() if key not in TRAINING_ONLY_SETTINGS}


def load_model(path: str | Path, device: torch.device) -> SupportSetModel:
    """The model of a checkpoint written by `save_checkpoint`, in eval mode on `device`."""
    return model_from_checkpoint(read_checkpoint(path, "model file"), device)


def model_from_checkpoint(checkpoint: dict, device: torch.device) -> SupportSetModel:
    """The model of the contents of a model.pt (`read_checkpoint`), in eval mode on `device`."""
    t5_encoder = None
    if checkpoint.get("t5_config"):  # absent in checkpoints of older versions
        config = transformers.T5Config.from_dict(json.loads(checkpoint["t5_config"]))
        t5_encoder = transformers.T5EncoderModel(config)
    model = SupportSetModel(
        ModelConfig(**model_settings(checkpoint)),
        checkpoint["video_dim"],
        checkpoint["text_dim"],
        t5_encoder,
    )
    model.load_state_dict(checkpoint["model"])
    return model.to(device).eval()
