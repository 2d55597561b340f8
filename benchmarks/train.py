"""Training throughput of the paper-size model on this machine's CPU: video-caption pairs
per second of full training steps (forward, backward, clipping, Adam) with the
cross-captioning objective against the same step with captioning off, in one run, and a
torch.profiler breakdown of one captioning step.

Paper sizes (appendix 6.1-6.2): batch 64, 2560-d features over 32 s, T5-base token states
(768-d, 20 tokens per caption), pooling heads of width 1024 with FFN 2048, and a decoder of
t5-base's shape (12 layers, d_model 768, 32,128-token vocabulary); random weights.

    python benchmarks/train.py [--steps 3] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch
import transformers

from supportset.losses import HardNegativeTripletLoss
from supportset.model.decoder import CaptionDecoder
from supportset.model.retrieval_model import ModelConfig, SupportSetModel
from supportset.train.objective import Batch, Objective


def paper_batch(batch_size: int, seconds: int = 32, tokens: int = 20) -> Batch:
    generator = torch.Generator().manual_seed(0)
    return Batch(
        torch.randn(batch_size, seconds, 2560, generator=generator),
        torch.ones(batch_size, seconds, dtype=torch.bool),
        torch.randn(batch_size, tokens, 768, generator=generator),
        torch.ones(batch_size, tokens, dtype=torch.bool),
        torch.randint(2, 32128, (batch_size, tokens), generator=generator),
        torch.ones(batch_size, tokens, dtype=torch.bool),
    )


def objective(captioning: str) -> Objective:
    torch.manual_seed(0)
    model = SupportSetModel(ModelConfig(), video_dim=2560, text_dim=768)
    decoder = None
    if captioning != "none":
        shape = {"d_model": 768, "d_kv": 64, "d_ff": 3072, "num_layers": 12, "num_heads": 12}
        config = transformers.T5Config(**shape, decoder_start_token_id=0, pad_token_id=0)
        decoder = CaptionDecoder(transformers.T5ForConditionalGeneration(config), 1024)
    return Objective(model, HardNegativeTripletLoss(0.2), captioning, 10.0, 0.1, 0, decoder, 0)


def pairs_per_second(captioning: str, batch: Batch, steps: int) -> float:
    loss_and_model = objective(captioning).train()
    optimizer = torch.optim.Adam(loss_and_model.parameters(), lr=5e-5)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_and_model(batch)["loss"].backward()
        torch.nn.utils.clip_grad_norm_(loss_and_model.parameters(), 0.2)
        optimizer.step()

    step()  # warm-up
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * len(batch.video) / (time.perf_counter() - started)


def profile_table(batch: Batch, rows: int = 12) -> str:
    from torch.profiler import ProfilerActivity, profile

    loss_and_model = objective("cross").train()
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        loss_and_model(batch)["loss"].backward()
    return profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    batch = paper_batch(args.batch_size)
    without = pairs_per_second("none", batch, args.steps)
    with_captioning = pairs_per_second("cross", batch, args.steps)
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads)",
        "batch_size": args.batch_size,
        "pairs_per_s_triplet_only": round(without, 2),
        "pairs_per_s_cross_captioning": round(with_captioning, 2),
        "captioning_cost_ratio": round(without / with_captioning, 2),
    }
    print(json.dumps(result, indent=2))
    print(profile_table(batch))


if __name__ == "__main__":
    main()
