from collections import Counter

import numpy as np
import pytest

from supportset.features.bank import SplitData
from supportset.train.config import TrainConfig
from supportset.train.plan import epoch_plan


def split_with(captions_per_video: list[int]) -> SplitData:
    """Video i has captions_per_video[i] captions, named v<i>_<k>."""
    videos = [f"v{i}" for i in range(len(captions_per_video))]
    captions = {
        v: [f"{v}_{k}" for k in range(n)] for v, n in zip(videos, captions_per_video, strict=True)
    }
    caption_ids = [c for v in videos for c in captions[v]]
    return SplitData(videos, caption_ids, [c.split("_")[0] for c in caption_ids], captions)


SPLIT = split_with([1, 2, 3, 2, 4, 1, 2, 5, 3, 1, 2, 2])  # 28 pairs of 12 videos
PAIRS = TrainConfig(batch_size=4, seed=0)


def test_a_pairs_epoch_visits_every_pair_once_in_a_seeded_order():
    keys = epoch_plan(SPLIT, PAIRS, np.random.default_rng(0), 0, 1)
    visited = [caption for key in keys for caption in key.caption_ids]
    assert sorted(visited) == sorted(SPLIT.caption_ids)  # 7 full batches, none dropped
    assert len(keys) == 7
    again = epoch_plan(SPLIT, PAIRS, np.random.default_rng(0), 0, 1)
    other = epoch_plan(SPLIT, PAIRS, np.random.default_rng(1), 0, 1)
    assert keys == again and keys != other
    for key in keys:
        assert [c.split("_")[0] for c in key.caption_ids] == list(key.video_ids)  # its own video
        for i, j in np.ndindex(len(key.groups), len(key.groups)):
            assert (key.groups[i] == key.groups[j]) == (key.video_ids[i] == key.video_ids[j])


def test_two_captions_of_one_video_share_a_batch_under_one_label():
    keys = epoch_plan(split_with([6, 6]), PAIRS, np.random.default_rng(0), 0, 1)
    assert len(keys) == 3
    for key in keys:
        assert sorted(Counter(key.groups).values()) == sorted(Counter(key.video_ids).values())
        assert len(set(key.groups)) == 2  # 4 rows, 2 videos: every batch repeats one


def test_a_batch_of_one_video_is_dropped():
    keys = epoch_plan(split_with([4, 1]), PAIRS, np.random.default_rng(3), 0, 1)
    for key in keys:
        assert len(set(key.groups)) >= 2


def test_ranks_take_equal_slices_with_the_global_batch_labels():
    single = epoch_plan(SPLIT, PAIRS, np.random.default_rng(0), 0, 1)
    ranks = [epoch_plan(SPLIT, PAIRS, np.random.default_rng(0), rank, 2) for rank in (0, 1)]
    for whole, first, second in zip(single, *ranks, strict=True):
        assert first.caption_ids + second.caption_ids == whole.caption_ids
        assert first.groups + second.groups == whole.groups


def test_a_videos_epoch_visits_every_video_once_with_one_of_its_captions():
    config = TrainConfig(batch_size=4, epoch_unit="videos")
    keys = epoch_plan(SPLIT, config, np.random.default_rng(0), 0, 1)
    assert sorted(v for key in keys for v in key.video_ids) == sorted(SPLIT.video_ids)
    for key in keys:
        assert key.groups == tuple(range(len(key.video_ids)))
        for video, caption in zip(key.video_ids, key.caption_ids, strict=True):
            assert caption in SPLIT.captions_of_video[video]


def test_an_epoch_over_pairs_has_captions_per_video_times_the_steps():
    split = split_with([5] * 40)
    per_video = TrainConfig(batch_size=8, epoch_unit="videos")
    videos = epoch_plan(split, per_video, np.random.default_rng(0), 0, 1)
    pairs = epoch_plan(split, TrainConfig(batch_size=8), np.random.default_rng(0), 0, 1)
    assert (len(videos), len(pairs)) == (5, 25)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"train_splits": ["train", "val"]}, "selection 'val' picks the epoch on the val split"),
        ({"train_splits": ["test"]}, "must not include test"),
        ({"captions_per_video": 2, "loss": "milnce"}, "needs training.epoch_unit videos"),
        ({"caption_memory": "decoder"}, "caption_memory 'decoder' is not one of features, head"),
    ],
)
def test_settings_that_cannot_train_together_are_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**changes)
