"""Two gloo processes on halves of a global batch give the loss and gradients of one
process on the whole batch (embeddings gathered, BatchNorm statistics summed)."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
import torch.multiprocessing as multiprocessing
import transformers

from supportset.distributed import sum_gradients
from supportset.model.decoder import CaptionDecoder
from supportset.model.retrieval_model import ModelConfig, SupportSetModel
from supportset.train.config import TrainConfig
from supportset.train.objective import Batch, Objective
from tests.conftest import free_port

WORLD = 2


def build_objective() -> Objective:
    torch.manual_seed(0)
    model = SupportSetModel(
        ModelConfig(dim=16, heads=2, ffn_dim=32, layers=2, dropout=0.0, text_encoder="frozen"), 6, 5
    )
    t5 = transformers.T5ForConditionalGeneration(
        transformers.T5Config(
            vocab_size=30, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
            decoder_start_token_id=0, pad_token_id=0, dropout_rate=0.0,
        )
    )  # fmt: skip
    decoder = CaptionDecoder(t5, 6)  # reads the 6-d features (training.caption_memory)
    return Objective(model, TrainConfig(), decoder)


def global_batch() -> Batch:
    generator = torch.Generator().manual_seed(1)
    video_lengths, text_lengths, token_lengths = [3, 5, 2, 4], [4, 2, 3, 4], [3, 4, 2, 4]
    video_valid = torch.tensor([[t < n for t in range(5)] for n in video_lengths])
    text_valid = torch.tensor([[t < n for t in range(4)] for n in text_lengths])
    token_valid = torch.tensor([[t < n for t in range(4)] for n in token_lengths])
    tokens = torch.randint(2, 30, (4, 4), generator=generator) * token_valid
    return Batch(
        torch.randn(4, 5, 6, generator=generator) * video_valid.unsqueeze(-1),
        video_valid,
        torch.randn(4, 4, 5, generator=generator) * text_valid.unsqueeze(-1),
        text_valid,
        tokens,
        token_valid,
        torch.tensor([0, 1, 0, 2]),  # rows 0 and 2: two captions of one video
    )


def rows(batch: Batch, part: slice) -> Batch:
    """A rank's slice of the batch, trimmed to its own longest sequences."""
    video_len = int(batch.video_valid[part].sum(dim=1).max())
    text_len = int(batch.text_valid[part].sum(dim=1).max())
    token_len = int(batch.token_valid[part].sum(dim=1).max())
    return Batch(
        batch.video[part, :video_len], batch.video_valid[part, :video_len],
        batch.text[part, :text_len], batch.text_valid[part, :text_len],
        batch.tokens[part, :token_len], batch.token_valid[part, :token_len],
        batch.groups[part],
    )  # fmt: skip


def losses_and_gradients(objective: Objective, batch: Batch) -> dict:
    losses = objective(batch)
    losses["loss"].backward()
    sum_gradients(objective.parameters())
    gradients = {
        name: p.grad.clone() for name, p in objective.named_parameters() if p.grad is not None
    }
    return {"contrast": losses["contrast"], "caption": losses["caption"], "gradients": gradients}


def rank_main(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        half = len(global_batch().video) // WORLD
        result = losses_and_gradients(
            build_objective(), rows(global_batch(), slice(rank * half, (rank + 1) * half))
        )
        if rank == 0:
            torch.save(result, out)
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_equal_one_process_on_the_global_batch(tmp_path):
    single = losses_and_gradients(build_objective(), global_batch())
    out = tmp_path / "rank0.pt"
    multiprocessing.spawn(rank_main, args=(free_port(), str(out)), nprocs=WORLD, join=True)
    distributed = torch.load(out, weights_only=True)
    torch.testing.assert_close(distributed["contrast"], single["contrast"])
    torch.testing.assert_close(distributed["caption"], single["caption"])
    assert distributed["gradients"].keys() == single["gradients"].keys()
    for name, gradient in single["gradients"].items():
        torch.testing.assert_close(distributed["gradients"][name], gradient, atol=2e-5, rtol=1e-4)
