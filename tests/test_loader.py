from pathlib import Path

import numpy as np
import pytest
import torch

from supportset.features.bank import FeatureBank
from supportset.train.loader import EpochPlan, batch_loader
from supportset.train.plan import BatchKey


def pss_mb(pid: int) -> float:
    """Proportional set size of a process, from /proc."""
    rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    return sum(int(line.split()[1]) for line in rollup.splitlines() if line[:4] == "Pss:") / 1024


def test_loader_yields_the_planned_batches_in_order():
    videos = {f"v{i}": np.full((i + 1, 3), i, np.float32) for i in range(6)}
    texts = {f"c{i}": np.full((2, 4), i, np.float32) for i in range(6)}
    tokens = {f"c{i}": np.array([i + 2, 1]) for i in range(6)}
    plan = EpochPlan()
    loader = batch_loader(FeatureBank(videos, texts, tokens), plan, 4, workers=2)
    whole_videos = [
        BatchKey(("v5", "v0"), ("c5", "c0"), None, (0, 1)),
        BatchKey(("v2", "v3"), ("c2", "c3"), None, (0, 1)),
    ]
    for keys in (whole_videos, [BatchKey(("v1",), ("c1",), ((1.0, 2.0),), (0,))]):
        plan.keys = keys
        batches = list(loader)
        assert [batch.video[:, 0, 0].tolist() for batch in batches] == [
            [float(v[1:]) for v in video_ids] for video_ids, _, _, _ in keys
        ]
        assert [batch.tokens[:, 0].tolist() for batch in batches] == [
            [int(c[1:]) + 2 for c in caption_ids] for _, caption_ids, _, _ in keys
        ]
    assert batches[0].video.shape == (1, 1, 3)  # v1's step at 1 s, its clip [1, 2) s


def constant_bank(count: int) -> FeatureBank:
    """Video v<i> and caption c<i> hold the value i: (2, 3) features, (2, 4) states."""
    return FeatureBank(
        {f"v{i}": np.full((2, 3), i, np.float32) for i in range(count)},
        {f"c{i}": np.full((2, 4), i, np.float32) for i in range(count)},
        {f"c{i}": np.array([i + 2, 1]) for i in range(count)},
    )


def pair_key(first: int, second: int) -> BatchKey:
    """Videos `first` and `second` with their own captions."""
    return BatchKey((f"v{first}", f"v{second}"), (f"c{first}", f"c{second}"), None, (0, 1))


def test_a_fine_tuned_encoder_reads_no_cached_states():
    bank = constant_bank(2)
    plan = EpochPlan()
    plan.keys = [pair_key(0, 1)]
    without_states = FeatureBank(bank.videos, {}, bank.token_ids)  # reading one would fail
    batch = next(iter(batch_loader(without_states, plan, 4, workers=0, text_states=False)))
    assert batch.text.shape == (2, 0, 0) and batch.tokens[:, 0].tolist() == [2, 3]


@pytest.mark.parametrize("workers", [0, 2])
def test_iterating_the_loader_leaves_the_global_random_generator_alone(workers):
    """Dropout draws from torch's global generator: epochs read with or without workers
    (or after a resume, with a new loader) must leave it where it was."""
    plan = EpochPlan()
    plan.keys = [pair_key(0, 1), pair_key(2, 3)]
    loader = batch_loader(constant_bank(4), plan, 4, workers=workers)
    torch.manual_seed(0)
    for _ in range(3):
        before = torch.get_rng_state()
        assert len(list(loader)) == 2
        assert torch.equal(torch.get_rng_state(), before)


def test_worker_memory_stays_at_what_a_batch_needs():
    """Batch-sized buffers freed by a worker go back to the system instead of piling up."""
    videos = {f"v{i}": np.ones((32, 2560), np.float32) for i in range(64)}  # 21 MB a batch
    texts = {f"c{i}": np.ones((2, 8), np.float32) for i in range(64)}
    tokens = {f"c{i}": np.array([2, 1]) for i in range(64)}
    plan = EpochPlan()
    plan.keys = [BatchKey(tuple(videos), tuple(texts), None, tuple(range(len(videos))))] * 40
    bank = FeatureBank(videos, texts, tokens)
    loader = iter(batch_loader(bank, plan, 32, workers=1).loader)  # torch's, with its workers
    next(loader)
    worker = loader._workers[0].pid
    start = pss_mb(worker)
    peak = max(pss_mb(worker) for _ in loader)
    assert peak - start < 120, f"the worker grew from {start:.0f} to {peak:.0f} MB"


def test_a_worker_error_is_raised_as_itself_in_one_line():
    """A corrupt shard's one-line error must not arrive wrapped in a worker's traceback."""
    plan = EpochPlan()
    plan.keys = [pair_key(0, 1), BatchKey(("v0", "v9"), ("c0", "c1"), None, (0, 1))]
    loader = batch_loader(constant_bank(2), plan, 4, workers=2)
    batches = iter(loader)
    assert next(batches).video.shape == (2, 2, 3)
    with pytest.raises(KeyError) as raised:
        next(batches)
    assert str(raised.value) == "'v9'"
