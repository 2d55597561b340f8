"""A small T5 built offline: a tokenizer trained on the given captions and a randomly
initialised T5ForConditionalGeneration (encoder for embed_text, decoder for
cross-captioning). For the demo and tests only; its states carry no pre-trained meaning.

The tokenizer is SentencePiece-like (Metaspace pre-tokenizer, pad/eos/unk = 0/1/2, </s>
appended) but BPE rather than T5's Unigram: the Unigram trainer of `tokenizers` falls back
to single characters on corpora as small as the demo's, while BPE learns whole words, so
caption lengths in tokens stay close to what t5-base gives (about one token per word).
"""

from __future__ import annotations

from pathlib import Path

import torch
import transformers
from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)

from supportset.data.manifest import read_captions
from supportset.features.text import TinyT5Settings

PAD, EOS, UNK = "<pad>", "</s>", "<unk>"


def train_tokenizer(texts: list[str], vocab_size: int) -> transformers.PreTrainedTokenizerFast:
    """A T5-style tokenizer (BPE pieces, ids 0/1/2 = pad/eos/unk, </s> appended)."""
    tokenizer = Tokenizer(models.BPE(unk_token=UNK))
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[PAD, EOS, UNK], show_progress=False
    )
    tokenizer.train_from_iterator(texts, trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"$A {EOS}", special_tokens=[(EOS, tokenizer.token_to_id(EOS))]
    )
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token=PAD, eos_token=EOS, unk_token=UNK
    )


def build_tiny_t5(texts: list[str], settings: TinyT5Settings, out_dir: str | Path) -> None:
    """Save tokenizer and random-init T5 into `out_dir` (loadable with from_pretrained)."""
    tokenizer = train_tokenizer(texts, settings.vocab_size)
    config = transformers.T5Config(
        vocab_size=len(tokenizer),
        d_model=settings.d_model,
        d_kv=settings.d_model // settings.num_heads,
        d_ff=settings.d_ff,
        num_layers=settings.num_layers,
        num_heads=settings.num_heads,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(settings.seed)
    model = transformers.T5ForConditionalGeneration(config)
    out_dir = Path(out_dir)
    tokenizer.save_pretrained(out_dir)
    model.save_pretrained(out_dir)


def build_from_manifest(captions: str | Path, settings: TinyT5Settings, out_dir: str | Path) -> int:
    """Build the tiny T5 from the training captions of a manifest; return how many were used."""
    texts = [row["text"] for row in read_captions(captions) if row["split"] == "train"]
    if not texts:
        raise ValueError(f"{captions}: no training captions to train a tokenizer on")
    build_tiny_t5(texts, settings, out_dir)
    return len(texts)
