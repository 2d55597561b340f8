"""Which pairs each step trains on: an epoch's batches, decided in the main process from
the loop's seeded generator (the same on every rank), so that the run does not depend on
the number of reader workers.

`training.epoch_unit`:
- `pairs` (the paper's): every (video, caption) pair of the training split once per
  epoch, in a random order. Appendix 6.1 counts epochs in pairs: "it takes 12 GPU hours to
  train our full model on 180K video-text pairs for 20 epochs" (MSR-VTT, 9K videos x 20
  captions). A batch may then hold two captions of one video: each gets its own row of
  that video, and the rows share a group label, so that they are never each other's
  negatives (see losses.py and model/support_attention.py).
- `videos`: every training video once per epoch, with `captions_per_video` of its
  captions drawn at random (neighbouring segments for clips: the MIL-NCE bag).

With `clips`, a row's video is cut to its caption's segment (or to the span of its bag).
A global batch is trimmed to a multiple of the world size, rank r taking the r-th equal
slice of its rows, and a batch with fewer than two distinct videos is dropped.

When training reads crop features (`crop_augment`, `crop_contrast_weight`), each video
row of a global batch also gets a seed drawn here, from which the reader draws the row's
crops (`CroppedKey`): the crops, like the batches, are then the same for any number of
reader workers and after a resume (the generator's state is saved with the run).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from supportset.features.bank import SplitData
from supportset.train.config import TrainConfig

Window = tuple[float, float]  # (start, end) of a clip, seconds
SEED_BOUND = 1 << 63  # crop draw seeds are in [0, SEED_BOUND)


class BatchKey(NamedTuple):
    """What one rank reads for one step."""

    video_ids: tuple[str, ...]  # one per video row; a video may fill several rows (pairs)
    caption_ids: tuple[str, ...]  # grouped by video row, the same number for each
    windows: tuple[Window, ...] | None  # each row's clip, or None for whole videos
    groups: tuple[int, ...]  # per video row: its video's label in the global batch


class CropDraws(NamedTuple):
    """Which crop features a rank's video rows read, and the seeds to draw them from."""

    seeds: tuple[int, ...]  # per video row: the seed of its crop draws
    augment: bool  # each step reads one random crop instead of the full-frame feature
    views: bool  # each step also reads two more random crops: two views of the video


class CroppedKey(NamedTuple):
    """What one rank reads for one step when training reads crop features."""

    key: BatchKey
    draws: CropDraws


def epoch_plan(
    split: SplitData, config: TrainConfig, rng: np.random.Generator, rank: int, size: int
) -> list[BatchKey | CroppedKey]:
    """This rank's key for every step of an epoch, drawn from `rng`; CroppedKeys when
    `config` reads crop features, BatchKeys otherwise."""
    batches = _pair_batches if config.epoch_unit == "pairs" else _video_batches
    keys = []
    for global_key in batches(split, config, rng):
        seeds = (
            rng.integers(0, SEED_BOUND, len(global_key.video_ids)) if config.reads_crops else None
        )
        rows = len(global_key.video_ids) - len(global_key.video_ids) % size
        if rows == 0 or len(set(global_key.groups[:rows])) < 2:
            continue
        key = _rank_slice(global_key, rows, rank, size)
        if seeds is not None:
            key = _cropped(key, seeds[_share(rows, rank, size)], config)
        keys.append(key)
    return keys


def _cropped(key: BatchKey, seeds: np.ndarray, config: TrainConfig) -> CroppedKey:
    """The key with its video rows' crop seeds (rows,) and what `config` reads of them."""
    draws = CropDraws(tuple(seeds.tolist()), config.crop_augment, config.crop_contrast_weight > 0)
    return CroppedKey(key, draws)


def _pair_batches(split: SplitData, config: TrainConfig, rng: np.random.Generator):
    """Global keys of batches of pairs: a permutation of every caption of the split."""
    order = rng.permutation(len(split.caption_ids))
    for start in range(0, len(order), config.batch_size):
        captions = [split.caption_ids[i] for i in order[start : start + config.batch_size]]
        videos = [split.caption_video_ids[i] for i in order[start : start + config.batch_size]]
        windows = None
        if config.clips:
            windows = tuple(split.caption_windows[caption] for caption in captions)
        identities = list(zip(videos, windows or [None] * len(videos), strict=True))
        yield BatchKey(tuple(videos), tuple(captions), windows, _labels(identities))


def _video_batches(split: SplitData, config: TrainConfig, rng: np.random.Generator):
    """Global keys of batches of distinct videos with `captions_per_video` captions each."""
    windows = split.caption_windows if config.clips else None
    order = rng.permutation(len(split.video_ids))
    for start in range(0, len(order), config.batch_size):
        videos = [split.video_ids[i] for i in order[start : start + config.batch_size]]
        captions = sample_captions(
            split.captions_of_video, videos, rng, config.captions_per_video, windows
        )
        spans = clip_windows(captions, config.captions_per_video, windows)
        yield BatchKey(tuple(videos), tuple(captions), spans, tuple(range(len(videos))))


def _labels(identities: list) -> tuple[int, ...]:
    """Each item's label: the position of the first equal item."""
    first: dict = {}
    return tuple(first.setdefault(identity, len(first)) for identity in identities)


def _rank_slice(key: BatchKey, rows: int, rank: int, size: int) -> BatchKey:
    """Rank `rank`'s equal share of the first `rows` video rows and their captions."""
    per_row = len(key.caption_ids) // len(key.video_ids)
    share = _share(rows, rank, size)
    captions = slice(share.start * per_row, share.stop * per_row)
    return BatchKey(
        key.video_ids[share],
        key.caption_ids[captions],
        key.windows[share] if key.windows is not None else None,
        key.groups[share],
    )


def _share(rows: int, rank: int, size: int) -> slice:
    """Rank `rank`'s equal share of `rows` rows."""
    return slice(rank * rows // size, (rank + 1) * rows // size)


def sample_captions(
    captions_of_video: dict[str, list[str]],
    video_ids: list[str],
    rng: np.random.Generator,
    per_video: int = 1,
    windows: dict[str, Window] | None = None,
) -> list[str]:
    """`per_video` captions of each video drawn at random (without repeats when it has
    enough), grouped by video in the order of `video_ids`. With `windows` (caption times,
    for clips) several captions are neighbours: `per_video` consecutive segments in time."""
    drawn = []
    for video_id in video_ids:
        captions = captions_of_video[video_id]
        if per_video == 1:
            drawn.append(rng.choice(captions))
        elif windows is not None and len(captions) >= per_video:
            ordered = sorted(captions, key=lambda caption: windows[caption])
            first = rng.integers(0, len(ordered) - per_video + 1)
            drawn.extend(ordered[first : first + per_video])
        else:
            drawn.extend(rng.choice(captions, size=per_video, replace=len(captions) < per_video))
    return drawn


def clip_windows(
    caption_ids: list[str], per_video: int, windows: dict[str, Window] | None
) -> tuple[Window, ...] | None:
    """For clips, each video's (start, end) in seconds: the span of its `per_video`
    consecutive captions' segments; None when training on whole videos."""
    if windows is None:
        return None
    spans = []
    for first in range(0, len(caption_ids), per_video):
        times = [windows[caption] for caption in caption_ids[first : first + per_video]]
        spans.append((min(start for start, _ in times), max(end for _, end in times)))
    return tuple(spans)
