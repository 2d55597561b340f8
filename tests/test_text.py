import numpy as np
import pyarrow.parquet as pq
import pytest

from supportset.data.manifest import write_manifest
from supportset.features.store import read_metadata, read_sequences
from supportset.features.text import (
    TextModelError,
    TextSettings,
    TinyT5Settings,
    embed_shard,
    encode,
    length_batches,
    load_t5,
    tokenize,
    truncate,
)
from supportset.features.tiny_t5 import build_from_manifest

TINY = TinyT5Settings(d_model=16, num_layers=1, num_heads=2, d_ff=32, vocab_size=200)


@pytest.fixture(scope="module")
def tiny_model(manifest, tmp_path_factory):
    out = tmp_path_factory.mktemp("t5")
    build_from_manifest(manifest / "captions.parquet", TINY, out)
    return out


def test_tiny_t5_loads_offline_and_tokenizes_with_eos(tiny_model):
    tokenizer, encoder = load_t5(str(tiny_model))
    ids = tokenize(tokenizer, ["a red square turns blue"])[0]
    assert ids[-1] == tokenizer.eos_token_id
    assert encoder.config.d_model == 16


def test_truncation_keeps_max_tokens_and_eos_like_the_tokenizer(tiny_model):
    tokenizer, _ = load_t5(str(tiny_model))
    text = "a red square turns blue " * 20
    ids = truncate(tokenize(tokenizer, [text])[0], 7)
    assert len(ids) == 7 and ids[-1] == tokenizer.eos_token_id
    reference = tokenizer([text], truncation=True, max_length=7)["input_ids"][0]
    assert ids.tolist() == reference


def test_length_batches_group_similar_lengths():
    batches = length_batches([3, 10, 4, 9, 1], 2)
    assert [sorted(b.tolist()) for b in batches] == [[1, 3], [0, 2], [4]]


def test_batched_encoding_equals_one_at_a_time(tiny_model):
    tokenizer, encoder = load_t5(str(tiny_model))
    texts = ["a red square", "the green circle fades out on a gray background", "grows", "blue"]
    ids = tokenize(tokenizer, texts)
    batched = encode(encoder, ids, 3, tokenizer.pad_token_id)
    for index, single_ids in enumerate(ids):
        single = encode(encoder, [single_ids], 1, tokenizer.pad_token_id)[0]
        np.testing.assert_allclose(batched[index], single, atol=1e-5)


def test_embed_shard_writes_every_caption_of_the_shard(manifest, tiny_model, tmp_path):
    settings = TextSettings(model="tiny", shards=2, dtype="float32", tiny=TINY)
    out = tmp_path / "t.parquet"
    counts = embed_shard(
        manifest / "captions.parquet", 1, settings, str(tiny_model), out, tmp_path / "r.parquet"
    )
    all_ids = pq.read_table(manifest / "captions.parquet").column("caption_id").to_pylist()
    assert pq.read_table(out).column("caption_id").to_pylist() == all_ids[1::2]
    assert counts == (len(all_ids[1::2]), 0)
    states = read_sequences([out], "caption_id", "embeddings")
    assert all(s.shape[1] == 16 for s in states.values())
    metadata = read_metadata(out)
    assert metadata["model"] == str(tiny_model)
    assert metadata["revision"].startswith("sha256:")


def test_bad_captions_are_recorded_not_dropped(tiny_model, tmp_path):
    long_paragraph = "the red square turns blue and then the green circle fades out " * 40
    captions = [
        {"caption_id": "ok", "video_id": "v", "text": "a red square", "split": "train"},
        {"caption_id": "empty", "video_id": "v", "text": "", "split": "train"},
        {"caption_id": "blank", "video_id": "v", "text": " \t\n ", "split": "train"},
        {"caption_id": "long", "video_id": "v", "text": long_paragraph, "split": "train"},
        {"caption_id": "accents", "video_id": "v", "text": "un carré rouge ☃", "split": "train"},
    ]
    write_manifest([{"video_id": "v", "path": "v.mp4", "split": "train"}], captions, tmp_path)
    settings = TextSettings(model="tiny", shards=1, max_tokens=16, dtype="float32", tiny=TINY)
    out, rejects = tmp_path / "t.h5", tmp_path / "r.parquet"
    counts = embed_shard(tmp_path / "captions.parquet", 0, settings, str(tiny_model), out, rejects)
    assert counts == (3, 2)
    reasons = {row["caption_id"]: row["reason"] for row in pq.read_table(rejects).to_pylist()}
    assert reasons == {
        "empty": "empty or whitespace-only text",
        "blank": "empty or whitespace-only text",
    }
    states = read_sequences([out], "caption_id", "embeddings")
    assert list(states) == ["ok", "long", "accents"] and len(states["long"]) == 16
    assert read_metadata(out)["truncated_captions"] == 1


def test_missing_model_names_hf_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(TextModelError, match="HF_HOME"):
        load_t5("t5-base")


def test_preflight_stops_on_a_missing_text_model(tmp_path, monkeypatch):
    from supportset.preflight import check_job_weights

    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    features = {
        "appearance": {"arch": "resnet18", "weights": "random"},
        "motion": {"arch": "r2plus1d_10", "weights": "random"},
    }
    for rule in ("extract_visual", "embed_text"):
        check_job_weights(rule, features, {"model": "tiny"})
    with pytest.raises(TextModelError, match=r"local directory.*HF_HOME"):
        check_job_weights("embed_text", features, {"model": "t5-base"})
