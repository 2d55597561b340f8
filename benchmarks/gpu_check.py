"""Every device path of the pipeline in one call, with its throughput: what to run first on
a machine with a GPU (and, at --size small, a check that the script works, on any CPU).

  visual_extraction  VisualExtractor under autocast (bfloat16 on CUDA): ResNet-152 on 224 px
                     frames and R(2+1)D-34 on 32-frame 112 px clips, frames/s (each frame
                     with its clip: one second of video, "1 feature per second");
  text_embedding     features.text.encode under autocast, an encoder of t5-base's shape,
                     captions/s;
  training_step      a paper-size step (benchmarks/train.py's cross_features_finetuned_t5:
                     batch 64, T5 encoder fine-tuned, cross-captioning, caption memory
                     'features', decoder of t5-base's shape; float32 as the trainer runs
                     it), pairs/s and the peak CUDA memory;
  exact_ranking      retrieval.search.ranks_both_ways of N captions against N videos on the
                     device's torch path ("cpu:0" on the CPU), queries/s over both directions;
  faiss_index        a flat inner-product index (retrieval.index.build_index): on the GPU
                     when the device is CUDA and faiss has GPU support, else on the CPU, and
                     the JSON says which ran and why; searches/s of top-10 queries.

For scale, appendix 6.1 reports on a V100 "around 250-300 video/sec and 200-250 text
query/sec" for encoding and 180K pairs x 20 epochs in 12 GPU hours (about 83 pairs/s).

Random weights throughout: nothing is downloaded. --size small swaps every shape for a
tiny one (ResNet-18, R(2+1)D-10, a 2-layer T5, small galleries) that runs in seconds on a
CPU. --device cuda on a machine without CUDA exits with status 2 and says so.

    python benchmarks/gpu_check.py [--device cpu|cuda] [--size small|paper]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import transformers
from machine import cpu_model
from train import (
    PAPER_VARIANT,
    VARIANTS,
    Shapes,
    add_device_option,
    device_of,
    machine_line,
    pairs_per_second,
    random_batch,
    seconds_per_call,
)

from supportset.features.text import encode
from supportset.features.visual import (
    AppearanceSettings,
    MotionSettings,
    VisualExtractor,
    VisualSettings,
)
from supportset.retrieval.index import IndexConfig, build_index, load_faiss, top_k
from supportset.retrieval.search import ranks_both_ways

SMALL_T5 = {"d_model": 32, "d_kv": 8, "d_ff": 64, "num_layers": 2, "num_heads": 4,
            "vocab_size": 512}  # fmt: skip


@dataclass(frozen=True)
class Sizes:
    """The shapes of every section; the defaults are the paper's (or, for the galleries,
    large enough to keep a GPU busy)."""

    visual: VisualSettings = field(
        default_factory=lambda: VisualSettings(
            appearance=AppearanceSettings(weights="random"),
            motion=MotionSettings(weights="random"),
        )
    )  # ResNet-152 224 px, R(2+1)D-34 32 x 112 px, 32 samples per forward pass
    visual_batches: int = 3  # timed forward passes
    text_t5: dict = field(default_factory=lambda: dict(Shapes().t5))  # T5Config shape
    captions: int = 4096  # captions embedded per timed run
    caption_tokens: tuple[int, int] = (8, 32)  # fewest and most tokens of a caption
    text_batch: int = 64  # captions per forward pass (text.batch_size)
    training: Shapes = field(default_factory=Shapes)
    training_steps: int = 3
    ranking_items: int = 20_000  # N videos and N captions, one caption each
    embedding_dim: int = 1024  # width of the joint space (model.dim)
    index_items: int = 100_000  # gallery of the FAISS index
    index_queries: int = 10_000
    k: int = 10  # results per FAISS query


SIZES = {
    "paper": Sizes(),
    "small": Sizes(
        visual=VisualSettings(
            batch_size=4,
            appearance=AppearanceSettings("resnet18", "random", resize=32, size=32),
            motion=MotionSettings("r2plus1d_10", "random", clip_len=4, resize=32, size=32),
        ),
        visual_batches=1,
        text_t5=SMALL_T5,
        captions=64,
        caption_tokens=(4, 12),
        text_batch=16,
        training=Shapes(
            batch_size=8,
            seconds=4,
            video_dim=48,
            tokens=6,
            t5=SMALL_T5,
            head_dim=32,
            head_ffn_dim=64,
            head_heads=2,
        ),
        training_steps=1,
        ranking_items=256,
        embedding_dim=32,
        index_items=1000,
        index_queries=100,
    ),
}


def visual_extraction(settings: VisualSettings, batches: int, device: torch.device) -> dict:
    """Frames/s of VisualExtractor on random uint8 frames and clips (host to device and back
    included, as in extraction)."""
    extractor = VisualExtractor(settings, device)
    rng = np.random.default_rng(0)
    size, crop, clip = settings.batch_size, settings.appearance.size, settings.motion.size
    frames = rng.integers(0, 256, (size, crop, crop, 3), dtype=np.uint8)
    clips = rng.integers(0, 256, (size, settings.motion.clip_len, clip, clip, 3), dtype=np.uint8)
    seconds = seconds_per_call(lambda: extractor(frames, clips), batches, device)
    return {
        "appearance": f"{settings.appearance.arch}, {crop} px",
        "motion": f"{settings.motion.arch}, {settings.motion.clip_len} x {clip} px",
        "batch": size,
        "frames_per_s": round(size / seconds, 2),
    }


def text_embedding(sizes: Sizes, device: torch.device) -> dict:
    """Captions/s of features.text.encode with a random T5 encoder of `sizes.text_t5`."""
    config = transformers.T5Config(**sizes.text_t5, pad_token_id=0)
    torch.manual_seed(0)
    encoder = transformers.T5EncoderModel(config).to(device).eval()
    rng = np.random.default_rng(0)
    lengths = rng.integers(sizes.caption_tokens[0], sizes.caption_tokens[1] + 1, sizes.captions)
    token_ids = [np.append(rng.integers(2, config.vocab_size, n - 1), 1) for n in lengths]
    seconds = seconds_per_call(lambda: encode(encoder, token_ids, sizes.text_batch, 0), 1, device)
    return {
        "encoder": f"{config.num_layers} layers, d_model {config.d_model}, d_ff {config.d_ff}",
        "captions": sizes.captions,
        "tokens": int(lengths.sum()),
        "captions_per_s": round(sizes.captions / seconds, 2),
    }


def training_step(shapes: Shapes, steps: int, device: torch.device) -> dict:
    """Pairs/s of the paper's training setting and, on CUDA, its peak memory (weights, Adam
    state and activations)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    batch = random_batch(shapes, device)
    rate = pairs_per_second(VARIANTS[PAPER_VARIANT], shapes, batch, steps)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return {
        "objective": PAPER_VARIANT,
        **asdict(VARIANTS[PAPER_VARIANT]),
        "batch": shapes.batch_size,
        "steps": steps,
        "pairs_per_s": round(rate, 2),
        "peak_cuda_memory_mb": None if peak is None else round(peak),
    }


def exact_ranking(items: int, dim: int, device: torch.device) -> dict:
    """Queries/s of ranks_both_ways on N random videos and N captions on the torch path."""
    search_device = str(device) if device.type == "cuda" else "cpu:0"
    rng = np.random.default_rng(0)
    videos = rng.standard_normal((items, dim), dtype=np.float32)
    captions = rng.standard_normal((items, dim), dtype=np.float32)
    owners = np.arange(items)  # caption i describes video i
    seconds = seconds_per_call(
        lambda: ranks_both_ways(videos, captions, owners, device=search_device), 1, device
    )
    return {
        "videos": items,
        "captions": items,
        "dim": dim,
        "search_device": search_device,
        "queries_per_s": round(2 * items / seconds, 1),
    }


def faiss_index(sizes: Sizes, device: torch.device) -> dict:
    """Searches/s of a flat FAISS index; which build ran (GPU or CPU) and why."""
    faiss = load_faiss()
    gpu_support = hasattr(faiss, "StandardGpuResources")
    gpus = faiss.get_num_gpus() if gpu_support else 0
    on_gpu = device.type == "cuda" and gpus > 0
    rng = np.random.default_rng(0)
    gallery = rng.standard_normal((sizes.index_items, sizes.embedding_dim), dtype=np.float32)
    queries = rng.standard_normal((sizes.index_queries, sizes.embedding_dim), dtype=np.float32)
    index = build_index(gallery, IndexConfig(kind="flat"), use_gpu=on_gpu)
    seconds = seconds_per_call(lambda: top_k(index, queries, sizes.k), 1, device)
    return {
        "faiss_version": faiss.__version__,
        "faiss_gpu_support": gpu_support,
        "gpus_visible_to_faiss": gpus,
        "ran_on": "gpu" if on_gpu else "cpu",
        "why": faiss_placement(device, gpu_support, gpus),
        "index_class": type(index).__name__,
        "gallery": sizes.index_items,
        "queries": sizes.index_queries,
        "k": sizes.k,
        "searches_per_s": round(sizes.index_queries / seconds, 1),
    }


def faiss_placement(device: torch.device, gpu_support: bool, gpus: int) -> str:
    if device.type != "cuda":
        return "--device cpu: the CPU index"
    if not gpu_support:
        return "this faiss build has no GPU support (faiss-cpu): the CPU index ran instead"
    if not gpus:
        return "faiss has GPU support but sees no GPU: the CPU index ran instead"
    return "faiss-gpu with a visible GPU: the GPU index"


def report(name: str, values: dict) -> dict:
    """`values`, also written to stderr at once, so a run cut short keeps what it measured."""
    print(json.dumps({name: values}), file=sys.stderr, flush=True)
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_device_option(parser)
    parser.add_argument("--size", choices=list(SIZES), default="paper")
    args = parser.parse_args()
    device = device_of(parser, args.device)
    sizes = SIZES[args.size]
    cuda = device.type == "cuda"
    result = {
        "machine": machine_line(device),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if cuda else cpu_model(),
        "torch": torch.__version__,
        "size": args.size,
        "autocast": "bfloat16" if cuda else "off (float32 on the CPU)",
    }
    sections = {
        "visual_extraction": lambda: visual_extraction(sizes.visual, sizes.visual_batches, device),
        "text_embedding": lambda: text_embedding(sizes, device),
        "training_step": lambda: training_step(sizes.training, sizes.training_steps, device),
        "exact_ranking": lambda: exact_ranking(sizes.ranking_items, sizes.embedding_dim, device),
        "faiss_index": lambda: faiss_index(sizes, device),
    }
    for name, measure in sections.items():
        result[name] = report(name, measure())
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
