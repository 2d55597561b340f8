import dataclasses

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from torch import nn
from torchvision.models.video.resnet import BasicBlock, Conv2Plus1D, R2Plus1dStem, VideoResNet

from supportset.data.manifest import read_videos, write_manifest
from supportset.features import backbones
from supportset.features.store import read_metadata, read_sequences
from supportset.features.visual import (
    AppearanceSettings,
    ExtractionError,
    MotionSettings,
    VisualSettings,
    extract_shard,
    shard_videos,
)
from tests.video_files import write_audio_only, write_garbage_packets, write_video

TINY = VisualSettings(
    shards=2,
    batch_size=8,
    decode_timeout=20,
    appearance=AppearanceSettings(arch="resnet18", weights="random", resize=48, size=48),
    motion=MotionSettings(arch="r2plus1d_10", weights="random", clip_len=2, resize=32, size=32),
)


@pytest.fixture(scope="module")
def bad_videos(tmp_path_factory) -> list[dict]:
    """One manifest row for each kind of unusable file."""
    folder = tmp_path_factory.mktemp("bad")
    good = write_video(folder / "good.mp4", [i / 25 for i in range(100)])
    faststart = write_video(folder / "fs.mp4", [i / 25 for i in range(100)], faststart=True)
    (folder / "empty.mp4").touch()
    (folder / "text.mp4").write_text("this is not a video\n" * 50)
    (folder / "truncated.mp4").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    (folder / "truncated_fs.mp4").write_bytes(faststart.read_bytes()[:3000])
    write_audio_only(folder / "audio.m4a")
    write_garbage_packets(faststart, folder / "garbage.mp4")
    names = {
        "missing": "nope.mp4",
        "empty": "empty.mp4",
        "not_video": "text.mp4",
        "truncated": "truncated.mp4",
        "truncated_faststart": "truncated_fs.mp4",
        "audio_only": "audio.m4a",
        "undecodable": "garbage.mp4",
    }
    return [
        {"video_id": key, "path": str(folder / name), "split": "test"}
        for key, name in names.items()
    ]


def test_shards_partition_the_videos():
    videos = [{"video_id": str(i)} for i in range(7)]
    parts = [shard_videos(videos, k, 3) for k in range(3)]
    assert sorted(v["video_id"] for part in parts for v in part) == [str(i) for i in range(7)]
    with pytest.raises(ValueError):
        shard_videos(videos, 3, 3)


def test_bad_videos_become_rejects_and_the_rest_is_written(manifest, bad_videos, tmp_path):
    good = read_videos(manifest / "videos.parquet")[:4]
    mixed = [good[0], *bad_videos[:3], good[1], *bad_videos[3:], *good[2:]]
    write_manifest(mixed, [], tmp_path / "m")
    settings = dataclasses.replace(TINY, shards=1)
    out, rejects = tmp_path / "s.parquet", tmp_path / "s.rejects.parquet"
    written, rejected = extract_shard(tmp_path / "m" / "videos.parquet", 0, settings, out, rejects)
    assert (written, rejected) == (4, len(bad_videos))
    features = read_sequences([out], "video_id", "features")
    assert list(features) == [v["video_id"] for v in good]  # manifest order
    assert all(f.shape[1] == 512 + 512 for f in features.values())
    reasons = {row["video_id"]: row["reason"] for row in pq.read_table(rejects).to_pylist()}
    assert set(reasons) == {v["video_id"] for v in bad_videos}
    assert "no such file" in reasons["missing"]
    assert "empty file" in reasons["empty"]
    assert "no video stream" in reasons["audio_only"]
    assert all(reasons[key] for key in ("not_video", "truncated", "undecodable"))
    assert read_metadata(out)["settings"]["appearance"]["arch"] == "resnet18"


def test_on_error_fail_stops_and_writes_nothing(bad_videos, tmp_path):
    write_manifest(bad_videos[:1], [], tmp_path / "m")
    settings = dataclasses.replace(TINY, shards=1, on_error="fail")
    out = tmp_path / "s.parquet"
    with pytest.raises(ExtractionError, match="missing"):
        extract_shard(tmp_path / "m" / "videos.parquet", 0, settings, out, tmp_path / "r.parquet")
    assert not out.exists()


def test_rerun_with_workers_gives_identical_shard_bytes(manifest, tmp_path):
    paths = []
    for run, workers in enumerate((3, 1)):
        out = tmp_path / f"run{run}.parquet"
        extract_shard(
            manifest / "videos.parquet", 1, TINY, out, tmp_path / f"r{run}.parquet", workers
        )
        paths.append(out)
    assert paths[0].read_bytes() == paths[1].read_bytes()


def test_hdf5_shard_holds_the_same_features(manifest, tmp_path):
    parquet, hdf5 = tmp_path / "s.parquet", tmp_path / "s.h5"
    extract_shard(manifest / "videos.parquet", 0, TINY, parquet, tmp_path / "r1.parquet")
    as_hdf5 = dataclasses.replace(TINY, format="hdf5")
    extract_shard(manifest / "videos.parquet", 0, as_hdf5, hdf5, tmp_path / "r2.parquet")
    from_parquet = read_sequences([parquet], "video_id", "features")
    from_hdf5 = read_sequences([hdf5], "video_id", "features")
    assert list(from_parquet) == list(from_hdf5)
    for key, value in from_parquet.items():
        np.testing.assert_array_equal(value, from_hdf5[key])
    assert read_metadata(hdf5)["settings"]["format"] == "hdf5"
    with pytest.raises(ValueError, match=r"features\.format"):
        extract_shard(
            manifest / "videos.parquet", 0, as_hdf5, tmp_path / "x.parquet", tmp_path / "r"
        )


def test_timestamps_are_one_per_second(manifest, tmp_path):
    out = tmp_path / "s.parquet"
    extract_shard(manifest / "videos.parquet", 0, TINY, out, tmp_path / "r.parquet")
    for times in pq.read_table(out).column("timestamps").to_pylist():
        assert times[0] == pytest.approx(0.0)
        assert np.all(np.diff(times) == pytest.approx(1.0, abs=0.05))


def test_missing_weights_stop_before_any_video(manifest, tmp_path):
    settings = dataclasses.replace(TINY, motion=MotionSettings(arch="r2plus1d_34", weights=""))
    with pytest.raises(backbones.WeightsError, match=r"features\.motion\.weights is empty"):
        extract_shard(
            manifest / "videos.parquet", 0, settings, tmp_path / "o.parquet", tmp_path / "r"
        )
    assert not (tmp_path / "o.parquet").exists() and not (tmp_path / "r").exists()


def test_uncached_weights_say_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(backbones.WeightsError, match="torch hub cache"):
        backbones.resolve_weights("resnet152", "IMAGENET1K_V1", "features.appearance.weights")
    with pytest.raises(backbones.WeightsError, match="ig65m-pytorch"):
        backbones.resolve_weights("r2plus1d_34", "ig65m_clip32", "features.motion.weights")
    with pytest.raises(backbones.WeightsError, match="not a resnet152 weights name"):
        backbones.resolve_weights("resnet152", "IMAGENET9K", "features.appearance.weights")
    with pytest.raises(backbones.WeightsError, match="trained on 32-frame clips"):
        backbones.check_clip_len("ig65m_clip32", 8)


def ig65m_style_state_dict() -> dict[str, torch.Tensor]:
    """A state dict in the layout of the IG65M R(2+1)D-34 release, built independently:
    Caffe2 mid-planes in the first block of layers 2-4 and a 487-way classifier."""
    torch.manual_seed(1)
    model = VideoResNet(BasicBlock, [Conv2Plus1D] * 4, [3, 4, 6, 3], R2Plus1dStem)
    model.layer2[0].conv2[0] = Conv2Plus1D(128, 128, 288)
    model.layer3[0].conv2[0] = Conv2Plus1D(256, 256, 576)
    model.layer4[0].conv2[0] = Conv2Plus1D(512, 512, 1152)
    model.fc = nn.Linear(512, 487)
    return model.state_dict()


def test_ig65m_checkpoint_loads_from_the_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    state = ig65m_style_state_dict()
    file_name, _ = backbones.IG65M_WEIGHTS["ig65m_clip32"]
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(state, tmp_path / "hub" / "checkpoints" / file_name)
    model = backbones.build_motion("r2plus1d_34", "ig65m_clip32")
    torch.testing.assert_close(
        model.layer3[0].conv2[0][0].weight, state["layer3.0.conv2.0.0.weight"]
    )
    assert model.layer4[0].conv2[0][0].out_channels == 1152
    assert all(m.eps == 1e-3 for m in model.modules() if isinstance(m, nn.BatchNorm3d))
    with torch.inference_mode():
        assert model(torch.rand(1, 3, 8, 32, 32)).shape == (1, 512)


def test_appearance_weights_load_from_a_local_file(tmp_path):
    reference = backbones.build_appearance("resnet18", "random")
    torch.nn.init.constant_(reference.conv1.weight, 0.01)
    path = tmp_path / "resnet18.pth"
    torch.save({**reference.state_dict(), "fc.weight": torch.zeros(1000, 512)}, path)
    loaded = backbones.build_appearance("resnet18", str(path))
    assert torch.equal(loaded.conv1.weight, reference.conv1.weight)
