"""The `extract_visual` stage: per second of video, an appearance and a motion feature.

Appearance: a ResNet on the frame that represents the second (see video/decode.py).
Motion: an R(2+1)D network on `clip_len` frames at the native rate centred on that frame
(edges repeat the first/last frame). The two pooled outputs are concatenated, giving
(T, D_appearance + D_motion) per video: 2048 + 512 = 2560 in the paper's setting.
A video that cannot be decoded becomes a row in the shard's rejects; the others are written.
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
from supportset.features.store import write_rejects, write_visual_shard
from supportset.torch_utils import autocast, pick_device
from supportset.video.decode import DecodeError, flag_samples, to_rgb

log = logging.getLogger(__name__)


@dataclass
class AppearanceSettings:
    arch: str = "resnet152"  # torchvision ResNet
    weights: str = "IMAGENET1K_V1"  # torchvision weights name, file path, or "random"
    resize: int = 256  # short side (pixels) before the centre crop
    size: int = 224  # centre crop (pixels)


@dataclass
class MotionSettings:
    arch: str = "r2plus1d_34"  # VideoResNet with (2+1)D blocks
    weights: str = ""  # state-dict file path, or "random"
    clip_len: int = 32  # frames per clip at the native rate
    resize: int = 128  # short side (pixels) before the centre crop
    size: int = 112  # centre crop (pixels)


@dataclass
class VisualSettings:
    fps: float = 1.0  # feature samples per second of video
    shards: int = 4  # independent extraction jobs per dataset
    dtype: str = "float16"  # storage type of the features
    batch_size: int = 32  # frames or clips per forward pass
    appearance: AppearanceSettings = field(default_factory=AppearanceSettings)
    motion: MotionSettings = field(default_factory=MotionSettings)


@dataclass
class SampledVideo:
    """What one video contributes: sample times and the network inputs."""

    timestamps: np.ndarray  # (S,) seconds
    appearance: np.ndarray  # (S, size_a, size_a, 3) uint8 RGB
    motion: np.ndarray  # (S, clip_len, size_m, size_m, 3) uint8 RGB


class VisualExtractor:
    """Both backbones on one device; `__call__` turns a SampledVideo into (S, D) features."""

    def __init__(self, settings: VisualSettings, device: torch.device) -> None:
        self.settings = settings
        self.device = device
        self.appearance = backbones.build_appearance(
            settings.appearance.arch, settings.appearance.weights
        ).to(device, memory_format=torch.channels_last)
        self.motion = backbones.build_motion(settings.motion.arch, settings.motion.weights).to(
            device
        )

    @torch.inference_mode()
    def __call__(self, video: SampledVideo) -> np.ndarray:
        appearance = self._batched(self.appearance, self._frames_tensor(video.appearance))
        motion = self._batched(self.motion, self._clips_tensor(video.motion))
        return torch.cat([appearance, motion], dim=1).float().cpu().numpy()  # (S, D)

    def _frames_tensor(self, frames: np.ndarray) -> torch.Tensor:
        images = torch.from_numpy(frames).permute(0, 3, 1, 2)  # (S, 3, H, W)
        return _normalise(images, backbones.IMAGENET_MEAN, backbones.IMAGENET_STD, dim=1)

    def _clips_tensor(self, clips: np.ndarray) -> torch.Tensor:
        videos = torch.from_numpy(clips).permute(0, 4, 1, 2, 3)  # (S, 3, T, H, W)
        return _normalise(videos, backbones.KINETICS_MEAN, backbones.KINETICS_STD, dim=1)

    def _batched(self, network: torch.nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        outputs = []
        for start in range(0, len(inputs), self.settings.batch_size):
            batch = inputs[start : start + self.settings.batch_size].to(self.device)
            if batch.dim() == 4:
                batch = batch.contiguous(memory_format=torch.channels_last)
            with autocast(self.device):
                outputs.append(network(batch))
        return torch.cat(outputs)


def sample_video(path: str | Path, settings: VisualSettings) -> SampledVideo:
    """Decode `path` once; keep every frame at motion resolution and the samples at appearance
    resolution."""
    motion_frames, sample_positions, timestamps, appearance_frames = [], [], [], []
    for position, (decoded, chosen) in enumerate(flag_samples(path, settings.fps)):
        motion_frames.append(to_rgb(decoded.frame, settings.motion.resize, settings.motion.size))
        if chosen:
            sample_positions.append(position)
            timestamps.append(decoded.time)
            appearance_frames.append(
                to_rgb(decoded.frame, settings.appearance.resize, settings.appearance.size)
            )
    if not sample_positions:
        raise DecodeError(f"{path}: no frames decoded")
    frames = np.stack(motion_frames)  # (N, H, W, 3)
    clips = frames[clip_indices(np.array(sample_positions), settings.motion.clip_len, len(frames))]
    return SampledVideo(np.array(timestamps), np.stack(appearance_frames), clips)


def clip_indices(centres: np.ndarray, clip_len: int, num_frames: int) -> np.ndarray:
    """(S, clip_len) frame indices of clips centred on `centres`, clamped to [0, num_frames)."""
    offsets = np.arange(clip_len) - clip_len // 2
    return np.clip(centres[:, None] + offsets[None, :], 0, num_frames - 1)


def shard_videos(videos: list[dict], shard: int, num_shards: int) -> list[dict]:
    """The manifest rows of shard `shard` of `num_shards` (every num_shards-th row)."""
    if not 0 <= shard < num_shards:
        raise ValueError(f"shard {shard} is outside 0..{num_shards - 1}")
    return videos[shard::num_shards]


def extract_shard(
    manifest: str | Path, shard: int, settings: VisualSettings, out: str | Path, rejects: str | Path
) -> tuple[int, int]:
    """Extract the features of one shard; return (videos written, videos rejected)."""
    for backbone, key in ((settings.appearance, "appearance"), (settings.motion, "motion")):
        backbones.check_weights_available(
            backbone.arch, backbone.weights, f"features.{key}.weights"
        )
    device = pick_device()
    extractor = VisualExtractor(settings, device)
    ids, times, features, rejected = [], [], [], []
    for video in shard_videos(read_videos(manifest), shard, settings.shards):
        try:
            sampled = sample_video(video["path"], settings)
        except DecodeError as error:
            log.warning("rejected %s: %s", video["video_id"], error)
            rejected.append((video["video_id"], str(error)))
            continue
        ids.append(video["video_id"])
        times.append(sampled.timestamps)
        features.append(extractor(sampled))
    dim = _feature_dim(extractor, settings)
    metadata = {
        "stage": "extract_visual",
        "settings": asdict(settings),
        "dim": dim,
        "version": __version__,
        "device": device.type,
    }
    write_visual_shard(out, ids, times, features, dim, settings.dtype, metadata)
    write_rejects(rejects, rejected)
    return len(ids), len(rejected)


def _feature_dim(extractor: VisualExtractor, settings: VisualSettings) -> int:
    """D_appearance + D_motion, from the networks themselves (valid for an empty shard too)."""
    blank = SampledVideo(
        np.zeros(1),
        np.zeros((1, settings.appearance.size, settings.appearance.size, 3), np.uint8),
        np.zeros(
            (1, settings.motion.clip_len, settings.motion.size, settings.motion.size, 3), np.uint8
        ),
    )
    return extractor(blank).shape[1]


def _normalise(pixels: torch.Tensor, mean: tuple, std: tuple, dim: int) -> torch.Tensor:
    """uint8 pixels -> float32 in [0, 1], minus mean, over std, along channel axis `dim`."""
    shape = [1] * pixels.dim()
    shape[dim] = 3
    mean_t = torch.tensor(mean).view(shape)
    std_t = torch.tensor(std).view(shape)
    return (pixels.float() / 255.0 - mean_t) / std_t
