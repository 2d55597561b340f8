import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from supportset.data.manifest import read_videos, write_manifest
from supportset.features import backbones
from supportset.features.store import read_metadata, read_sequences
from supportset.features.visual import (
    AppearanceSettings,
    MotionSettings,
    VisualSettings,
    clip_indices,
    extract_shard,
    shard_videos,
)

TINY = VisualSettings(
    shards=2,
    appearance=AppearanceSettings(arch="resnet18", weights="random", resize=48, size=48),
    motion=MotionSettings(arch="r2plus1d_10", weights="random", clip_len=2, resize=32, size=32),
)


def test_clip_indices_are_centred_and_clamped():
    np.testing.assert_array_equal(
        clip_indices(np.array([0, 5, 9]), 4, 10), [[0, 0, 0, 1], [3, 4, 5, 6], [7, 8, 9, 9]]
    )


def test_shards_partition_the_videos():
    videos = [{"video_id": str(i)} for i in range(7)]
    parts = [shard_videos(videos, k, 3) for k in range(3)]
    assert sorted(v["video_id"] for part in parts for v in part) == [str(i) for i in range(7)]
    with pytest.raises(ValueError):
        shard_videos(videos, 3, 3)


def test_bad_videos_become_rejects_and_the_rest_is_written(manifest, tmp_path):
    videos = read_videos(manifest / "videos.parquet")[:4]
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"junk" * 300)
    empty = tmp_path / "empty.mp4"
    empty.touch()
    bad = [
        {"video_id": "missing", "path": str(tmp_path / "nope.mp4"), "split": "test"},
        {"video_id": "garbage", "path": str(garbage), "split": "test"},
        {"video_id": "empty", "path": str(empty), "split": "test"},
    ]
    write_manifest(videos + bad, [], tmp_path / "m")
    settings = VisualSettings(**{**TINY.__dict__, "shards": 1})
    out, rejects = tmp_path / "s.parquet", tmp_path / "s.rejects.parquet"
    written, rejected = extract_shard(tmp_path / "m" / "videos.parquet", 0, settings, out, rejects)
    assert (written, rejected) == (4, 3)
    features = read_sequences([out], "video_id", "features")
    assert list(features) == [v["video_id"] for v in videos]
    assert all(f.shape[1] == 512 + 512 for f in features.values())
    reasons = {row["video_id"]: row["reason"] for row in pq.read_table(rejects).to_pylist()}
    assert set(reasons) == {"missing", "garbage", "empty"}
    assert "no such file" in reasons["missing"]
    assert read_metadata(out)["settings"]["appearance"]["arch"] == "resnet18"


def test_rerun_gives_identical_features(manifest, tmp_path):
    paths = []
    for run in range(2):
        out = tmp_path / f"run{run}.parquet"
        extract_shard(manifest / "videos.parquet", 1, TINY, out, tmp_path / f"r{run}.parquet")
        paths.append(out)
    first, second = (read_sequences([p], "video_id", "features") for p in paths)
    assert first.keys() == second.keys()
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])


def test_timestamps_are_one_per_second(manifest, tmp_path):
    out = tmp_path / "s.parquet"
    extract_shard(manifest / "videos.parquet", 0, TINY, out, tmp_path / "r.parquet")
    for times in pq.read_table(out).column("timestamps").to_pylist():
        assert times[0] == pytest.approx(0.0)
        assert np.all(np.diff(times) == pytest.approx(1.0, abs=0.05))


def test_missing_weights_stop_before_any_video(manifest, tmp_path):
    settings = VisualSettings(
        appearance=AppearanceSettings(arch="resnet18", weights="random"),
        motion=MotionSettings(arch="r2plus1d_34", weights=""),
    )
    with pytest.raises(backbones.WeightsError, match=r"features\.motion\.weights"):
        extract_shard(manifest / "videos.parquet", 0, settings, tmp_path / "o", tmp_path / "r")
    assert not (tmp_path / "o").exists()


def test_uncached_torchvision_weights_say_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(backbones.WeightsError, match="torch hub cache"):
        backbones.check_weights_available("resnet152", "IMAGENET1K_V1", "features.appearance")
    with pytest.raises(backbones.WeightsError, match="not a resnet152 weights name"):
        backbones.check_weights_available("resnet152", "IMAGENET9K", "features.appearance")


def test_motion_weights_load_from_a_local_state_dict(tmp_path):
    reference = backbones.build_motion("r2plus1d_10", "random")
    torch.nn.init.constant_(reference.stem[0].weight, 0.01)
    path = tmp_path / "r2plus1d.pth"
    torch.save({**reference.state_dict(), "fc.weight": torch.zeros(400, 512)}, path)
    loaded = backbones.build_motion("r2plus1d_10", str(path))
    assert torch.equal(loaded.stem[0].weight, reference.stem[0].weight)
    clip = torch.rand(1, 3, 4, 32, 32)
    with torch.inference_mode():
        assert loaded(clip).shape == (1, 512)
