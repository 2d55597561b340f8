"""A synthetic HowTo100M folder in the real file formats, to measure `prepare` at the
dataset's scale without its videos. Written as a stream: memory holds one block of
BLOCK_VIDEOS videos, whatever the size.

Statistics, from Miech et al., "HowTo100M: Learning a Text-Video Embedding by Watching
Hundred Million Narrated Video Clips", ICCV 2019 (arXiv:1906.03327):
- 1.22M videos and 136M clips (abstract; Table 2 totals 136.6M), of 12 WikiHow categories,
  with the videos and tasks per category of Table 2 (CATEGORIES) and 129 subcategories in
  all (Appendix A, Figure 8);
- "On average, a video produces 110 clip-caption pairs, with an average duration of 4
  seconds per clip and 4 words (after excluding stop-words) per caption", and videos last
  6.5 minutes on average (Sec. 3.2, Statistics): segments therefore start 390 s / 110 =
  3.5 s apart on average, and consecutive 4 s segments overlap a little;
- each video is one of the top 200 YouTube results of its task's query, its rank, and none
  is longer than 2,000 s (Sec. 3.1): segment counts stop at 2,000 s of average gaps.
Choices the paper gives no figure for: the spread of the segment counts (negative binomial,
shape SEGMENT_SHAPE) and of the gaps and durations (gamma, shape TIME_SHAPE); word counts
1 + Poisson(3), a mean of 4 and never an empty text, so that every video has a caption (the
paper keeps videos of at least 100 words, Sec. 3.1); words drawn with Zipf frequencies from
a vocabulary of two-syllable pseudo-words.

Formats: HowTo100M_v1.csv with the header video_id,category_1,category_2,rank,task_id (as
the HowTo100M code's README, github.com/antoine77340/howto100m, shows it); caption.json one
object keyed by video id, each value {"start": [...], "end": [...], "text": [...]}, parallel
lists, times in seconds (the dataset's README), written on one line as json.dump writes a
dict. Times are floats of two decimals (hundredths of a second), increasing: we found no
excerpt of the real file to check the digits against. Video ids are 11 characters of
YouTube's alphabet; category_2 is "<category_1> <k>", k one of the category's share of the
129 subcategories (the real names are WikiHow's); task ids number Table 2's tasks in its
order. Each video is an empty file videos/<category_1>/<video_id>.mp4.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from itertools import pairwise, product
from pathlib import Path
from typing import TextIO

import numpy as np

from supportset.io import atomic_path

# Table 2: category -> (tasks, videos in thousands)
CATEGORIES = {
    "Food and Entertaining": (11504, 497),
    "Home and Garden": (5068, 270),
    "Hobbies and Crafts": (4273, 251),
    "Cars & Other Vehicles": (810, 68),
    "Pets and Animals": (552, 31),
    "Holidays and Traditions": (411, 27),
    "Personal Care and Style": (181, 16),
    "Sports and Fitness": (205, 16),
    "Health": (172, 15),
    "Education and Communications": (239, 15),
    "Arts and Entertainment": (138, 10),
    "Computers and Electronics": (58, 5),
}
SUBCATEGORIES = 129  # Appendix A; shared out among the categories by their tasks
FULL_VIDEOS = 1_220_000  # abstract
SEGMENTS_PER_VIDEO = 110.0  # Sec. 3.2
SECONDS_PER_VIDEO = 6.5 * 60  # Sec. 3.2
SECONDS_PER_SEGMENT = 4.0  # Sec. 3.2
WORDS_PER_CAPTION = 4.0  # Sec. 3.2, after stop-word removal (caption.json is the cleaned ASR)
TOP_RESULTS = 200  # Sec. 3.1
LONGEST_VIDEO_S = 2000.0  # Sec. 3.1
GAP_S = SECONDS_PER_VIDEO / SEGMENTS_PER_VIDEO  # mean time from a segment's start to the next's
MOST_SEGMENTS = int(LONGEST_VIDEO_S / GAP_S)  # segments of the longest video, on average gaps
SEGMENT_SHAPE = 2.0  # negative binomial shape of the segments per video: a spread of 70%
TIME_SHAPE = 4.0  # gamma shape of gaps and durations: a spread of 50%
ID_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
ID_LENGTH = 11
BLOCK_VIDEOS = 4096  # videos drawn at a time


@dataclass(frozen=True)
class SyntheticCorpus:
    """What write_synthetic_howto100m wrote."""

    videos: int
    segments: int  # ASR segments in caption.json, each a caption of `prepare`
    caption_json_bytes: int


def write_synthetic_howto100m(
    root: str | Path,
    videos: int,
    seed: int = 0,
    segments_per_video: float = SEGMENTS_PER_VIDEO,
    video_files: bool = True,
) -> SyntheticCorpus:
    """Write HowTo100M_v1.csv, caption.json and (with `video_files`) an empty file per video
    under `root`, deterministically from `seed`; `segments_per_video` is the mean (from 1 to
    MOST_SEGMENTS / 4). caption.json is renamed into place last: a folder with it is whole."""
    root = Path(root)
    draw = _Draw(np.random.default_rng(seed), segments_per_video)
    segments = 0
    with (
        atomic_path(root / "caption.json") as json_path,
        atomic_path(root / "HowTo100M_v1.csv") as csv_path,
        open(json_path, "w", encoding="utf-8") as captions,
        open(csv_path, "w", newline="", encoding="utf-8") as listing,
    ):
        table = csv.writer(listing)
        table.writerow(["video_id", "category_1", "category_2", "rank", "task_id"])
        captions.write("{")
        for start in range(0, videos, BLOCK_VIDEOS):
            block = draw.block(min(BLOCK_VIDEOS, videos - start))
            table.writerows(block.csv_rows())
            block.write_json(captions, first=start == 0)
            segments += len(block.texts)
            if video_files:
                block.touch_videos(root / "videos")
        captions.write("}")
    return SyntheticCorpus(videos, segments, (root / "caption.json").stat().st_size)


def _vocabulary(rng: np.random.Generator) -> np.ndarray:
    """Two-syllable pseudo-words (consonant-vowel syllables), in a random frequency order."""
    syllables = [c + v for c, v in product("bcdfghjklmnprstvwxyz", "aeiou")]
    words = np.array([a + b for a, b in product(syllables, syllables)], dtype=object)
    return words[rng.permutation(len(words))]


class _Draw:
    """Draws blocks of synthetic videos from one random generator."""

    def __init__(self, rng: np.random.Generator, segments_per_video: float) -> None:
        if not 1 <= segments_per_video <= MOST_SEGMENTS / 4:  # the cap keeps the mean
            raise ValueError(
                f"segments_per_video must be from 1 to {MOST_SEGMENTS / 4}, "
                f"got {segments_per_video}"
            )
        self.rng, self.segments_per_video = rng, segments_per_video
        self.words = _vocabulary(rng)
        zipf = 1.0 / np.arange(1, len(self.words) + 1)
        self.word_cdf = np.cumsum(zipf / zipf.sum())
        self.word_cdf[-1] = 1.0  # no draw in [0, 1) may fall past the last word by rounding
        tasks = np.array([t for t, _ in CATEGORIES.values()])
        shares = np.array([v for _, v in CATEGORIES.values()], dtype=float)
        self.category_p = shares / shares.sum()
        self.task_first = np.concatenate([[1], 1 + np.cumsum(tasks)[:-1]])
        self.tasks = tasks
        self.subcategories = np.maximum(1, np.round(SUBCATEGORIES * tasks / tasks.sum()))
        self.seen_ids: set[str] = set()

    def block(self, size: int) -> _Block:
        rng = self.rng
        category = rng.choice(len(CATEGORIES), size=size, p=self.category_p)
        task = self.task_first[category] + rng.integers(0, self.tasks[category])
        extra = self.segments_per_video - 1  # every video has a segment; the rest vary
        counts = 1 + rng.negative_binomial(
            SEGMENT_SHAPE, SEGMENT_SHAPE / (SEGMENT_SHAPE + extra), size
        )
        counts = np.minimum(counts, MOST_SEGMENTS)
        return _Block(
            ids=self._ids(size),
            category=category,
            subcategory=(task % self.subcategories[category]).astype(int) + 1,
            rank=rng.integers(1, TOP_RESULTS + 1, size),
            task=task,
            counts=counts,
            **self._segments(int(counts.sum()), counts),
        )

    def _ids(self, size: int) -> list[str]:
        """`size` new ids, none drawn before."""
        ids: list[str] = []
        while len(ids) < size:
            codes = self.rng.integers(0, len(ID_ALPHABET), (size - len(ids), ID_LENGTH))
            letters = np.frombuffer(ID_ALPHABET, dtype=np.uint8)[codes].tobytes()
            for start in range(0, len(letters), ID_LENGTH):
                video_id = letters[start : start + ID_LENGTH].decode()
                if video_id not in self.seen_ids:
                    self.seen_ids.add(video_id)
                    ids.append(video_id)
        return ids

    def _segments(self, total: int, counts: np.ndarray) -> dict:
        """Start and end times (s, two decimals) and texts of `total` segments, `counts`
        per video."""
        rng = self.rng
        times = np.cumsum(rng.gamma(TIME_SHAPE, GAP_S / TIME_SHAPE, total))
        firsts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        times -= np.repeat(times[firsts] - rng.uniform(0, GAP_S, len(counts)), counts)
        ends = times + rng.gamma(TIME_SHAPE, SECONDS_PER_SEGMENT / TIME_SHAPE, total)
        word_counts = 1 + rng.poisson(WORDS_PER_CAPTION - 1, total)
        words = self.words[np.searchsorted(self.word_cdf, rng.random(word_counts.sum()))]
        bounds = np.concatenate([[0], np.cumsum(word_counts)]).tolist()
        texts = [" ".join(words[a:b]) for a, b in pairwise(bounds)]
        return {"starts": np.round(times, 2), "ends": np.round(ends, 2), "texts": texts}


@dataclass(frozen=True)
class _Block:
    ids: list[str]
    category: np.ndarray  # (V,) index into CATEGORIES
    subcategory: np.ndarray  # (V,) 1-based within the category
    rank: np.ndarray  # (V,) 1..TOP_RESULTS
    task: np.ndarray  # (V,) task id, numbered through the categories in Table 2's order
    counts: np.ndarray  # (V,) segments per video
    starts: np.ndarray  # (S,) seconds
    ends: np.ndarray  # (S,) seconds
    texts: list[str]  # (S,)

    def csv_rows(self) -> list[list]:
        names = list(CATEGORIES)
        return [
            [video_id, names[c], f"{names[c]} {s}", r, t]
            for video_id, c, s, r, t in zip(
                self.ids, self.category, self.subcategory, self.rank, self.task, strict=True
            )
        ]

    def write_json(self, handle: TextIO, first: bool) -> None:
        """Write the block's members of caption.json (`first`: the block opens the object)."""
        bounds = np.concatenate([[0], np.cumsum(self.counts)]).tolist()
        starts, ends = self.starts.tolist(), self.ends.tolist()
        for index, video_id in enumerate(self.ids):
            a, b = bounds[index], bounds[index + 1]
            value = {"start": starts[a:b], "end": ends[a:b], "text": self.texts[a:b]}
            separator = "" if first and index == 0 else ", "
            handle.write(f"{separator}{json.dumps(video_id)}: {json.dumps(value)}")

    def touch_videos(self, folder: Path) -> None:
        folders = [folder / name for name in CATEGORIES]
        for category in set(self.category.tolist()):
            folders[category].mkdir(parents=True, exist_ok=True)
        for video_id, category in zip(self.ids, self.category.tolist(), strict=True):
            (folders[category] / f"{video_id}.mp4").touch()
