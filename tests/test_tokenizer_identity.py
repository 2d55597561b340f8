"""A model.pt reused on another dataset (training.init_from, an experiment's model_from)
reads that dataset's caption token ids: the text shards record their tokenizer's
fingerprint, the checkpoint the one it was trained on, and two that differ are refused."""

import dataclasses
import logging
import re
import shutil

import numpy as np
import pytest
import torch

from supportset.data.manifest import write_manifest
from supportset.features.bank import FeatureBank, SplitData
from supportset.features.store import ShardWriter, read_metadata, text_schema, write_visual_shard
from supportset.features.text import TextSettings, TinyT5Settings, embed_shard, load_t5
from supportset.features.text import tokenizer_sha256 as fingerprint
from supportset.features.tiny_t5 import build_from_manifest, train_tokenizer
from supportset.model.checkpoint import initialise_from
from supportset.model.retrieval_model import ModelConfig, SupportSetModel
from supportset.retrieval.export import export_split
from supportset.train.config import TrainConfig
from tests.train_runs import train

TINY = TinyT5Settings(d_model=16, num_layers=1, num_heads=2, d_ff=32, vocab_size=200)
TEXT = TextSettings(model="tiny", shards=1, max_tokens=16, dtype="float32", tiny=TINY)
VIDEO_DIM = 12
MODEL = ModelConfig(
    dim=32, heads=2, ffn_dim=64, layers=1, dropout=0.0, input_norm="standardize",
    text_encoder="frozen",
)  # fmt: skip
TRAINING = TrainConfig(
    batch_size=8, lr=1e-3, epochs=1, max_video_seconds=4, captioning="none", selection="last"
)
CAPTIONS = {
    "shapes": [
        f"a {colour} {shape} {verb}"
        for colour in ("red", "green", "blue", "yellow")
        for shape in ("square", "circle")
        for verb in ("grows slowly", "fades out on a gray background")
    ],
    "kitchen": [
        f"{cook} {verb} the {food}"
        for cook in ("a chef", "someone", "the grandmother", "two children")
        for verb in ("chops", "fries")
        for food in ("onions in a pan", "fresh tomatoes")
    ],
}
CHECK_SKIPPED = "not checked that the text shards share its tokenizer"


def write_dataset(folder, name: str) -> tuple[FeatureBank, SplitData]:
    """16 videos with two captions each, a tiny T5 trained on them, their text shard and a
    visual shard of random (T, 12) features; the bank over the shards and the split."""
    texts = CAPTIONS[name]
    ids = [f"{name}{i}" for i in range(len(texts) // 2)]
    videos = [{"video_id": v, "path": f"{v}.mp4", "split": "train"} for v in ids]
    captions = [
        {"caption_id": f"{ids[i // 2]}_{i % 2}", "video_id": ids[i // 2], "text": text,
         "split": "train"}
        for i, text in enumerate(texts)
    ]  # fmt: skip
    folder.mkdir()
    write_manifest(videos, captions, folder)
    build_from_manifest(folder / "captions.parquet", TINY, folder / "t5")
    text = folder / "text.parquet"
    embed_shard(
        folder / "captions.parquet", 0, TEXT, str(folder / "t5"), text, folder / "r.parquet"
    )
    rng = np.random.default_rng(0)
    features = [rng.normal(size=(int(rng.integers(2, 6)), VIDEO_DIM)) for _ in ids]
    visual = folder / "visual.parquet"
    times = [np.arange(len(f), dtype=np.float32) for f in features]
    metadata = {"settings": {"fps": 1.0}, "dim": VIDEO_DIM}
    write_visual_shard(visual, ids, times, features, VIDEO_DIM, "float32", metadata)
    bank = FeatureBank.load([visual], [text], cache_mb=1)
    return bank, bank.split(folder / "videos.parquet", folder / "captions.parquet", "train")


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> dict:
    """name -> (bank, split, folder) of the two datasets, each with its own tiny T5."""
    root = tmp_path_factory.mktemp("datasets")
    return {name: (*write_dataset(root / name, name), root / name) for name in CAPTIONS}


@pytest.fixture(scope="module")
def trained_on_shapes(datasets, tmp_path_factory):
    """model.pt trained on the shapes dataset."""
    bank, split, _ = datasets["shapes"]
    out = tmp_path_factory.mktemp("trained")
    train(bank, split, None, MODEL, TRAINING, out / "model.pt", out / "log.csv")
    return out / "model.pt"


def without_tokenizer_record(path, out):
    """A copy of the checkpoint as versions before the tokenizer record wrote it."""
    checkpoint = torch.load(path, weights_only=True)
    del checkpoint["tokenizer"]
    torch.save(checkpoint, out)
    return out


def test_tokenizers_trained_on_other_captions_differ_and_one_folder_is_one_tokenizer(
    datasets, tmp_path
):
    shapes, kitchen = (train_tokenizer(CAPTIONS[name], 200) for name in ("shapes", "kitchen"))
    assert fingerprint(shapes) != fingerprint(kitchen)
    assert re.fullmatch("[0-9a-f]{64}", fingerprint(shapes))
    folder = datasets["shapes"][2] / "t5"
    shutil.copytree(folder, tmp_path / "copy")
    loaded = [load_t5(str(path))[0] for path in (folder, folder, tmp_path / "copy")]
    assert len({fingerprint(tokenizer) for tokenizer in loaded}) == 1
    assert read_metadata(datasets["shapes"][2] / "text.parquet")["tokenizer_sha256"] == (
        fingerprint(loaded[0])
    )


def test_the_bank_exposes_its_text_shards_tokenizer(datasets, tmp_path):
    bank, _, folder = datasets["shapes"]
    assert bank.tokenizer.sha256 == fingerprint(load_t5(str(folder / "t5"))[0])
    assert bank.tokenizer.text_model == str(folder / "t5")
    assert bank.visual_part("both").tokenizer == bank.tokenizer
    assert FeatureBank(dict(bank.videos), dict(bank.texts), dict(bank.token_ids)).tokenizer is None
    old = tmp_path / "old.parquet"
    with ShardWriter(old, text_schema(16, "float32"), {"model": "t5-base"}) as writer:
        writer.write(("c", "v"), (np.array([3, 1]), np.zeros((2, 16), np.float32)), (2,))
    assert FeatureBank.load([folder / "visual.parquet"], [old], cache_mb=1).tokenizer is None


def test_text_shards_of_two_tokenizers_are_not_one_bank(datasets, tmp_path):
    shapes, kitchen = (datasets[name][2] for name in ("shapes", "kitchen"))
    visual = shapes / "visual.parquet"
    mixed = [shapes / "text.parquet", kitchen / "text.parquet"]
    with pytest.raises(ValueError, match="do not share a tokenizer") as raised:
        FeatureBank.load([visual], mixed, cache_mb=1)
    assert str(shapes / "t5") in str(raised.value) and str(kitchen / "t5") in str(raised.value)
    old = tmp_path / "old.parquet"
    with ShardWriter(old, text_schema(16, "float32"), {"model": "t5-base"}) as writer:
        writer.write(("c", "v"), (np.array([3, 1]), np.zeros((2, 16), np.float32)), (2,))
    with pytest.raises(ValueError, match="no tokenizer recorded"):
        FeatureBank.load([visual], [shapes / "text.parquet", old], cache_mb=1)


def test_a_checkpoint_records_its_tokenizer_and_initialises_only_on_it(
    datasets, trained_on_shapes, tmp_path
):
    shapes, shapes_split, shapes_folder = datasets["shapes"]
    kitchen, kitchen_split, kitchen_folder = datasets["kitchen"]
    recorded = torch.load(trained_on_shapes, weights_only=True)["tokenizer"]
    assert recorded == dataclasses.asdict(shapes.tokenizer)
    config = dataclasses.replace(TRAINING, init_from=str(trained_on_shapes))
    train(shapes, shapes_split, None, MODEL, config, tmp_path / "a.pt", tmp_path / "a.csv")
    with pytest.raises(ValueError) as raised:
        train(kitchen, kitchen_split, None, MODEL, config, tmp_path / "b.pt", tmp_path / "b.csv")
    message = str(raised.value)
    assert message.startswith(f"training.init_from {trained_on_shapes} was trained on captions")
    assert f"text.model {shapes_folder / 't5'}" in message
    assert f"text.model {kitchen_folder / 't5'}" in message
    assert not (tmp_path / "b.pt").exists()


def test_export_refuses_a_model_of_another_tokenizer(datasets, trained_on_shapes, tmp_path):
    for name in ("shapes", "kitchen"):
        bank, split, _ = datasets[name]
        export = (trained_on_shapes, bank, split, 4, tmp_path / "v.parquet", tmp_path / "c.parquet")
        if name == "shapes":
            export_split(*export)
            continue
        with pytest.raises(ValueError, match=f"model file {re.escape(str(trained_on_shapes))} "):
            export_split(*export)


def test_a_checkpoint_without_a_tokenizer_record_is_used_with_a_warning(
    datasets, trained_on_shapes, tmp_path, caplog
):
    kitchen, split, _ = datasets["kitchen"]
    old = without_tokenizer_record(trained_on_shapes, tmp_path / "old.pt")
    caplog.set_level(logging.WARNING, logger="supportset.model.checkpoint")
    initialise_from(SupportSetModel(MODEL, VIDEO_DIM, 16), old, kitchen.tokenizer)
    assert f"training.init_from {old}: {CHECK_SKIPPED}" in caplog.text
    assert "written before checkpoints recorded a tokenizer" in caplog.text
    caplog.clear()
    export_split(old, kitchen, split, 4, tmp_path / "v.parquet", tmp_path / "c.parquet")
    assert f"model file {old}: {CHECK_SKIPPED}" in caplog.text
    assert (tmp_path / "c.parquet").exists()


def test_features_without_a_tokenizer_record_are_used_with_a_warning(
    datasets, trained_on_shapes, tmp_path, caplog
):
    """A bank of plain dicts records no tokenizer: init_from proceeds with a warning, and the
    model trained on it records none, so its export warns too."""
    kitchen, split, _ = datasets["kitchen"]
    plain = FeatureBank(dict(kitchen.videos), dict(kitchen.texts), dict(kitchen.token_ids))
    config = dataclasses.replace(TRAINING, init_from=str(trained_on_shapes))
    caplog.set_level(logging.WARNING, logger="supportset.model.checkpoint")
    train(plain, split, None, MODEL, config, tmp_path / "m.pt", tmp_path / "l.csv")
    assert f"training.init_from {trained_on_shapes}: {CHECK_SKIPPED}" in caplog.text
    assert "the text shards read here record no tokenizer" in caplog.text
    assert torch.load(tmp_path / "m.pt", weights_only=True)["tokenizer"] is None
    caplog.clear()
    export_split(
        tmp_path / "m.pt", kitchen, split, 4, tmp_path / "v.parquet", tmp_path / "c.parquet"
    )
    assert "the text shards it was trained on recorded no tokenizer" in caplog.text
