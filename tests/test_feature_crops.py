"""StiCA's feature crops (`features.crops`): K windows of each sampled frame pooled on the
backbones' last feature maps, stored next to the full-frame features, read by training as
an augmentation (`training.crop_augment`) and a within-video term
(`training.crop_contrast_weight`)."""

import csv
import dataclasses

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from supportset.features import backbones
from supportset.features.bank import FeatureBank
from supportset.features.store import ShardWriter, read_metadata, read_sequences, visual_schema
from supportset.features.visual import (
    AppearanceSettings,
    MotionSettings,
    VisualExtractor,
    crop_windows,
    extract_shard,
    window_cells,
)
from supportset.model.checkpoint import load_model
from supportset.model.retrieval_model import SupportSetModel
from supportset.train.config import TrainConfig
from supportset.train.loader import EpochPlan, batch_loader
from supportset.train.loop import validate
from supportset.train.objective import Batch, Objective
from supportset.train.plan import CroppedKey, epoch_plan
from tests.test_train import MODEL, log_without_seconds, synthetic_bank
from tests.test_visual import TINY
from tests.train_runs import train

# maps of 3 x 3 (ResNet-18 on 96 px) and 1 x 4 x 4 (R(2+1)D-10 on 2 x 64 px)
SETTINGS = dataclasses.replace(
    TINY,
    shards=2,
    crops=4,
    appearance=AppearanceSettings(arch="resnet18", weights="random", resize=96, size=96),
    motion=MotionSettings(arch="r2plus1d_10", weights="random", clip_len=2, resize=64, size=64),
)
DIM = 512 + 512
CROPS = 3  # crop features per step of the synthetic bank
CROP_TRAINING = TrainConfig(
    batch_size=16, lr=3e-3, epochs=2, max_video_seconds=6, captioning="none", selection="last"
)


@pytest.fixture(scope="module")
def extractor() -> VisualExtractor:
    return VisualExtractor(SETTINGS, torch.device("cpu"))


def random_samples(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 frames (count, 96, 96, 3) and clips (count, 2, 64, 64, 3)."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, size=(count, 96, 96, 3), dtype=np.uint8)
    clips = rng.integers(0, 256, size=(count, 2, 64, 64, 3), dtype=np.uint8)
    return frames, clips


def network_inputs(frames: np.ndarray, clips: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """The normalised inputs of both networks, as the extractor makes them."""
    images = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    mean = torch.tensor(backbones.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(backbones.IMAGENET_STD).view(1, 3, 1, 1)
    videos = torch.from_numpy(clips).permute(0, 4, 1, 2, 3).float() / 255
    video_mean = torch.tensor(backbones.KINETICS_MEAN).view(1, 3, 1, 1, 1)
    video_std = torch.tensor(backbones.KINETICS_STD).view(1, 3, 1, 1, 1)
    images = ((images - mean) / std).contiguous(memory_format=torch.channels_last)
    return images, (videos - video_mean) / video_std


def test_the_full_frame_features_are_the_networks_own_outputs_bit_for_bit(extractor):
    frames, clips = random_samples(3)
    windows = np.stack([crop_windows(f"v{i}", 0, 4, 0.5, 0) for i in range(3)])
    features, crops = extractor(frames, clips, windows)
    images, videos = network_inputs(frames, clips)
    with torch.inference_mode():
        expected = torch.cat([extractor.appearance(images), extractor.motion(videos)], dim=1)
    assert np.array_equal(features, expected.numpy())  # torchvision's forward
    assert crops.shape == (3, 4, DIM)
    without, none = extractor(frames, clips)
    assert none is None and np.array_equal(without, features)


def test_a_crop_covering_the_whole_frame_is_the_full_frame_feature(extractor):
    frames, clips = random_samples(2, seed=1)
    whole = np.tile([0.0, 0.0, 1.0, 1.0], (2, 3, 1))  # (B, K, 4)
    features, crops = extractor(frames, clips, whole)
    for k in range(3):
        np.testing.assert_allclose(crops[:, k], features, rtol=1e-5, atol=1e-6)


def test_a_crop_is_the_average_of_its_window_of_each_map(extractor):
    frames, clips = random_samples(2, seed=2)
    windows = np.stack([crop_windows("clip", step, 4, 0.3, 7) for step in range(2)])
    _, crops = extractor(frames, clips, windows)
    images, videos = network_inputs(frames, clips)
    with torch.inference_mode():
        appearance = backbones.appearance_map(extractor.appearance, images)  # (2, 512, 3, 3)
        motion = backbones.motion_map(extractor.motion, videos)  # (2, 512, 1, 4, 4)
    assert appearance.shape[2:] == (3, 3) and motion.shape[2:] == (1, 4, 4)
    for sample, k in np.ndindex(2, 4):
        brute = []
        for grid, values in ((3, appearance[sample]), (4, motion[sample].mean(dim=1))):
            top, left, bottom, right = window_cells(windows[sample, k], grid, grid)
            brute.append(values[:, top:bottom, left:right].mean(dim=(1, 2)))  # (512,)
        np.testing.assert_allclose(crops[sample, k], torch.cat(brute), rtol=1e-5, atol=1e-6)
    assert len({tuple(window_cells(w, 4, 4)) for w in windows.reshape(-1, 4)}) > 1


def test_window_edges_go_to_the_nearest_cell_boundary_keeping_one_cell():
    windows = np.array(
        [
            [0.25, 0.0, 0.5, 1.0],  # rows 1.75..5.25 of 7 -> [2, 5); all columns
            [0.0, 0.97, 0.02, 0.03],  # a sliver at the right edge -> one cell
            [0.5, 0.5, 0.01, 0.01],  # a point in the middle -> one cell
        ]
    )
    assert window_cells(windows, 7, 7).tolist() == [[2, 0, 5, 7], [0, 6, 1, 7], [4, 4, 5, 5]]
    assert window_cells(windows[:1], 1, 1).tolist() == [[0, 0, 1, 1]]


def test_windows_depend_only_on_the_seed_the_video_and_the_step():
    windows = crop_windows("video", 3, 64, 0.4, 0)
    np.testing.assert_array_equal(windows, crop_windows("video", 3, 64, 0.4, 0))
    for other in (("video", 4, 0), ("vide0", 3, 0), ("video", 3, 1)):
        video_id, step, seed = other
        assert not np.allclose(windows, crop_windows(video_id, step, 64, 0.4, seed))
    corners, sides = windows[:, :2], windows[:, 2:]
    assert (sides >= 0.4).all() and (sides <= 1).all()
    assert (corners >= 0).all() and (corners + sides <= 1 + 1e-12).all()


@pytest.fixture(scope="module")
def shards(manifest, tmp_path_factory) -> dict:
    """Shard 0 of the small corpus extracted with crops: batch 8 Parquet, batch 3 Parquet,
    batch 8 HDF5; and without crops."""
    folder = tmp_path_factory.mktemp("crop_shards")
    runs = {
        "parquet": (SETTINGS, "s.parquet"),
        "batch3": (dataclasses.replace(SETTINGS, batch_size=3), "b.parquet"),
        "hdf5": (dataclasses.replace(SETTINGS, format="hdf5"), "s.h5"),
        "none": (dataclasses.replace(SETTINGS, crops=0), "n.parquet"),
    }
    paths = {}
    for name, (settings, file_name) in runs.items():
        paths[name] = folder / file_name
        extract_shard(manifest / "videos.parquet", 0, settings, paths[name], folder / "r", 1)
    return paths


def test_extracted_crops_are_the_same_whatever_the_batch_size_and_format(shards):
    crops = {
        name: read_sequences([shards[name]], "video_id", "crops")
        for name in ("parquet", "batch3", "hdf5")
    }
    features = read_sequences([shards["parquet"]], "video_id", "features")
    assert list(crops["parquet"]) == list(features)
    for video_id, value in crops["parquet"].items():
        assert value.shape == (len(features[video_id]), 4 * DIM)
        np.testing.assert_array_equal(value, crops["hdf5"][video_id])
        np.testing.assert_allclose(value, crops["batch3"][video_id], rtol=1e-4, atol=1e-5)
        per_crop = value.reshape(len(value), 4, DIM)
        assert not np.allclose(per_crop[:, 0], per_crop[:, 1])  # different windows
    metadata = read_metadata(shards["hdf5"])
    assert {key: metadata["crops"][key] for key in ("count", "scale", "seed")} == {
        "count": 4,
        "scale": 0.5,
        "seed": 0,
    }
    assert "sha256" in metadata["crops"]["window"]


def test_without_crops_the_shard_is_as_before(shards):
    assert pq.read_schema(shards["none"]).names == ["video_id", "timestamps", "features"]
    assert "crops" not in read_metadata(shards["none"])
    plain = read_sequences([shards["none"]], "video_id", "features")
    with_crops = read_sequences([shards["parquet"]], "video_id", "features")
    assert list(plain) == list(with_crops)
    for video_id, features in plain.items():
        np.testing.assert_array_equal(features, with_crops[video_id])


def write_crop_shard(path, count: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Two videos of random features (T, 8) and `count` crops (T, count, 8); the crops."""
    rng = np.random.default_rng(seed)
    crops = {}
    metadata = {"dim": 8, "layout": {"appearance": [0, 3], "motion": [3, 8]}}
    if count:
        metadata["crops"] = {"count": count, "scale": 0.5, "seed": 0, "window": "test"}
    with ShardWriter(path, visual_schema(8, "float32", count), metadata) as writer:
        for video_id, steps in ((f"{path.stem}a", 3), (f"{path.stem}b", 5)):
            features = rng.normal(size=(steps, 8)).astype(np.float32)
            crops[video_id] = rng.normal(size=(steps, count, 8)).astype(np.float32)
            sequences = [np.arange(steps, dtype=np.float32), features]
            if count:
                sequences.append(crops[video_id].reshape(steps, count * 8))
            writer.write((video_id,), tuple(sequences))
    return crops


def test_the_bank_reads_crops_from_both_formats_only_when_asked(tmp_path):
    written = {
        **write_crop_shard(tmp_path / "p.parquet", 3),
        **write_crop_shard(tmp_path / "h.h5", 3, 1),
    }
    bank = FeatureBank.load([tmp_path / "p.parquet", tmp_path / "h.h5"], [], cache_mb=1)
    assert bank.crops is None
    with_crops = bank.with_crops()
    assert with_crops.with_crops() is with_crops
    for video_id, crops in written.items():
        np.testing.assert_array_equal(with_crops.crops[video_id], crops)
        motion = with_crops.visual_part("motion")
        np.testing.assert_array_equal(motion.crops[video_id], crops[..., 3:])
        np.testing.assert_array_equal(motion.videos[video_id], bank.videos[video_id][:, 3:])


def test_crops_missing_from_the_shards_are_an_error_naming_features_crops(tmp_path):
    write_crop_shard(tmp_path / "none.parquet", 0)
    write_crop_shard(tmp_path / "two.parquet", 2)
    write_crop_shard(tmp_path / "three.h5", 3)
    for paths, message in (
        (["none.parquet"], r"holds no crop features.*features\.crops above 0"),
        (["two.parquet", "three.h5"], r"hold 2 and 3 crop features.*features\.crops"),
    ):
        bank = FeatureBank.load([tmp_path / path for path in paths], [], cache_mb=1)
        with pytest.raises(ValueError, match=message):
            bank.with_crops()
    bank, train_split, _ = synthetic_bank(16)
    config = dataclasses.replace(CROP_TRAINING, crop_augment=True)
    with pytest.raises(ValueError, match=r"features\.crops above 0"):
        train(bank, train_split, None, MODEL, config, tmp_path / "m.pt", tmp_path / "l.csv")


def crop_bank(num_videos: int = 64) -> tuple[FeatureBank, object, object]:
    """The synthetic bank of test_train with CROPS noisy copies of each step as crops."""
    bank, train_split, val_split = synthetic_bank(num_videos)
    rng = np.random.default_rng(5)
    crops = {
        video_id: (features[:, None] + 0.3 * rng.normal(size=(len(features), CROPS, 12))).astype(
            np.float32
        )
        for video_id, features in bank.videos.items()
    }
    return dataclasses.replace(bank, crops=crops), train_split, val_split


def crop_keys(config: TrainConfig, seed: int = 0) -> list[CroppedKey]:
    _, train_split, _ = crop_bank()
    return epoch_plan(train_split, config, np.random.default_rng(seed), 0, 1)


def test_an_augmented_batch_reads_one_of_the_steps_crops_per_step():
    bank, _, _ = crop_bank()
    config = dataclasses.replace(CROP_TRAINING, crop_augment=True)
    key = crop_keys(config)[0]
    assert isinstance(key, CroppedKey) and len(key.draws.seeds) == len(key.key.video_ids)
    batch = Batch.read(bank, key, 6)
    assert batch.views.shape == (0,)
    picked = []
    for row, video_id in enumerate(key.key.video_ids):
        crops = bank.crops[video_id][:6]  # (T, K, 12)
        for step in range(len(crops)):
            matches = (crops[step] == batch.video[row, step].numpy()).all(axis=1)
            assert matches.sum() == 1
            picked.append(int(matches.argmax()))
    assert set(picked) == set(range(CROPS))  # every crop is drawn somewhere
    full = Batch.read(bank, key.key, 6)
    assert not torch.equal(full.video, batch.video) and full.views.shape == (0,)


def test_the_crop_views_are_independent_draws_of_the_same_steps():
    bank, _, _ = crop_bank()
    config = dataclasses.replace(CROP_TRAINING, crop_contrast_weight=1.0)
    key = crop_keys(config)[0]
    batch = Batch.read(bank, key, 6)
    full = Batch.read(bank, key.key, 6)
    assert torch.equal(batch.video, full.video)  # without crop_augment: the full frames
    assert batch.views.shape == (2, *batch.video.shape)
    valid = batch.video_valid
    assert not torch.equal(batch.views[0][valid], batch.views[1][valid])
    same = (batch.views[0] == batch.views[1]).all(dim=-1)[valid].float().mean()
    assert 0.15 < same < 0.55  # 1 / CROPS of the steps on average


def test_the_crop_draws_depend_on_the_plan_seed_not_on_the_reader_workers():
    bank, _, _ = crop_bank()
    config = dataclasses.replace(CROP_TRAINING, crop_augment=True, crop_contrast_weight=1.0)
    assert crop_keys(config) == crop_keys(config) != crop_keys(config, seed=1)
    plan = EpochPlan()
    plan.keys = crop_keys(config)[:3]
    batches = [list(batch_loader(bank, plan, 6, workers)) for workers in (0, 2)]
    for first, second in zip(*batches, strict=True):
        assert torch.equal(first.video, second.video) and torch.equal(first.views, second.views)


def test_the_crop_term_is_positive_and_trains_the_video_head():
    bank, _, _ = crop_bank()
    config = dataclasses.replace(CROP_TRAINING, crop_contrast_weight=0.5)
    batch = Batch.read(bank, crop_keys(config)[0], 6)
    torch.manual_seed(0)
    model = SupportSetModel(MODEL, 12, 10)
    model.video_norm.fit(bank.videos[v] for v in bank.videos)
    objective = Objective(model, config, None)
    losses = objective(batch)
    assert losses["crops"] > 0
    torch.testing.assert_close(losses["loss"], losses["contrast"] + 0.5 * losses["crops"])
    objective.crop_contrast(batch).backward()
    gradients = [p.grad for p in model.video_head.parameters() if p.grad is not None]
    assert gradients and any(g.abs().sum() > 0 for g in gradients)
    assert all(p.grad is None for p in model.text_head.parameters())
    off = Objective(model, dataclasses.replace(config, crop_contrast_weight=0.0), None)
    assert off(batch)["crops"] == 0


@pytest.mark.parametrize(
    "changes", [{"crop_augment": True}, {"crop_contrast_weight": 1.0, "crop_augment": True}]
)
def test_training_with_crops_is_the_same_with_workers_and_after_a_resume(tmp_path, changes):
    bank, train_split, _ = crop_bank()
    config = dataclasses.replace(CROP_TRAINING, **changes)
    folders = [tmp_path / name for name in ("w0", "w2", "resumed")]
    for folder, workers in zip(folders[:2], (0, 2), strict=True):
        train(bank, train_split, None, MODEL, config, folder / "m.pt", folder / "l.csv",
              workers=workers)  # fmt: skip
    first_epoch = dataclasses.replace(config, epochs=1)
    for run in (first_epoch, config):
        train(bank, train_split, None, MODEL, run, folders[2] / "m.pt", folders[2] / "l.csv")
    logs = [log_without_seconds(folder / "l.csv") for folder in folders]
    assert logs[0] == logs[1] == logs[2]
    with open(folders[0] / "l.csv", newline="") as handle:
        crops = [float(row["crops"]) for row in csv.DictReader(handle) if row["kind"] == "train"]
    if changes.get("crop_contrast_weight"):
        assert all(value > 0 for value in crops)
    else:
        assert crops == [0.0] * len(crops)
    plain = tmp_path / "plain"
    train(bank, train_split, None, MODEL, CROP_TRAINING, plain / "m.pt", plain / "l.csv")
    assert log_without_seconds(plain / "l.csv") != logs[0]


def test_validation_reads_the_full_frame_features(tmp_path):
    bank, train_split, val_split = crop_bank()
    config = dataclasses.replace(CROP_TRAINING, crop_augment=True, selection="val", epochs=1)
    kept = train(bank, train_split, val_split, MODEL, config, tmp_path / "m.pt", tmp_path / "l.csv")
    without_crops = dataclasses.replace(bank, crops={})  # reading a crop would fail
    model = load_model(tmp_path / "m.pt", torch.device("cpu"))
    again = validate(model, without_crops, val_split, 6, torch.device("cpu"))
    assert again["rsum"] == pytest.approx(kept["rsum"])
