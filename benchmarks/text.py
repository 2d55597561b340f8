"""Text-stage throughput: tokens/s of our length-bucketed batched T5 encoding against a
one-caption-at-a-time loop over the same captions, in one run.

The encoder has t5-base's shape (12 layers, d_model 768, d_ff 3072, 12 heads) with random
weights (speed does not depend on their values); the tokenizer is trained on the
benchmark's captions. Captions are MSR-VTT-like sentences of 4 to 30 words.

    python benchmarks/text.py [--captions 2048] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
import torch
import transformers
from torch.utils.flop_counter import FlopCounterMode

from supportset.features.text import encode, length_batches, tokenize
from supportset.features.tiny_t5 import train_tokenizer

VOCABULARY = (
    "a man woman person people child dog cat car red blue green is are plays talking running "
    "cooking video game song music stage street kitchen ball team players football field "
    "news anchor describes shows cartoon girl boy singing dancing in on the of with while "
    "and to at from"
)


def captions(count: int, seed: int = 0) -> list[str]:
    """Sentences of 4-30 words, most of them short, like video captions."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.gamma(2.0, 5.0, size=count).astype(int) + 4, 4, 30)
    return [" ".join(rng.choice(VOCABULARY.split(), size=length)) for length in lengths]


def t5_base_shaped_encoder(vocab_size: int) -> transformers.T5EncoderModel:
    config = transformers.T5Config(
        vocab_size=vocab_size, d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_heads=12
    )
    torch.manual_seed(0)
    return transformers.T5EncoderModel(config).eval()


def matmul_flops_per_s(size: int = 2048) -> float:
    """Float32 FLOP/s of a square matmul on this machine (the ceiling for dense layers)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    started = time.perf_counter()
    for _ in range(5):
        torch.mm(a, b)
    return 5 * 2 * size**3 / (time.perf_counter() - started)


def padding_fraction(token_ids: list[np.ndarray], batches: list[np.ndarray]) -> float:
    """Share of computed positions that are padding."""
    computed = sum(len(batch) * max(len(token_ids[i]) for i in batch) for batch in batches)
    return 1 - sum(len(ids) for ids in token_ids) / computed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--captions", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    texts = captions(args.captions)
    tokenizer = train_tokenizer(texts, vocab_size=2000)
    encoder = t5_base_shaped_encoder(len(tokenizer))
    token_ids = tokenize(tokenizer, texts)
    tokens = sum(len(ids) for ids in token_ids)
    encode(encoder, token_ids[:8], 8, tokenizer.pad_token_id)  # warm-up

    started = time.perf_counter()
    encode(encoder, token_ids, args.batch_size, tokenizer.pad_token_id)
    batched_s = time.perf_counter() - started
    with FlopCounterMode(display=False) as counter:
        encode(encoder, token_ids, args.batch_size, tokenizer.pad_token_id)

    started = time.perf_counter()
    for ids in token_ids:
        encode(encoder, [ids], 1, tokenizer.pad_token_id)
    single_s = time.perf_counter() - started

    shuffled = np.random.default_rng(1).permutation(len(token_ids))
    unsorted = [shuffled[i : i + args.batch_size] for i in range(0, len(shuffled), args.batch_size)]
    bucketed = length_batches([len(ids) for ids in token_ids], args.batch_size)
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads)",
        "captions": len(texts),
        "tokens": tokens,
        "batch_size": args.batch_size,
        "batched_tokens_per_s": round(tokens / batched_s, 1),
        "one_at_a_time_tokens_per_s": round(tokens / single_s, 1),
        "speedup": round(single_s / batched_s, 2),
        "batched_gflop_per_s": round(counter.get_total_flops() / batched_s / 1e9, 1),
        "matmul_gflop_per_s": round(matmul_flops_per_s() / 1e9, 1),
        "padding_length_bucketed": round(padding_fraction(token_ids, bucketed), 3),
        "padding_arrival_order": round(padding_fraction(token_ids, unsorted), 3),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
