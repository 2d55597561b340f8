"""The `extract_visual` stage: per second of video, an appearance and a motion feature.

Appearance: a ResNet on the frame that represents the second (video/decode.py). Motion:
an R(2+1)D network on `clip_len` frames at the native rate around that frame
(video/sampling.py). The two pooled outputs are concatenated, giving (T, D_a + D_m) per
video: 2048 + 512 = 2560 in the paper's setting. The shard metadata's "layout" names the
columns of each part, so that training can use one of them alone (`model.visual_features`,
the paper's Table 2a) without extracting again.

With `crops` K above 0 (StiCA's feature crops, Patrick et al. 2021: "Feature-Crop: get
large number of crops for within-modality noise contrastive comparison"), each step also
gets K crop features: K random windows of the frame (`crop_windows`, seeded by the video
and the step, so the same whatever the batch, shard or worker), each average-pooled on
both networks' last feature maps (the R(2+1)D's averaged over time too) and concatenated
like the full-frame feature, stored as the shard's "crops" column (T, K * D). The
full-frame feature stays the networks' own global pooling, unchanged.

Decode workers (video/workers.py) stream samples of several videos at once; the CNNs run
on fixed-size batches that mix videos, so decoding overlaps with compute and every
forward pass has the same shape (the last batch is padded), which keeps reruns
bit-identical. A video that cannot be decoded becomes a row in the shard's rejects (or
stops the job with `on_error: fail`); the others are written, in manifest order.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from supportset import __version__
from supportset.data.manifest import read_videos
from supportset.features import backbones
from supportset.features.store import ShardWriter, read_metadata, visual_schema, write_rejects
from supportset.progress import ProgressLog
from supportset.torch_utils import autocast, pick_device
from supportset.video.sampling import SampleChunk, SamplingSpec
from supportset.video.workers import DecodePool

log = logging.getLogger(__name__)
SHARD_SUFFIXES = {"parquet": ".parquet", "hdf5": ".h5"}
VISUAL_PARTS = ("appearance", "motion")  # in the order of their columns
CROP_WINDOW_RULE = (
    "per crop: height and width fractions of the frame each uniform in [scale, 1], top-left "
    "corner uniform where the window fits, from numpy default_rng(int of the first 16 bytes, "
    "little-endian, of sha256(json [seed, video_id, step])); on each network's h x w map "
    "(the R(2+1)D's averaged over time) every edge moves to the nearest cell boundary, "
    "keeping at least one cell each way; crop k of a step is columns [k * dim, (k + 1) * dim) "
    "of its crops row"
)


@dataclass
class AppearanceSettings:
    arch: str = "resnet152"  # torchvision ResNet
    weights: str = "IMAGENET1K_V1"  # torchvision weights name, file path, or "random"
    resize: int = 256  # short side (pixels) before the centre crop
    size: int = 224  # centre crop (pixels)


@dataclass
class MotionSettings:
    arch: str = "r2plus1d_34"  # VideoResNet with (2+1)D blocks
    weights: str = ""  # IG65M name, torchvision name, file path, or "random"
    clip_len: int = 32  # frames per clip at the native rate
    resize: int = 128  # short side (pixels) before the centre crop
    size: int = 112  # centre crop (pixels)


@dataclass
class VisualSettings:
    fps: float = 1.0  # feature samples per second of video
    shards: int = 4  # independent extraction jobs per dataset
    dtype: str = "float16"  # storage type of the features
    format: str = "parquet"  # parquet | hdf5
    batch_size: int = 32  # samples (frames and clips) per forward pass
    on_error: str = "skip"  # skip: reject the video and go on; fail: stop the job
    decode_timeout: float = 120.0  # seconds a decoder may stay silent before it is killed
    crops: int = 0  # crop features per step besides the full-frame one (0: none)
    crop_scale: float = 0.5  # smallest side of a crop window, as a fraction of the frame's
    crop_seed: int = 0  # seed of the crop windows (with the video id and the step)
    appearance: AppearanceSettings = field(default_factory=AppearanceSettings)
    motion: MotionSettings = field(default_factory=MotionSettings)


class ExtractionError(RuntimeError):
    """A video failed with `on_error: fail`."""


class VisualExtractor:
    """Both backbones on one device: (B, A, A, 3) frames + (B, T, M, M, 3) clips -> (B, D),
    and the (B, K, D) features of K windows of each sample when given them."""

    def __init__(self, settings: VisualSettings, device: torch.device) -> None:
        self.settings = settings
        self.device = device
        self.appearance = backbones.build_appearance(
            settings.appearance.arch, settings.appearance.weights
        ).to(device, memory_format=torch.channels_last)
        self.motion = backbones.build_motion(settings.motion.arch, settings.motion.weights)
        self.motion.to(device)
        self.layout = feature_layout(backbones.APPEARANCE_DIMS[settings.appearance.arch])
        self.dim = self.layout["motion"][1]  # D_a + D_m

    @torch.inference_mode()
    def __call__(
        self, frames: np.ndarray, clips: np.ndarray, windows: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """uint8 RGB frames (B, A, A, 3) and clips (B, T, M, M, 3) -> float32 full-frame
        features (B, D) and, given windows (B, K, 4) (see `crop_windows`), float32 crop
        features (B, K, D); None without windows."""
        images = torch.from_numpy(frames).to(self.device).permute(0, 3, 1, 2)  # (B, 3, A, A)
        images = _normalise(images, backbones.IMAGENET_MEAN, backbones.IMAGENET_STD)
        videos = torch.from_numpy(clips).to(self.device).permute(0, 4, 1, 2, 3)  # (B, 3, T, M, M)
        videos = _normalise(videos, backbones.KINETICS_MEAN, backbones.KINETICS_STD)
        with autocast(self.device):
            images = images.contiguous(memory_format=torch.channels_last)
            appearance_map = backbones.appearance_map(self.appearance, images)  # (B, C, h, w)
            motion_map = backbones.motion_map(self.motion, videos)  # (B, 512, t, h', w')
            appearance = backbones.pool_map(self.appearance, appearance_map)  # (B, C)
            motion = backbones.pool_map(self.motion, motion_map)  # (B, 512)
        features = torch.cat([appearance, motion], dim=1).float().cpu().numpy()
        if windows is None:
            return features, None
        still_motion = motion_map.float().mean(dim=2)  # (B, 512, h', w'): averaged over time
        crops = [_pool_crops(appearance_map, windows), _pool_crops(still_motion, windows)]
        return features, torch.cat(crops, dim=2).cpu().numpy()  # (B, K, D)


class SampleQueue:
    """Samples waiting for the CNNs, in arrival order, each tagged with its video and its
    step (its position among the video's samples)."""

    def __init__(self) -> None:
        self.owners: list[int] = []
        self.steps: list[int] = []
        self.frames: list[np.ndarray] = []
        self.clips: list[np.ndarray] = []
        self.queued_steps: dict[int, int] = {}  # video -> its samples queued so far

    def __len__(self) -> int:
        return len(self.owners)

    def add(self, owner: int, chunk: SampleChunk) -> None:
        first = self.queued_steps.get(owner, 0)
        self.queued_steps[owner] = first + len(chunk.timestamps)
        self.owners.extend([owner] * len(chunk.timestamps))
        self.steps.extend(range(first, self.queued_steps[owner]))
        self.frames.extend(chunk.appearance)
        self.clips.extend(chunk.motion)

    def take(self, size: int) -> tuple[list[int], list[int], np.ndarray, np.ndarray]:
        """The owners and steps of the first `size` samples (fewer if not available), and
        their frames and clips zero-padded to `size`."""
        owners, steps = self.owners[:size], self.steps[:size]
        frames, clips = self.frames[:size], self.clips[:size]
        del self.owners[:size], self.steps[:size], self.frames[:size], self.clips[:size]
        padding = size - len(owners)
        frames_array = np.stack(frames + [np.zeros_like(frames[0])] * padding)
        clips_array = np.stack(clips + [np.zeros_like(clips[0])] * padding)
        return owners, steps, frames_array, clips_array


class ShardAssembly:
    """Per-video timestamps, features and crop features (with `features.crops`), written
    in manifest order once complete."""

    def __init__(self, videos: list[dict], writer: ShardWriter) -> None:
        self.videos = videos
        self.writer = writer
        self.timestamps: dict[int, list[float]] = {i: [] for i in range(len(videos))}
        self.features: dict[int, list[np.ndarray]] = {i: [] for i in range(len(videos))}
        self.crops: dict[int, list[np.ndarray]] = {i: [] for i in range(len(videos))}
        self.decoded: set[int] = set()
        self.rejects: dict[int, str] = {}
        self.next_to_write = 0
        self.written = 0
        self.progress = ProgressLog(len(videos), "videos done", log)

    def add_samples(self, index: int, chunk: SampleChunk) -> None:
        self.timestamps[index].extend(chunk.timestamps.tolist())

    def add_features(
        self, owners: list[int], features: np.ndarray, crops: np.ndarray | None
    ) -> None:
        """Features (B, D) and crop features (B, K, D) or None of the samples of `owners`
        (B >= their number: padding rows are dropped)."""
        for row, owner in enumerate(owners):
            if owner not in self.rejects:
                self.features[owner].append(features[row])
                if crops is not None:
                    self.crops[owner].append(crops[row].ravel())  # (K * D,)
        self._write_ready()

    def finish(self, index: int) -> None:
        if not self.timestamps[index]:
            self.reject(index, f"{self.videos[index]['path']}: no frame at or after 0 s")
            return
        self.decoded.add(index)
        self._write_ready()

    def reject(self, index: int, reason: str) -> None:
        self.rejects[index] = reason
        self._write_ready()

    def reject_rows(self) -> list[tuple[str, str]]:
        return [(self.videos[i]["video_id"], reason) for i, reason in sorted(self.rejects.items())]

    def _write_ready(self) -> None:
        while self.next_to_write < len(self.videos):
            index = self.next_to_write
            if index in self.rejects:
                pass
            elif index in self.decoded and len(self.features[index]) == len(self.timestamps[index]):
                self.writer.write((self.videos[index]["video_id"],), self._sequences(index))
                self.written += 1
            else:
                return
            del self.timestamps[index], self.features[index], self.crops[index]
            self.next_to_write += 1
            self.progress.advance()

    def _sequences(self, index: int) -> tuple[np.ndarray, ...]:
        """Timestamps (T,), features (T, D) and, with crops, crop features (T, K * D)."""
        sequences = (np.array(self.timestamps[index]), np.stack(self.features[index]))
        if self.crops[index]:
            sequences += (np.stack(self.crops[index]),)
        return sequences


def sampling_spec(settings: VisualSettings) -> SamplingSpec:
    """What the decode workers need from the settings."""
    return SamplingSpec(
        fps=settings.fps,
        appearance_resize=settings.appearance.resize,
        appearance_size=settings.appearance.size,
        motion_resize=settings.motion.resize,
        motion_size=settings.motion.size,
        clip_len=settings.motion.clip_len,
        chunk_samples=max(1, settings.batch_size // 4),
    )


def shard_videos(videos: list[dict], shard: int, num_shards: int) -> list[dict]:
    """The manifest rows of shard `shard` of `num_shards` (every num_shards-th row)."""
    if not 0 <= shard < num_shards:
        raise ValueError(f"shard {shard} is outside 0..{num_shards - 1}")
    return videos[shard::num_shards]


def check_weights(settings: VisualSettings) -> None:
    """Raise WeightsError unless both backbones' weights load offline and fit clip_len."""
    backbones.resolve_weights(
        settings.appearance.arch, settings.appearance.weights, "features.appearance.weights"
    )
    backbones.resolve_weights(
        settings.motion.arch, settings.motion.weights, "features.motion.weights"
    )
    backbones.check_clip_len(settings.motion.weights, settings.motion.clip_len)


def check_settings(settings: VisualSettings, out: str | Path) -> None:
    """Stop before any work: weights not available offline, a path of the wrong format, or
    crop settings out of range."""
    check_weights(settings)
    if settings.crops < 0:
        raise ValueError(f"features.crops must be 0 or more, not {settings.crops}")
    if not 0 < settings.crop_scale <= 1:
        raise ValueError(f"features.crop_scale must be in (0, 1], not {settings.crop_scale}")
    if Path(out).suffix != SHARD_SUFFIXES[settings.format]:
        raise ValueError(f"features.format is {settings.format} but the output is {out}")


def extract_shard(
    manifest: str | Path,
    shard: int,
    settings: VisualSettings,
    out: str | Path,
    rejects: str | Path,
    workers: int = 2,
) -> tuple[int, int]:
    """Extract the features of one shard; return (videos written, videos rejected)."""
    check_settings(settings, out)
    videos = shard_videos(read_videos(manifest), shard, settings.shards)
    extractor = VisualExtractor(settings, pick_device())
    metadata = shard_metadata(settings, extractor)
    schema = visual_schema(extractor.dim, settings.dtype, settings.crops)
    with ShardWriter(out, schema, metadata) as writer:
        assembly = extract_videos(videos, extractor, writer, workers)
    write_rejects(rejects, "video_id", assembly.reject_rows())
    return assembly.written, len(assembly.rejects)


def extract_videos(
    videos: list[dict], extractor: VisualExtractor, writer: ShardWriter, workers: int
) -> ShardAssembly:
    """Decode `videos` in worker processes, run the CNNs on mixed batches and write every
    complete video to `writer` in manifest order; the returned assembly holds the rejects."""
    settings = extractor.settings
    pool = DecodePool([v["path"] for v in videos], sampling_spec(settings), workers,
                      settings.decode_timeout)  # fmt: skip
    assembly = ShardAssembly(videos, writer)
    queue = SampleQueue()
    for event in pool.events():
        if event.kind == "chunk":
            assembly.add_samples(event.index, event.chunk)
            queue.add(event.index, event.chunk)
        elif event.kind == "done":
            assembly.finish(event.index)
        else:
            _handle_reject(assembly, event.index, event.reason, settings.on_error)
        while len(queue) >= settings.batch_size:
            assembly.add_features(*_run(extractor, queue, videos))
    while len(queue):
        assembly.add_features(*_run(extractor, queue, videos))
    return assembly


def shard_metadata(settings: VisualSettings, extractor: VisualExtractor) -> dict:
    """How the features were made, stored in the shard; with crops, "crops" records their
    count, scale, seed and window rule."""
    metadata = {
        "stage": "extract_visual",
        "settings": asdict(settings),
        "dim": extractor.dim,
        "layout": {part: list(columns) for part, columns in extractor.layout.items()},
        "preprocessing": {
            "appearance": "short side resized (swscale bilinear), centre crop, ImageNet mean/std",
            "motion": "short side resized (swscale bilinear), centre crop, Kinetics mean/std",
            "sample": "first frame at or after k / fps seconds (pts); clip centred on it",
        },
        "version": __version__,
        "device": extractor.device.type,
    }
    if settings.crops:
        metadata["crops"] = {
            "count": settings.crops,
            "scale": settings.crop_scale,
            "seed": settings.crop_seed,
            "window": CROP_WINDOW_RULE,
        }
    return metadata


def crop_windows(video_id: str, step: int, count: int, scale: float, seed: int) -> np.ndarray:
    """The `count` crop windows of a video's step: (count, 4) [top, left, height, width]
    as fractions of the frame, drawn as CROP_WINDOW_RULE says, from a generator seeded by
    (seed, video_id, step) alone, so that they do not depend on the batch, the shard or the
    workers."""
    key = hashlib.sha256(json.dumps([seed, video_id, step]).encode()).digest()
    rng = np.random.default_rng(int.from_bytes(key[:16], "little"))
    sides = rng.uniform(scale, 1.0, size=(count, 2))  # (height, width)
    corners = rng.uniform(0.0, 1.0, size=(count, 2)) * (1.0 - sides)  # (top, left)
    return np.concatenate([corners, sides], axis=1)


def window_cells(windows: np.ndarray, height: int, width: int) -> np.ndarray:
    """Windows (..., 4) [top, left, height, width] in fractions -> int64 cells (..., 4)
    [top, left, bottom, right) of a height x width grid: every edge at the nearest cell
    boundary, at least one cell each way."""
    grid = np.array([height, width])
    starts = np.floor(windows[..., :2] * grid + 0.5).astype(np.int64)
    stops = np.floor((windows[..., :2] + windows[..., 2:]) * grid + 0.5).astype(np.int64)
    starts = np.minimum(starts, grid - 1)
    stops = np.clip(stops, starts + 1, grid)
    return np.concatenate([starts, stops], axis=-1)


def feature_layout(appearance_dim: int) -> dict[str, tuple[int, int]]:
    """Part -> its columns [start, stop) of the features: the appearance ResNet's first,
    then the R(2+1)D's MOTION_DIM."""
    return {
        "appearance": (0, appearance_dim),
        "motion": (appearance_dim, appearance_dim + backbones.MOTION_DIM),
    }


def shard_layout(path: str | Path) -> dict[str, tuple[int, int]]:
    """The layout of the features of visual shard `path`: the one stored in its metadata,
    or, for shards written before layouts were stored, the one its appearance arch gives
    (checked against the stored feature width); ValueError naming the shard otherwise."""
    metadata = read_metadata(path)
    if "layout" in metadata:
        return {part: tuple(columns) for part, columns in metadata["layout"].items()}
    arch = metadata.get("settings", {}).get("appearance", {}).get("arch")
    if arch not in backbones.APPEARANCE_DIMS:
        raise ValueError(
            f"visual shard {path} holds no layout of its features and no appearance arch "
            "to derive one from: extract it again to use model.visual_features"
        )
    layout = feature_layout(backbones.APPEARANCE_DIMS[arch])
    if layout["motion"][1] != metadata.get("dim"):
        raise ValueError(
            f"visual shard {path}: {arch} and R(2+1)D features are {layout['motion'][1]} "
            f"wide, but the shard says {metadata.get('dim')}: extract it again to use "
            "model.visual_features"
        )
    return layout


def shards_layout(paths: list[str | Path]) -> dict[str, tuple[int, int]]:
    """The layout all the visual shards `paths` share; ValueError when two differ."""
    layouts = [shard_layout(path) for path in paths]
    for path, layout in zip(paths, layouts, strict=True):
        if layout != layouts[0]:
            raise ValueError(
                f"visual shards {paths[0]} and {path} lay their features out differently "
                f"({layouts[0]} and {layout}): they were extracted with other settings"
            )
    return layouts[0]


def shards_crop_count(paths: list[str | Path]) -> int:
    """The number K of crop features per step all the visual shards `paths` hold; a
    ValueError naming features.crops when one holds none or two hold different numbers."""
    counts = [read_metadata(path).get("crops", {}).get("count", 0) for path in paths]
    for path, count in zip(paths, counts, strict=True):
        if count == 0:
            raise ValueError(
                f"visual shard {path} holds no crop features, which training.crop_augment and "
                "training.crop_contrast_weight read: extract it with features.crops above 0"
            )
        if count != counts[0]:
            raise ValueError(
                f"visual shards {paths[0]} and {path} hold {counts[0]} and {count} crop "
                "features per step (features.crops): extract them with the same settings"
            )
    return counts[0]


def _run(
    extractor: VisualExtractor, queue: SampleQueue, videos: list[dict]
) -> tuple[list[int], np.ndarray, np.ndarray | None]:
    """The next batch through the CNNs: its owners, features (B, D) and crops (B, K, D)."""
    settings = extractor.settings
    owners, steps, frames, clips = queue.take(settings.batch_size)
    windows = None
    if settings.crops:
        windows = np.stack(
            [
                crop_windows(videos[owner]["video_id"], step, settings.crops,
                             settings.crop_scale, settings.crop_seed)
                for owner, step in zip(owners, steps, strict=True)
            ]
            + [_whole_frames(settings.crops)] * (len(frames) - len(owners))  # padding rows
        )  # fmt: skip
    return owners, *extractor(frames, clips, windows)


def _whole_frames(count: int) -> np.ndarray:
    """`count` windows covering the whole frame, (count, 4)."""
    return np.tile([0.0, 0.0, 1.0, 1.0], (count, 1))


def _pool_crops(feature_map: torch.Tensor, windows: np.ndarray) -> torch.Tensor:
    """Map (B, C, h, w) and windows (B, K, 4) -> float32 window averages (B, K, C)."""
    cells = window_cells(windows, feature_map.shape[2], feature_map.shape[3])
    return backbones.pool_windows(feature_map, torch.from_numpy(cells))


def _handle_reject(assembly: ShardAssembly, index: int, reason: str, on_error: str) -> None:
    video_id = assembly.videos[index]["video_id"]
    if on_error == "fail":
        raise ExtractionError(f"video {video_id}: {reason} (features.on_error is 'fail')")
    log.warning("rejected %s: %s", video_id, reason)
    assembly.reject(index, reason)


def _normalise(pixels: torch.Tensor, mean: tuple, std: tuple) -> torch.Tensor:
    """uint8 pixels with channels on axis 1 -> float32 in [0, 1], minus mean, over std."""
    shape = [1, 3] + [1] * (pixels.dim() - 2)
    mean_t = torch.tensor(mean, device=pixels.device).view(shape)
    std_t = torch.tensor(std, device=pixels.device).view(shape)
    return (pixels.float() / 255.0 - mean_t) / std_t
