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


@pytest.mark.parametrize("suffix", [".parquet", ".h5"])
def test_clips_read_from_shards_by_two_workers_are_those_of_the_whole_videos(tmp_path, suffix):
    """HowTo100M-like clips (4 s segments of videos up to 400 s, some past a row group's
    1 MB) read by 2 worker processes, as `supportset train` runs, from the shards (HDF5
    reads only a clip's steps, Parquet slices its row) equal the clips cut from the videos
    held in memory."""
    from supportset.features.store import ShardWriter, text_schema, visual_schema

    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 400, 24)
    videos = {f"v{i}": rng.normal(size=(n, 1024)).astype(np.float32) for i, n in enumerate(lengths)}
    times = {
        video_id: np.arange(len(values), dtype=np.float32) for video_id, values in videos.items()
    }
    tokens = {f"c{i}": np.array([i + 2, 1]) for i in range(len(videos))}
    shard = tmp_path / f"v{suffix}"
    with ShardWriter(shard, visual_schema(1024, "float32"), {}) as writer:
        for video_id, values in videos.items():
            writer.write((video_id,), (times[video_id], values))
    text = tmp_path / f"t{suffix}"
    with ShardWriter(text, text_schema(2, "float32"), {}) as writer:
        for caption_id, ids in tokens.items():
            writer.write((caption_id, "v"), (ids.astype(np.int32), np.zeros((2, 2))), (2,))
    in_memory = FeatureBank(videos, {}, tokens, timestamps=times)
    from_shards = FeatureBank.load([shard], [text], cache_mb=2)
    plan = EpochPlan()
    for chunk in np.array_split(rng.permutation(len(videos)), 4):
        starts = [float(rng.uniform(0, lengths[i] - 4)) for i in chunk]
        plan.keys.append(
            BatchKey(
                tuple(f"v{i}" for i in chunk),
                tuple(f"c{i}" for i in chunk),
                tuple((start, start + 4.0) for start in starts),
                tuple(range(len(chunk))),
            )
        )
    expected = list(batch_loader(in_memory, plan, 32, workers=0, text_states=False))
    read = list(batch_loader(from_shards, plan, 32, workers=2, text_states=False))
    assert len(read) == len(expected) == 4
    for ours, reference in zip(read, expected, strict=True):
        assert torch.equal(ours.video, reference.video)
        assert torch.equal(ours.video_valid, reference.video_valid)
        assert torch.equal(ours.tokens, reference.tokens)
    assert expected[0].video.shape[1] == 4  # 4 steps of 1 s each
