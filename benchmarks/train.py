"""Training throughput of the paper-size model for four objectives, in one run.

Video-caption pairs per second of full training steps (forward, backward, clipping, Adam,
as the trainer runs them: float32), on CUDA when available, else the CPU:

  triplet_frozen_t5            triplet loss alone on cached T5 states (the reference);
  cross_features_frozen_t5     + cross-captioning, the decoder reading the visual features
                               (training.caption_memory features);
  cross_head_frozen_t5         the same, the decoder reading the video head's sequence
                               (training.caption_memory head);
  cross_features_finetuned_t5  cross-captioning with the T5 encoder trained on token ids
                               (model.text_encoder finetune, the paper's setting).

Paper sizes (appendix 6.1-6.2): batch 64 ("batch-size is set to 64"), 2560-d features
("a 2560-dimension visual input stream") over 32 s ("truncate videos to 32 seconds"),
captions of 20 tokens (T5-base states of 768-d when frozen), pooling heads of width 1024
with FFN 2048 ("We set the embedding dimension to 1024 and use 4 attention heads ... The
hidden dimension of FFN is 2048"), and a decoder ("we use the T5-base model decoder") and
fine-tuned encoder of t5-base's shape: 12 layers, d_model 768, d_ff 3072, 12 heads,
32,128-token vocabulary. Random weights: nothing is downloaded. For scale, the paper's
full model trains at about 83 pairs/s on one V100, averaged over a whole training run
(6.1: "12 GPU hours to train our full model on 180K video-text pairs for 20 epochs").

The JSON gives pairs/s per objective and how many times slower each is than the first;
--profile adds a torch.profiler table of one step of the paper's setting.

    python benchmarks/train.py [--steps 3] [--batch-size 64] [--device cpu|cuda] [--profile]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import transformers
from machine import cpu_model

from supportset.model.decoder import CaptionDecoder
from supportset.model.retrieval_model import ModelConfig, SupportSetModel
from supportset.train.config import TrainConfig
from supportset.train.objective import Batch, Objective, memory_width

T5_BASE = {"d_model": 768, "d_kv": 64, "d_ff": 3072, "num_layers": 12, "num_heads": 12,
           "vocab_size": 32128}  # fmt: skip


@dataclass(frozen=True)
class Shapes:
    """Sizes of a training step; the defaults are the paper's."""

    batch_size: int = 64  # video-caption pairs per step
    seconds: int = 32  # feature steps per video (1 per second)
    video_dim: int = 2560  # visual feature width (ResNet-152 2048 + R(2+1)D-34 512)
    tokens: int = 20  # tokens per caption
    t5: dict = field(default_factory=lambda: dict(T5_BASE))  # T5Config shape of encoder and decoder
    head_dim: int = 1024  # joint space d of the pooling heads
    head_ffn_dim: int = 2048  # feed-forward width of the pooling heads
    head_heads: int = 4  # attention heads of the pooling heads


@dataclass(frozen=True)
class Variant:
    captioning: str  # training.captioning: none | cross
    caption_memory: str  # training.caption_memory: features | head
    text_encoder: str  # model.text_encoder: frozen (cached states) | finetune (token ids)


VARIANTS = {
    "triplet_frozen_t5": Variant("none", "features", "frozen"),
    "cross_features_frozen_t5": Variant("cross", "features", "frozen"),
    "cross_head_frozen_t5": Variant("cross", "head", "frozen"),
    "cross_features_finetuned_t5": Variant("cross", "features", "finetune"),
}
PAPER_VARIANT = "cross_features_finetuned_t5"


def t5_config(shapes: Shapes) -> transformers.T5Config:
    return transformers.T5Config(**shapes.t5, decoder_start_token_id=0, pad_token_id=0)


def random_batch(shapes: Shapes, device: torch.device) -> Batch:
    """A batch of random features (B, T, D_v), T5 states (B, L, d_model) and token ids
    (B, L), every position valid, each row its own video."""
    generator = torch.Generator().manual_seed(0)
    size, tokens, width = shapes.batch_size, shapes.tokens, shapes.t5["d_model"]
    batch = Batch(
        torch.randn(size, shapes.seconds, shapes.video_dim, generator=generator),
        torch.ones(size, shapes.seconds, dtype=torch.bool),
        torch.randn(size, tokens, width, generator=generator),
        torch.ones(size, tokens, dtype=torch.bool),
        torch.randint(2, shapes.t5["vocab_size"], (size, tokens), generator=generator),
        torch.ones(size, tokens, dtype=torch.bool),
        torch.arange(size),
    )
    return batch.to(device)


def objective(variant: Variant, shapes: Shapes, device: torch.device) -> Objective:
    """The training objective of `variant`, random weights, in training mode on `device`."""
    torch.manual_seed(0)
    heads = ModelConfig(
        dim=shapes.head_dim,
        heads=shapes.head_heads,
        ffn_dim=shapes.head_ffn_dim,
        text_encoder=variant.text_encoder,
    )
    encoder = None
    if variant.text_encoder == "finetune":
        encoder = transformers.T5EncoderModel(t5_config(shapes))
    model = SupportSetModel(heads, shapes.video_dim, shapes.t5["d_model"], encoder)
    config = TrainConfig(captioning=variant.captioning, caption_memory=variant.caption_memory)
    decoder = None
    if variant.captioning != "none":
        t5 = transformers.T5ForConditionalGeneration(t5_config(shapes))
        decoder = CaptionDecoder(t5, memory_width(model, config))
    return Objective(model, config, decoder).to(device).train()


def seconds_per_call(call: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Mean wall-clock seconds of `call` over `repeats` runs after one warm-up run, waiting
    for the device's queued work before reading the clock."""
    call()
    synchronize(device)
    started = time.perf_counter()
    for _ in range(repeats):
        call()
    synchronize(device)
    return (time.perf_counter() - started) / repeats


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def pairs_per_second(variant: Variant, shapes: Shapes, batch: Batch, steps: int) -> float:
    """Pairs/s of `steps` training steps of `variant` on `batch` (and on its device), as
    train/loop.py runs them, after a warm-up step."""
    device = batch.video.device
    loss_and_model = objective(variant, shapes, device)
    config = loss_and_model.config
    optimizer = torch.optim.Adam(loss_and_model.parameters(), lr=config.lr)

    def step() -> None:
        losses = loss_and_model(batch)
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(loss_and_model.parameters(), config.grad_clip)
        optimizer.step()

    return shapes.batch_size / seconds_per_call(step, steps, device)


def profile_table(shapes: Shapes, batch: Batch, rows: int = 12) -> str:
    """The torch.profiler table of one forward and backward pass of the paper's setting,
    by self time on the device (the CPU's when there is no GPU)."""
    from torch.profiler import ProfilerActivity, profile

    device = batch.video.device
    loss_and_model = objective(VARIANTS[PAPER_VARIANT], shapes, device)
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as profiler:
        loss_and_model(batch)["loss"].backward()
        synchronize(device)
    sort_by = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return profiler.key_averages().table(sort_by=sort_by, row_limit=rows)


def add_device_option(parser: argparse.ArgumentParser) -> None:
    default = "cuda" if torch.cuda.is_available() else "cpu"
    parser.add_argument("--device", choices=["cpu", "cuda"], default=default)


def device_of(parser: argparse.ArgumentParser, name: str) -> torch.device:
    """The torch device `--device` names; a usage error (exit status 2) for cuda without CUDA."""
    if name == "cuda" and not torch.cuda.is_available():
        parser.error(
            f"--device cuda: CUDA is not available to torch {torch.__version__} "
            "(no GPU visible, or a CPU-only build); use --device cpu"
        )
    return (
        torch.device("cuda", torch.cuda.current_device()) if name == "cuda" else torch.device(name)
    )


def machine_line(device: torch.device) -> str:
    """CPU, cores, torch version and threads, and the GPU when the device is CUDA."""
    line = (
        f"{cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads)"
    )
    if device.type == "cuda":
        line += f", {torch.cuda.get_device_name(device)}"
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3, help="timed steps per objective")
    parser.add_argument("--batch-size", type=int, default=64)
    add_device_option(parser)
    parser.add_argument("--profile", action="store_true", help="print a profile of one step")
    args = parser.parse_args()
    device = device_of(parser, args.device)
    shapes = Shapes(batch_size=args.batch_size)
    batch = random_batch(shapes, device)
    rates = {name: pairs_per_second(v, shapes, batch, args.steps) for name, v in VARIANTS.items()}
    reference = next(iter(rates))
    result = {
        "machine": machine_line(device),
        "device": str(device),
        "batch_size": args.batch_size,
        "steps": args.steps,
        "pairs_per_s": {name: round(rate, 2) for name, rate in rates.items()},
        f"times_slower_than_{reference}": {
            name: round(rates[reference] / rate, 2) for name, rate in rates.items()
        },
    }
    print(json.dumps(result, indent=2))
    if args.profile:
        print(profile_table(shapes, batch))


if __name__ == "__main__":
    main()
