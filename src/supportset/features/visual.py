"""The `extract_visual` stage: per second of video, an appearance and a motion feature.

Appearance: a ResNet on the frame that represents the second (video/decode.py). Motion:
an R(2+1)D network on `clip_len` frames at the native rate around that frame
(video/sampling.py). The two pooled outputs are concatenated, giving (T, D_a + D_m) per
video: 2048 + 512 = 2560 in the paper's setting. The shard metadata's "layout" names the
columns of each part, so that training can use one of them alone (`model.visual_features`,
the paper's Table 2a) without extracting again.

Decode workers (video/workers.py) stream samples of several videos at once; the CNNs run
on fixed-size batches that mix videos, so decoding overlaps with compute and every
forward pass has the same shape (the last batch is padded), which keeps reruns
bit-identical. A video that cannot be decoded becomes a row in the shard's rejects (or
stops the job with `on_error: fail`); the others are written, in manifest order.
"""

from __future__ import annotations

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
    appearance: AppearanceSettings = field(default_factory=AppearanceSettings)
    motion: MotionSettings = field(default_factory=MotionSettings)


class ExtractionError(RuntimeError):
    """A video failed with `on_error: fail`."""


class VisualExtractor:
    """Both backbones on one device: (B, A, A, 3) frames + (B, T, M, M, 3) clips -> (B, D)."""

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
    def __call__(self, frames: np.ndarray, clips: np.ndarray) -> np.ndarray:
        """uint8 RGB frames (B, A, A, 3) and clips (B, T, M, M, 3) -> float32 (B, D)."""
        images = torch.from_numpy(frames).to(self.device).permute(0, 3, 1, 2)  # (B, 3, A, A)
        images = _normalise(images, backbones.IMAGENET_MEAN, backbones.IMAGENET_STD)
        videos = torch.from_numpy(clips).to(self.device).permute(0, 4, 1, 2, 3)  # (B, 3, T, M, M)
        videos = _normalise(videos, backbones.KINETICS_MEAN, backbones.KINETICS_STD)
        with autocast(self.device):
            appearance = self.appearance(images.contiguous(memory_format=torch.channels_last))
            motion = self.motion(videos)
        return torch.cat([appearance, motion], dim=1).float().cpu().numpy()


class SampleQueue:
    """Samples waiting for the CNNs, in arrival order, each tagged with its video."""

    def __init__(self) -> None:
        self.owners: list[int] = []
        self.frames: list[np.ndarray] = []
        self.clips: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self.owners)

    def add(self, owner: int, chunk: SampleChunk) -> None:
        self.owners.extend([owner] * len(chunk.timestamps))
        self.frames.extend(chunk.appearance)
        self.clips.extend(chunk.motion)

    def take(self, size: int) -> tuple[list[int], np.ndarray, np.ndarray]:
        """The first `size` samples (fewer if not available), zero-padded to `size`."""
        owners, frames, clips = self.owners[:size], self.frames[:size], self.clips[:size]
        del self.owners[:size], self.frames[:size], self.clips[:size]
        padding = size - len(owners)
        frames_array = np.stack(frames + [np.zeros_like(frames[0])] * padding)
        clips_array = np.stack(clips + [np.zeros_like(clips[0])] * padding)
        return owners, frames_array, clips_array


class ShardAssembly:
    """Per-video timestamps and features, written in manifest order once complete."""

    def __init__(self, videos: list[dict], writer: ShardWriter) -> None:
        self.videos = videos
        self.writer = writer
        self.timestamps: dict[int, list[float]] = {i: [] for i in range(len(videos))}
        self.features: dict[int, list[np.ndarray]] = {i: [] for i in range(len(videos))}
        self.decoded: set[int] = set()
        self.rejects: dict[int, str] = {}
        self.next_to_write = 0
        self.written = 0
        self.progress = ProgressLog(len(videos), "videos done", log)

    def add_samples(self, index: int, chunk: SampleChunk) -> None:
        self.timestamps[index].extend(chunk.timestamps.tolist())

    def add_features(self, owners: list[int], features: np.ndarray) -> None:
        for owner, row in zip(owners, features, strict=False):  # padding rows are dropped
            if owner not in self.rejects:
                self.features[owner].append(row)
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
                self.writer.write(
                    (self.videos[index]["video_id"],),
                    (np.array(self.timestamps[index]), np.stack(self.features[index])),
                )
                self.written += 1
            else:
                return
            del self.timestamps[index], self.features[index]
            self.next_to_write += 1
            self.progress.advance()


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
    """Stop before any work: weights not available offline, or a path of the wrong format."""
    check_weights(settings)
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
    schema = visual_schema(extractor.dim, settings.dtype)
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
            assembly.add_features(*_run(extractor, queue, settings.batch_size))
    while len(queue):
        assembly.add_features(*_run(extractor, queue, settings.batch_size))
    return assembly


def shard_metadata(settings: VisualSettings, extractor: VisualExtractor) -> dict:
    """How the features were made, stored in the shard."""
    return {
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


def _run(extractor: VisualExtractor, queue: SampleQueue, size: int) -> tuple[list[int], np.ndarray]:
    owners, frames, clips = queue.take(size)
    return owners, extractor(frames, clips)


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
