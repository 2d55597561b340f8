"""Training and evaluation data: cached visual and text sequences joined by the manifests.

A video is usable when its features are in a visual shard (rejected videos are not); a
caption when its token ids (and states, in a states set) are in a text shard and its video
is usable. Everything left out is counted in the log, never dropped silently. Sequences are
read from the shards on demand (see `ShardSequences`), so memory does not grow with the
size of the store; the ids are indexed once per set of shards (`ShardIndex`), in sorted
NumPy arrays.
`FeatureBank.visual_part` gives the appearance or motion columns alone (Table 2a);
`FeatureBank.tokenizer` says which tokenizer made the caption token ids;
`FeatureBank.with_crops` adds the crop features of shards extracted with `features.crops`,
which only training reads (validation, export and evaluation use the full-frame features).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from supportset.data.manifest import read_captions, read_videos
from supportset.features.store import ShardIndex, ShardSequences, read_metadata
from supportset.features.visual import VISUAL_PARTS, shards_crop_count, shards_layout

log = logging.getLogger(__name__)


@dataclass
class SplitData:
    """The usable videos and captions of one split."""

    video_ids: list[str]
    caption_ids: list[str]
    caption_video_ids: list[str]  # the video of each caption, aligned with caption_ids
    captions_of_video: dict[str, list[str]]
    caption_windows: dict[str, tuple[float, float]] = field(default_factory=dict)  # segments, s


@dataclass(frozen=True)
class TokenizerIdentity:
    """The tokenizer that made a set of caption token ids (see `text.tokenizer_sha256`)."""

    sha256: str  # of the vocabulary: equal values give every token the same id
    text_model: str  # the T5 name or folder the text shards were embedded with

    def describe(self) -> str:
        return f"text.model {self.text_model} (tokenizer vocabulary sha256 {self.sha256[:12]})"


@dataclass
class FeatureBank:
    """The cached sequences of a dataset: id -> float32 (T, D), read from the shards on
    demand by `load` (plain dicts work too, e.g. in tests)."""

    videos: Mapping[str, np.ndarray]
    texts: Mapping[str, np.ndarray]
    token_ids: Mapping[str, np.ndarray]  # caption_id -> (L,) T5 token ids
    fps: float = 1.0  # visual feature steps per second of video
    timestamps: Mapping[str, np.ndarray] | None = None  # video_id -> (T,) s; None: k / fps
    visual_shards: tuple[Path, ...] = ()  # where `videos` is read from; () for plain dicts
    # the text shards' tokenizer; None for plain dicts and shards written before its record
    tokenizer: TokenizerIdentity | None = None
    # video_id -> (T, K, D) crop features (features.crops); None: not read (see with_crops)
    crops: Mapping[str, np.ndarray] | None = None

    @classmethod
    def load(
        cls,
        visual_shards: Iterable[str | Path],
        text_shards: Iterable[str | Path],
        cache_mb: int = 1024,
    ) -> FeatureBank:
        """A bank over the shards, keeping at most about `cache_mb` MB of decoded Parquet
        row groups per process (half for visual features, half for the text shards' token
        states and ids). Text shards made with different tokenizers are a ValueError.
        Token-id text shards (embed_text --token-ids-only) have no states: `texts` then
        raises, naming the shards, when a frozen text encoder reads it (see `_NoStates`)."""
        visual_shards, text_shards = list(visual_shards), list(text_shards)
        half = (cache_mb << 20) // 2
        # one index per set of shards, shared by its columns (ids are most of the memory)
        videos, captions = (
            ShardIndex(visual_shards, "video_id"),
            ShardIndex(text_shards, "caption_id"),
        )
        if text_shards_hold_states(text_shards):
            texts = ShardSequences(
                text_shards, "caption_id", "embeddings", cache_bytes=half * 7 // 8, index=captions
            )
            ids_cache = half // 8
        else:
            texts, ids_cache = _NoStates(text_shards), half
        return cls(
            ShardSequences(visual_shards, "video_id", "features", cache_bytes=half, index=videos),
            texts,
            ShardSequences(
                text_shards, "caption_id", "token_ids", np.int64, ids_cache, index=captions
            ),
            read_metadata(visual_shards[0]).get("settings", {}).get("fps", 1.0),
            ShardSequences(
                visual_shards, "video_id", "timestamps", cache_bytes=1 << 20, index=videos
            ),
            tuple(Path(path) for path in visual_shards),
            text_shards_tokenizer(text_shards),
        )

    def with_crops(self, cache_mb: int = 512) -> FeatureBank:
        """This bank with the crop features of its visual shards, video_id -> (T, K, D),
        read on demand keeping at most about `cache_mb` MB of decoded Parquet row groups
        per process; a bank that has crop features is returned as it is. A ValueError
        naming features.crops when the shards hold none (or different numbers K)."""
        if self.crops is not None:
            return self
        if not self.visual_shards:
            raise ValueError(
                "training.crop_augment and training.crop_contrast_weight read crop features, "
                "which only a bank read from visual shards extracted with features.crops "
                "above 0 has"
            )
        paths = list(self.visual_shards)
        count = shards_crop_count(paths)
        index = self.videos.index if isinstance(self.videos, ShardSequences) else None
        crops = ShardSequences(paths, "video_id", "crops", cache_bytes=cache_mb << 20, index=index)
        return replace(self, crops=_CropViews(crops, count))

    def layout(self) -> dict[str, tuple[int, int]] | None:
        """Visual part -> its columns [start, stop) of the video features, as the visual
        shards' metadata says (all must agree); None for a bank not read from shards."""
        return shards_layout(list(self.visual_shards)) if self.visual_shards else None

    def visual_part(self, part: str) -> FeatureBank:
        """This bank with video sequences (T, D_part) (and crops (T, K, D_part)) of one part
        of the features, sliced on each read: 'appearance' (the ResNet's columns) or
        'motion' (the R(2+1)D's); 'both' is this bank. Table 2a: "features obtained from a
        video R(2+1)D-34 ResNet achieve 2.9% and 7.0% higher performance compared to only
        image-frame based features from a ResNet-152. A further 3.5% and 2.0% can be gained
        by concatenating both features"."""
        if part == "both":
            return self
        if part not in VISUAL_PARTS:
            raise ValueError(
                f"model.visual_features '{part}' is not one of both, {', '.join(VISUAL_PARTS)}"
            )
        layout = self.layout()
        if layout is None:
            raise ValueError(
                f"model.visual_features '{part}' needs the layout of the visual features, "
                "which only a bank read from visual shards has"
            )
        crops = _Columns(self.crops, *layout[part]) if self.crops is not None else None
        videos = _Columns(self.videos, *layout[part])
        return replace(self, videos=videos, crops=crops, visual_shards=())

    def clip(self, video_id: str, start: float, end: float) -> np.ndarray:
        """The (T', D) features of the video's steps timed in [start, end) seconds; the
        step nearest the middle when none is (a segment shorter than a step)."""
        features = self.videos[video_id]
        steps = self.clip_steps(video_id, len(features), start, end)
        return features[steps].copy()  # not a view of the whole video

    def clip_steps(self, video_id: str, length: int, start: float, end: float) -> slice:
        """The steps of the video (of `length` steps) timed in [start, end) seconds; the
        step nearest the middle when none is (a segment shorter than a step)."""
        if self.timestamps is not None:
            times = self.timestamps[video_id]
        else:
            times = np.arange(length) / self.fps
        inside = np.flatnonzero((times >= start) & (times < end))
        if inside.size == 0:
            inside = [int(np.abs(times - (start + end) / 2).argmin())]
        return slice(int(inside[0]), int(inside[-1]) + 1)

    def steps(self, seconds: float) -> int:
        """Feature steps that cover `seconds` of video (at least one)."""
        return max(1, round(seconds * self.fps))

    def length(self, video_id: str) -> int:
        """The video's number of feature steps, read no more than the store needs: nothing
        from HDF5 shards, the timestamps' row group from Parquet (ShardSequences.length)."""
        steps = self.timestamps if self.timestamps is not None else self.videos
        reader = getattr(steps, "length", None)
        return reader(video_id) if reader is not None else len(steps[video_id])

    def read_steps(self, video_id: str, span: slice) -> np.ndarray:
        """The (span.stop - span.start, D) features of steps `span` of the video (clipped
        to its length), reading only those steps where the store can (HDF5 shards, see
        ShardSequences.steps)."""
        return read_steps(self.videos, video_id, span.start, span.stop)

    @property
    def video_dim(self) -> int:
        return next(iter(self.videos.values())).shape[1]

    @property
    def text_dim(self) -> int:
        return next(iter(self.texts.values())).shape[1]

    def split(
        self,
        videos_manifest: str | Path,
        captions_manifest: str | Path,
        split: str | Sequence[str],
    ) -> SplitData:
        """The usable ids of `split` (or of several splits together), in manifest order;
        logs what is missing."""
        names = {split} if isinstance(split, str) else set(split)
        split = "+".join(sorted(names))
        videos = read_videos(videos_manifest)
        unknown = sorted(names - {video["split"] for video in videos})
        if unknown and len(unknown) < len(names):
            raise ValueError(
                f"split(s) {', '.join(unknown)} have no video in {videos_manifest}; "
                "check training.train_splits"
            )
        listed = [v["video_id"] for v in videos if v["split"] in names]
        with_features = set(present(self.videos, listed))
        captions = [c for c in read_captions(captions_manifest) if c["split"] in names]
        # every caption of the text shards has token ids; not all have states
        embedded = set(present(self.token_ids, [c["caption_id"] for c in captions]))
        kept = [
            c for c in captions if c["video_id"] in with_features and c["caption_id"] in embedded
        ]
        captioned = {caption["video_id"] for caption in kept}
        video_ids = [video_id for video_id in listed if video_id in captioned]
        if len(video_ids) < len(listed) or len(kept) < len(captions):
            log.warning(
                "%s: %d of %d videos left out (%d without features, i.e. rejected; %d without "
                "a caption in the text shards); %d of %d captions left out",
                split,
                len(listed) - len(video_ids),
                len(listed),
                len(listed) - len(with_features),
                len(with_features) - len(video_ids),
                len(captions) - len(kept),
                len(captions),
            )
        if not video_ids:
            raise ValueError(f"split '{split}' has no video with features and captions")
        captions_of_video: dict[str, list[str]] = {video_id: [] for video_id in video_ids}
        for caption in kept:
            captions_of_video[caption["video_id"]].append(caption["caption_id"])
        windows = {
            c["caption_id"]: (c["start"], c["end"])
            for c in kept
            if c.get("start") is not None and c.get("end") is not None
        }
        return SplitData(
            video_ids,
            [c["caption_id"] for c in kept],
            [c["video_id"] for c in kept],
            captions_of_video,
            windows,
        )


def text_shards_hold_states(paths: Sequence[str | Path]) -> bool:
    """Whether the text shards `paths` hold T5 states (embed_text's default) rather than
    token ids alone (their metadata's `token_ids_only`, the 'tokens' sets); True without
    shards. Shards of both kinds together are a ValueError naming one of each."""
    states = [not read_metadata(path).get("token_ids_only", False) for path in paths]
    if len(set(states)) > 1:
        raise ValueError(
            f"text shards {paths[states.index(True)]} (T5 states) and "
            f"{paths[states.index(False)]} (token ids only) are read together: pass the shards "
            "of one text set"
        )
    return all(states)


def text_shards_tokenizer(paths: Sequence[str | Path]) -> TokenizerIdentity | None:
    """The tokenizer all the text shards `paths` were embedded with, from their metadata;
    None when there are no shards or they predate `tokenizer_sha256`. Shards that differ
    (another tokenizer, or one recorded and one not) are a ValueError naming two of them."""
    identities = [_shard_tokenizer(path) for path in paths]
    for path, identity in zip(paths, identities, strict=True):
        if _sha256(identity) != _sha256(identities[0]):
            raise ValueError(
                f"text shards {paths[0]} and {path} do not share a tokenizer "
                f"({_description(identities[0])} and {_description(identity)}), so their "
                "token ids mean different things: run embed_text again for the whole dataset"
            )
    return identities[0] if identities else None


def text_features_record(paths: Sequence[str | Path]) -> dict | None:
    """What a query must go through to be encoded as the text shards' captions were: the
    T5 (name or folder) they were embedded with, the truncation `max_tokens`, the storage
    `dtype` of the T5 states and `tokenizer_sha256`, from the first shard's metadata (the
    tokenizer is checked to be shared by `text_shards_tokenizer`); None without shards or
    for shards that predate `tokenizer_sha256`."""
    if not paths:
        return None
    metadata = read_metadata(paths[0])
    if "tokenizer_sha256" not in metadata:
        return None
    settings = metadata.get("settings", {})
    return {
        "model": metadata["model"],
        "max_tokens": settings["max_tokens"],
        "dtype": settings["dtype"],
        "tokenizer_sha256": metadata["tokenizer_sha256"],
    }


def _shard_tokenizer(path: str | Path) -> TokenizerIdentity | None:
    metadata = read_metadata(path)
    if "tokenizer_sha256" not in metadata:
        return None
    return TokenizerIdentity(metadata["tokenizer_sha256"], metadata["model"])


def _sha256(identity: TokenizerIdentity | None) -> str | None:
    return identity.sha256 if identity is not None else None


def _description(identity: TokenizerIdentity | None) -> str:
    if identity is None:
        return "no tokenizer recorded: written before embed_text recorded it"
    return identity.describe()


class _NoStates(Mapping[str, np.ndarray]):
    """The T5 states of token-id text shards, which hold none: every read is a ValueError
    naming the shards and what a frozen text encoder reads instead."""

    def __init__(self, paths: Sequence[str | Path]) -> None:
        self.paths = list(paths)

    def error(self) -> ValueError:
        named = ", ".join(str(path) for path in self.paths[:3])
        more = f" and {len(self.paths) - 3} more" if len(self.paths) > 3 else ""
        return ValueError(
            f"text shards {named}{more} hold caption token ids only (embed_text "
            "--token-ids-only, the 'tokens' text set of a fine-tuned text encoder), no T5 "
            "states: a frozen text encoder (model.text_encoder 'frozen') needs embed_text's "
            "states, the 'text' set (results/{dataset}/features/text/)"
        )

    def __getitem__(self, caption_id: str) -> np.ndarray:
        raise self.error()

    def __iter__(self):
        raise self.error()

    def __len__(self) -> int:
        raise self.error()


def present(sequences: Mapping[str, np.ndarray], row_ids: list[str]) -> list[str]:
    """The ids of `row_ids` that `sequences` holds, in their order; one vectorised search
    for a ShardSequences (see ShardIndex.contains)."""
    index = getattr(sequences, "index", None)
    if isinstance(index, ShardIndex):
        held = index.contains(row_ids)
        return [row_id for row_id, keep in zip(row_ids, held, strict=True) if keep]
    return [row_id for row_id in row_ids if row_id in sequences]


def read_steps(
    sequences: Mapping[str, np.ndarray], row_id: str, start: int, stop: int
) -> np.ndarray:
    """Steps [start, stop) of one sequence of a mapping: through its `steps` method where it
    has one (ShardSequences, _Columns), which reads no more than it must."""
    reader = getattr(sequences, "steps", None)
    if reader is not None:
        return reader(row_id, start, stop)
    return sequences[row_id][start:stop]


class _Columns(Mapping[str, np.ndarray]):
    """video_id -> the columns [start, stop) of its features (or crops), (T, stop - start)
    (or (T, K, stop - start)), a copy."""

    def __init__(self, videos: Mapping[str, np.ndarray], start: int, stop: int) -> None:
        self.videos = videos
        self.start = start
        self.stop = stop

    def __getitem__(self, video_id: str) -> np.ndarray:
        return np.ascontiguousarray(self.videos[video_id][..., self.start : self.stop])

    def steps(self, video_id: str, start: int, stop: int) -> np.ndarray:
        rows = read_steps(self.videos, video_id, start, stop)
        return np.ascontiguousarray(rows[..., self.start : self.stop])

    def __contains__(self, video_id: object) -> bool:
        return video_id in self.videos  # without reading the features

    def __iter__(self):
        return iter(self.videos)

    def __len__(self) -> int:
        return len(self.videos)


class _CropViews(Mapping[str, np.ndarray]):
    """video_id -> its stored crops row (T, K * D) seen as its K crop features (T, K, D)."""

    def __init__(self, rows: Mapping[str, np.ndarray], count: int) -> None:
        self.rows = rows
        self.count = count

    def __getitem__(self, video_id: str) -> np.ndarray:
        rows = self.rows[video_id]
        return rows.reshape(len(rows), self.count, -1)

    def __contains__(self, video_id: object) -> bool:
        return video_id in self.rows

    def __iter__(self):
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)


class _Clips(Mapping[str, np.ndarray]):
    """caption_id -> the features of its segment of its video (see FeatureBank.clip)."""

    def __init__(self, bank: FeatureBank, split: SplitData) -> None:
        self.bank = bank
        self.owner = dict(zip(split.caption_ids, split.caption_video_ids, strict=True))
        self.windows = split.caption_windows

    def __getitem__(self, caption_id: str) -> np.ndarray:
        return self.bank.clip(self.owner[caption_id], *self.windows[caption_id])

    def __iter__(self):
        return iter(self.windows)

    def __len__(self) -> int:
        return len(self.windows)


def clip_split(bank: FeatureBank, split: SplitData) -> tuple[FeatureBank, SplitData]:
    """The split as clip retrieval: every caption's segment is a "video" of its own (id =
    the caption's), and the caption its one positive."""
    clips = FeatureBank(_Clips(bank, split), bank.texts, bank.token_ids, bank.fps)
    ids = [c for c in split.caption_ids if c in split.caption_windows]
    return clips, SplitData(ids, ids, ids, {c: [c] for c in ids}, {})


def pad_token_ids(sequences: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids (L_i,) padded with 0 into (B, L) int64, with the (B, L) validity mask."""
    width = max(len(sequence) for sequence in sequences)
    ids = torch.zeros(len(sequences), width, dtype=torch.long)
    valid = torch.zeros(len(sequences), width, dtype=torch.bool)
    for row, sequence in enumerate(sequences):
        ids[row, : len(sequence)] = torch.from_numpy(sequence)
        valid[row, : len(sequence)] = True
    return ids, valid


def pad_batch(sequences: list[np.ndarray], max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack sequences (T_i, D) truncated to `max_len` into (B, T, D) zeros-padded and a
    (B, T) validity mask, T = the longest truncated length."""
    truncated = [sequence[:max_len] for sequence in sequences]
    width = max(len(sequence) for sequence in truncated)
    batch = torch.zeros(len(truncated), width, truncated[0].shape[1])
    valid = torch.zeros(len(truncated), width, dtype=torch.bool)
    for row, sequence in enumerate(truncated):
        batch[row, : len(sequence)] = torch.from_numpy(sequence)
        valid[row, : len(sequence)] = True
    return batch, valid
