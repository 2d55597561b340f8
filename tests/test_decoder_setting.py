"""`training.decoder`: the T5 whose decoder captions, when it is not text.model (Table 2d)."""

import csv
import dataclasses
import re

import numpy as np
import pytest
import transformers

from supportset.features.bank import FeatureBank, SplitData
from supportset.features.text import TextModelError
from supportset.model.retrieval_model import ModelConfig
from supportset.preflight import check_job_weights
from supportset.train import loop
from supportset.train.config import TrainConfig
from tests.train_runs import train

FEATURES = {
    "appearance": {"arch": "resnet18", "weights": "random"},
    "motion": {"arch": "r2plus1d_10", "weights": "random"},
}
MODEL = ModelConfig(dim=16, heads=2, ffn_dim=32, layers=1, dropout=0.0, text_encoder="frozen")
CROSS = TrainConfig(batch_size=4, epochs=1, max_video_seconds=3, selection="last")


def save_t5(folder, d_model: int, vocab_size: int = 16) -> str:
    """A random T5 of width `d_model`, saved as a local model folder."""
    config = transformers.T5Config(
        vocab_size=vocab_size, d_model=d_model, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
        decoder_start_token_id=0, pad_token_id=0,
    )  # fmt: skip
    transformers.T5ForConditionalGeneration(config).save_pretrained(folder)
    return str(folder)


def tiny_data() -> loop.TrainData:
    """Eight videos (3, 6) with one caption each, token ids below 16; no validation split."""
    rng = np.random.default_rng(0)
    ids = [f"v{i}" for i in range(8)]
    captions = [f"{v}_0" for v in ids]
    bank = FeatureBank(
        {v: rng.normal(size=(3, 6)).astype(np.float32) for v in ids},
        {c: rng.normal(size=(3, 5)).astype(np.float32) for c in captions},
        {c: np.array([3 + i, 4, 1]) for i, c in enumerate(captions)},
    )
    return loop.TrainData(bank, SplitData(ids, captions, ids, {v: [f"{v}_0"] for v in ids}), None)


def decoder_width(tmp_path, text_model: str, decoder: str) -> int:
    """d_model of the decoder training builds with these models."""
    config = dataclasses.replace(CROSS, decoder=decoder)
    outputs = loop.TrainOutputs(tmp_path / "m.pt", tmp_path / "l.csv")
    session = loop.setup(tiny_data(), MODEL, config, outputs, text_model, (), 0)
    session.scalars.close()
    return session.objective.decoder.config.d_model


def test_preflight_checks_the_decoder_model(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    text, model = {"model": "tiny"}, {"text_encoder": "frozen"}
    missing = {"captioning": "cross", "decoder": "t5-small"}
    with pytest.raises(
        TextModelError, match=r"training\.decoder 't5-small' is not available.*HF_HOME"
    ):
        check_job_weights("train", FEATURES, text, model, missing)
    check_job_weights("train", FEATURES, text, model, {**missing, "captioning": "none"})
    check_job_weights("train", FEATURES, text, model, {**missing, "decoder": ""})
    folder = save_t5(tmp_path / "decoder", d_model=24)
    check_job_weights("train", FEATURES, text, model, {**missing, "decoder": folder})


def test_preflight_compares_the_vocabularies_of_a_named_text_model(tmp_path):
    training = {"captioning": "cross", "decoder": save_t5(tmp_path / "decoder", d_model=24)}
    model = {"text_encoder": "frozen"}
    same = {"model": save_t5(tmp_path / "text", d_model=16)}
    check_job_weights("train", FEATURES, same, model, training)
    other = {"model": save_t5(tmp_path / "other", d_model=16, vocab_size=20)}
    with pytest.raises(TextModelError, match="has a vocabulary of 16 tokens"):
        check_job_weights("train", FEATURES, other, model, training)


def test_training_captions_with_the_decoder_setting_names(tmp_path):
    text_model = save_t5(tmp_path / "text", d_model=16)
    decoder = save_t5(tmp_path / "decoder", d_model=24)
    assert decoder_width(tmp_path, text_model, decoder) == 24
    assert decoder_width(tmp_path, text_model, "") == 16
    data, config = tiny_data(), dataclasses.replace(CROSS, decoder=decoder)
    train(data.bank, data.train, None, MODEL, config, tmp_path / "m.pt", tmp_path / "l.csv",
          text_model)  # fmt: skip
    with open(tmp_path / "l.csv", newline="") as handle:
        steps = [row for row in csv.DictReader(handle) if row["kind"] == "train"]
    assert steps and all(float(row["caption"]) > 0 for row in steps)


def test_a_decoder_of_another_vocabulary_or_missing_stops_training(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    text_model = save_t5(tmp_path / "text", d_model=16)
    other = save_t5(tmp_path / "other", d_model=16, vocab_size=20)
    message = (
        f"training.decoder '{other}' has a vocabulary of 20 tokens, but the captions are "
        f"token ids of text.model '{text_model}' (16 tokens)"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        decoder_width(tmp_path, text_model, other)
    with pytest.raises(TextModelError, match=r"training\.decoder 't5-small' is not available"):
        decoder_width(tmp_path, text_model, "t5-small")
