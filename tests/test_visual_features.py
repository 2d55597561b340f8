"""`model.visual_features`: the appearance or motion columns of the stored features alone
(Table 2a), located by the shards' layout, for training and export without extracting again."""

import dataclasses

import numpy as np
import pytest
import torch

from supportset.data.manifest import write_manifest
from supportset.features.bank import FeatureBank, SplitData
from supportset.features.store import (
    ShardWriter,
    read_metadata,
    read_sequences,
    text_schema,
    write_visual_shard,
)
from supportset.features.visual import AppearanceSettings, VisualSettings, extract_shard
from supportset.model.checkpoint import initialise_from, load_model, save_checkpoint
from supportset.model.inference import embed_split
from supportset.model.retrieval_model import ModelConfig, SupportSetModel
from supportset.retrieval.embeddings import read_video_embeddings
from supportset.retrieval.export import export_split
from supportset.train.config import TrainConfig
from tests.test_visual import TINY
from tests.train_runs import train
from tests.video_files import write_video

APPEARANCE_DIM, MOTION_DIM = 16, 512
LAYOUT = {
    "appearance": [0, APPEARANCE_DIM],
    "motion": [APPEARANCE_DIM, APPEARANCE_DIM + MOTION_DIM],
}
MODEL = ModelConfig(
    dim=32, heads=2, ffn_dim=64, layers=1, dropout=0.0, input_norm="standardize",
    text_encoder="frozen", visual_features="motion",
)  # fmt: skip
TRAINING = TrainConfig(
    batch_size=8, lr=1e-3, epochs=1, max_video_seconds=4, captioning="none", selection="last"
)


def old_metadata(arch: str, dim: int) -> dict:
    """The metadata extract_visual wrote before it stored a layout."""
    settings = VisualSettings(appearance=AppearanceSettings(arch=arch))
    return {"stage": "extract_visual", "settings": dataclasses.asdict(settings), "dim": dim}


def write_shards(folder, num_videos: int = 24) -> tuple[FeatureBank, SplitData]:
    """Random features (T, 16 + 512) in a visual shard with a stored layout, one caption per
    video in a text shard; the bank read back from them, and the split of all videos."""
    rng = np.random.default_rng(0)
    ids = [f"v{i}" for i in range(num_videos)]
    features = [rng.normal(size=(int(rng.integers(2, 6)), 528)).astype(np.float32) for _ in ids]
    times = [np.arange(len(f), dtype=np.float32) for f in features]
    metadata = {"settings": {"fps": 1.0}, "dim": 528, "layout": LAYOUT}
    visual = folder / "v.parquet"
    write_visual_shard(visual, ids, times, features, 528, "float32", metadata)
    with ShardWriter(folder / "t.parquet", text_schema(10, "float32"), {}) as writer:
        for video_id in ids:
            tokens = np.array([3, 4, 1])
            states = rng.normal(size=(3, 10)).astype(np.float32)
            writer.write((f"{video_id}_0", video_id), (tokens, states), (3,))
    split = SplitData(ids, [f"{v}_0" for v in ids], ids, {v: [f"{v}_0"] for v in ids})
    return FeatureBank.load([visual], [folder / "t.parquet"], cache_mb=1), split


def test_extraction_stores_the_layout_of_its_features(tmp_path):
    video = write_video(tmp_path / "a.mp4", [i / 25 for i in range(60)])
    write_manifest([{"video_id": "a", "path": str(video), "split": "train"}], [], tmp_path)
    settings = dataclasses.replace(TINY, shards=1)
    out = tmp_path / "s.parquet"
    extract_shard(tmp_path / "videos.parquet", 0, settings, out, tmp_path / "r.parquet", 1)
    assert read_metadata(out)["layout"] == {"appearance": [0, 512], "motion": [512, 1024]}
    bank = FeatureBank.load([out], [], cache_mb=1)
    features = read_sequences([out], "video_id", "features")["a"]
    motion = bank.visual_part("motion").videos["a"]
    np.testing.assert_array_equal(motion, features[:, 512:])


def test_shards_written_before_layouts_derive_theirs_from_the_appearance_arch(tmp_path):
    times, features = [np.zeros(2)], [np.ones((2, 2560), np.float32)]
    old = tmp_path / "old.parquet"
    write_visual_shard(
        old, ["a"], times, features, 2560, "float16", old_metadata("resnet152", 2560)
    )
    bank = FeatureBank.load([old], [], cache_mb=1)
    assert bank.layout() == {"appearance": (0, 2048), "motion": (2048, 2560)}
    assert bank.visual_part("appearance").video_dim == 2048


def test_a_layout_that_cannot_be_known_or_agreed_is_an_error_naming_the_shard(tmp_path):
    times, features = [np.zeros(2)], [np.ones((2, 2560), np.float32)]
    unknown, wrong, small = (tmp_path / f"{name}.parquet" for name in ("u", "w", "s"))
    write_visual_shard(unknown, ["a"], times, features, 2560, "float16", {"dim": 2560})
    write_visual_shard(
        wrong, ["b"], times, features, 2560, "float16", old_metadata("resnet18", 2560)
    )
    write_visual_shard(
        small, ["c"], times, features, 2560, "float16", old_metadata("resnet152", 2560)
    )
    expected = (
        (unknown, f"visual shard {unknown} holds no layout"),
        (wrong, f"visual shard {wrong}: resnet18 and R\\(2\\+1\\)D features are 1024 wide"),
    )
    for path, message in expected:
        with pytest.raises(ValueError, match=message):
            FeatureBank.load([path], [], cache_mb=1).visual_part("motion")
    mixed = tmp_path / "mixed.parquet"
    ones = [np.ones((2, 2560), np.float32)]
    metadata = {"dim": 2560, "layout": {"appearance": [0, 512], "motion": [512, 1024]}}
    write_visual_shard(mixed, ["d"], times, ones, 2560, "float16", metadata)
    with pytest.raises(ValueError, match=f"visual shards {small} and {mixed} lay their features"):
        FeatureBank.load([small, mixed], [], cache_mb=1).visual_part("motion")


def test_a_part_of_the_bank_is_its_columns(tmp_path):
    bank, _ = write_shards(tmp_path)
    for part, (start, stop) in LAYOUT.items():
        sliced = bank.visual_part(part)
        assert sliced.video_dim == stop - start
        for video_id in ("v0", "v5"):
            np.testing.assert_array_equal(
                sliced.videos[video_id], bank.videos[video_id][:, start:stop]
            )
    assert bank.visual_part("both") is bank
    with pytest.raises(ValueError, match="not one of both, appearance, motion"):
        bank.visual_part("colour")
    plain = FeatureBank(dict(bank.videos), {}, {})
    with pytest.raises(ValueError, match="needs the layout of the visual features"):
        plain.visual_part("motion")


def test_a_model_trained_on_motion_reads_and_exports_the_motion_columns(tmp_path):
    bank, split = write_shards(tmp_path)
    model_file = tmp_path / "m.pt"
    # two reader workers, as the train rule runs: the sliced bank crosses into them
    train(bank, split, None, MODEL, TRAINING, model_file, tmp_path / "l.csv", workers=2)
    model = load_model(model_file, torch.device("cpu"))
    assert (model.video_dim, model.config.visual_features) == (MOTION_DIM, "motion")
    motion = np.concatenate([bank.videos[v][:4, APPEARANCE_DIM:] for v in split.video_ids])
    np.testing.assert_allclose(model.video_norm.mean.numpy(), motion.mean(axis=0), atol=1e-5)
    videos_out, captions_out = tmp_path / "videos.parquet", tmp_path / "captions.parquet"
    export_split(model_file, bank, split, 4, videos_out, captions_out)
    ids, exported = read_video_embeddings(videos_out)
    expected, _ = embed_split(model, bank.visual_part("motion"), split, 4, torch.device("cpu"))
    assert ids == split.video_ids and exported.shape == (len(ids), MODEL.dim)
    np.testing.assert_allclose(exported, expected, atol=1e-6)


def test_a_checkpoint_without_the_setting_was_trained_on_both_parts(tmp_path):
    both = dataclasses.replace(MODEL, visual_features="both")
    model = SupportSetModel(both, 528, 10)
    save_checkpoint(tmp_path / "old.pt", model.state_dict(), model, {"rsum": 0.0})
    checkpoint = torch.load(tmp_path / "old.pt", weights_only=True)
    del checkpoint["model_config"]["visual_features"]
    torch.save(checkpoint, tmp_path / "old.pt")
    assert load_model(tmp_path / "old.pt", torch.device("cpu")).config.visual_features == "both"
    initialise_from(SupportSetModel(both, 528, 10), tmp_path / "old.pt")
    with pytest.raises(ValueError, match="differ from this experiment's"):
        initialise_from(SupportSetModel(MODEL, 528, 10), tmp_path / "old.pt")


def test_fine_tuning_may_change_the_dropout_rate_but_not_the_architecture(tmp_path):
    pretrained = SupportSetModel(dataclasses.replace(MODEL, dropout=0.3), 528, 10)
    save_checkpoint(tmp_path / "pre.pt", pretrained.state_dict(), pretrained, {"rsum": 0.0})
    activitynet = SupportSetModel(dataclasses.replace(MODEL, dropout=0.0), 528, 10)
    initialise_from(activitynet, tmp_path / "pre.pt")
    for name, value in pretrained.state_dict().items():
        assert torch.equal(activitynet.state_dict()[name], value), name
    with pytest.raises(ValueError, match="differ from this experiment's"):
        initialise_from(
            SupportSetModel(dataclasses.replace(MODEL, heads=1), 528, 10), tmp_path / "pre.pt"
        )
