import numpy as np
import pyarrow.parquet as pq
import pytest

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
    ids = tokenize(tokenizer, ["a red square turns blue"], 100)[0]
    assert ids[-1] == tokenizer.eos_token_id
    assert encoder.config.d_model == 16


def test_truncation_keeps_max_tokens(tiny_model):
    tokenizer, _ = load_t5(str(tiny_model))
    ids = tokenize(tokenizer, ["a red square turns blue " * 20], 7)[0]
    assert len(ids) == 7 and ids[-1] == tokenizer.eos_token_id


def test_length_batches_group_similar_lengths():
    batches = length_batches([3, 10, 4, 9, 1], 2)
    assert [sorted(b.tolist()) for b in batches] == [[1, 3], [0, 2], [4]]


def test_batched_encoding_equals_one_at_a_time(tiny_model):
    tokenizer, encoder = load_t5(str(tiny_model))
    texts = ["a red square", "the green circle fades out on a gray background", "grows", "blue"]
    ids = tokenize(tokenizer, texts, 100)
    batched = encode(encoder, ids, 3, tokenizer.pad_token_id)
    for index, single_ids in enumerate(ids):
        single = encode(encoder, [single_ids], 1, tokenizer.pad_token_id)[0]
        np.testing.assert_allclose(batched[index], single, atol=1e-5)


def test_embed_shard_writes_every_caption_of_the_shard(manifest, tiny_model, tmp_path):
    settings = TextSettings(model="tiny", shards=2, dtype="float32", tiny=TINY)
    out = tmp_path / "t.parquet"
    count = embed_shard(manifest / "captions.parquet", 1, settings, str(tiny_model), out)
    all_ids = pq.read_table(manifest / "captions.parquet").column("caption_id").to_pylist()
    assert pq.read_table(out).column("caption_id").to_pylist() == all_ids[1::2]
    assert count == len(all_ids[1::2])
    states = read_sequences([out], "caption_id", "embeddings")
    assert all(s.shape[1] == 16 for s in states.values())
    assert read_metadata(out)["model"] == str(tiny_model)


def test_missing_model_names_hf_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(TextModelError, match="HF_HOME"):
        load_t5("t5-base")
