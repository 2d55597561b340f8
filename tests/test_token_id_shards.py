"""Token-id text shards (embed_text --token-ids-only): what a fine-tuned text encoder reads
instead of T5 states, written without loading the encoder, and read by training and export."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import h5py
import numpy as np
import pyarrow.parquet as pq
import pytest

from supportset.cli import main
from supportset.data.manifest import read_captions, write_manifest
from supportset.features import text as text_module
from supportset.features.bank import FeatureBank
from supportset.features.store import read_metadata, read_sequences, write_visual_shard
from supportset.features.text import (
    TextModelError,
    TextSettings,
    TinyT5Settings,
    embed_shard,
    shard_captions,
)
from supportset.features.tiny_t5 import build_from_manifest
from supportset.model.checkpoint import save_checkpoint
from supportset.model.retrieval_model import ModelConfig, SupportSetModel
from supportset.preflight import check_job_weights
from supportset.retrieval.export import export_split
from supportset.retrieval.query import text_shards_option
from supportset.train.config import TrainConfig
from tests.train_runs import train

TINY = TinyT5Settings(d_model=16, num_layers=1, num_heads=2, d_ff=32, vocab_size=200)
TEXT = TextSettings(model="tiny", shards=2, max_tokens=6, dtype="float32", tiny=TINY)
VIDEO_DIM = 12
FINETUNE = ModelConfig(
    dim=32, heads=2, ffn_dim=64, layers=1, dropout=0.0, input_norm="standardize",
    text_encoder="finetune",
)  # fmt: skip
FROZEN = ModelConfig(**{**FINETUNE.__dict__, "text_encoder": "frozen"})
TRAINING = TrainConfig(
    batch_size=8, lr=1e-3, epochs=1, max_video_seconds=4, captioning="none", selection="last"
)
FROZEN_NEEDS_STATES = "a frozen text encoder (model.text_encoder 'frozen') needs embed_text's"


def caption_rows() -> list[dict]:
    """Two captions for each of 12 videos: one long (truncated at 6 tokens), some empty."""
    words = ("red", "green", "blue", "square", "circle", "grows", "fades", "slowly")
    rows = []
    for index in range(24):
        text = " ".join(words[(index + k) % len(words)] for k in range(2 + index % 9))
        rows.append(
            {
                "caption_id": f"c{index:02d}",
                "video_id": f"v{index // 2:02d}",
                "text": "  " if index % 7 == 3 else text,
                "split": "train",
            }
        )
    return rows


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """A manifest of `caption_rows`, a tiny T5 trained on it and a random visual shard."""
    folder = tmp_path_factory.mktemp("tokens")
    videos = [
        {"video_id": f"v{i:02d}", "path": f"v{i:02d}.mp4", "split": "train"} for i in range(12)
    ]
    write_manifest(videos, caption_rows(), folder)
    build_from_manifest(folder / "captions.parquet", TINY, folder / "t5")
    rng = np.random.default_rng(0)
    features = [rng.normal(size=(4, VIDEO_DIM)) for _ in videos]
    times = [np.arange(4, dtype=np.float32) for _ in videos]
    metadata = {"settings": {"fps": 1.0}, "dim": VIDEO_DIM}
    ids = [video["video_id"] for video in videos]
    write_visual_shard(
        folder / "visual.parquet", ids, times, features, VIDEO_DIM, "float32", metadata
    )
    return folder


def embed(folder: Path, name: str, shard: int, token_ids_only: bool) -> Path:
    """Shard `shard` of the captions embedded into `name` (its suffix picks the format)."""
    out = folder / name
    rejects = folder / f"{out.stem}.rejects.parquet"
    embed_shard(
        folder / "captions.parquet", shard, TEXT, str(folder / "t5"), out, rejects, token_ids_only
    )
    return out


def n_tokens(path: Path) -> list[int]:
    if path.suffix == ".h5":
        with h5py.File(path) as file:
            return file["n_tokens"][:].tolist()
    return pq.read_table(path, columns=["n_tokens"]).column("n_tokens").to_pylist()


def columns(path: Path) -> set[str]:
    if path.suffix == ".h5":
        with h5py.File(path) as file:
            return set(file)
    return set(pq.read_schema(path).names)


def no_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make loading a T5 encoder (or any T5 with weights) an error."""

    def refuse(*args, **kwargs):
        raise AssertionError("a token-id shard loaded the T5 encoder")

    monkeypatch.setattr(text_module, "load_t5_encoder", refuse)
    monkeypatch.setattr(text_module.transformers.T5EncoderModel, "from_pretrained", refuse)


@pytest.fixture(scope="module")
def token_bank(dataset: Path) -> FeatureBank:
    """The bank over the visual shard and both token-id shards."""
    shards = [embed(dataset, f"tokens{shard}.parquet", shard, True) for shard in (0, 1)]
    return FeatureBank.load([dataset / "visual.parquet"], shards, cache_mb=1)


@pytest.mark.parametrize("suffix", [".parquet", ".h5"])
def test_a_token_id_shard_holds_the_states_shard_s_ids_without_loading_the_encoder(
    dataset: Path, suffix: str, monkeypatch: pytest.MonkeyPatch
):
    states = embed(dataset, f"states{suffix}", 1, False)
    no_encoder(monkeypatch)
    tokens = embed(dataset, f"ids{suffix}", 1, True)
    expected = read_sequences([states], "caption_id", "token_ids", np.int64)
    written = read_sequences([tokens], "caption_id", "token_ids", np.int64)
    assert list(written) == list(expected) and len(written) == 10  # 12 captions, 2 empty
    assert all(np.array_equal(written[c], expected[c]) for c in expected)
    assert n_tokens(tokens) == n_tokens(states) and max(n_tokens(tokens)) > TEXT.max_tokens
    assert "embeddings" in columns(states) and "embeddings" not in columns(tokens)
    assert pq.read_table(dataset / "ids.rejects.parquet").to_pylist() == (
        pq.read_table(dataset / "states.rejects.parquet").to_pylist()
    )
    kept = read_metadata(states)
    metadata = read_metadata(tokens)
    assert metadata.pop("token_ids_only") is True and "token_ids_only" not in kept
    assert metadata.pop("revision").startswith("sha256:")  # of the tokenizer and config files
    assert metadata == {k: v for k, v in kept.items() if k not in ("revision", "dim")}
    assert metadata["truncated_captions"] > 0


def test_shard_captions_are_those_of_the_whole_table_s_stride(dataset: Path):
    """Read a batch at a time (batches of 5 rows: shards straddle them), a shard holds the
    captions that `read_captions(manifest)[shard::shards]` selected, in that order."""
    manifest = dataset / "captions.parquet"
    table = read_captions(manifest)
    for shards in (1, 2, 3, 7):
        for shard in range(shards):
            read = [row for rows in shard_captions(manifest, shard, shards, 5) for row in rows]
            old = [{k: row[k] for k in ("caption_id", "video_id", "text")} for row in table]
            assert read == old[shard::shards]


def test_the_command_line_writes_token_ids_only(dataset: Path, monkeypatch: pytest.MonkeyPatch):
    no_encoder(monkeypatch)
    out = dataset / "cli.parquet"
    status = main(
        ["embed-text", "--manifest", str(dataset / "captions.parquet"), "--shard", "0",
         "--settings", '{"model": "tiny", "shards": 2}', "--model-dir", str(dataset / "t5"),
         "--out", str(out), "--rejects", str(dataset / "cli.rejects.parquet"),
         "--token-ids-only"]
    )  # fmt: skip
    assert status == 0 and read_metadata(out)["token_ids_only"] is True


def test_a_token_ids_job_needs_the_tokenizer_and_config_not_the_weights(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    folder = tmp_path / "no_weights"
    shutil.copytree(dataset / "t5", folder, ignore=shutil.ignore_patterns("*.safetensors"))
    check_job_weights("embed_text", {}, {"model": str(folder)}, token_ids_only=True)
    with pytest.raises(TextModelError, match=r"found its tokenizer and config, but none of"):
        check_job_weights("embed_text", {}, {"model": str(folder)})
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(TextModelError) as missing:
        check_job_weights("embed_text", {}, {"model": "t5-base"}, token_ids_only=True)
    message = str(missing.value)
    assert "tokenizer and config; token ids alone need no encoder weights" in message
    assert "AutoConfig" in message and "T5EncoderModel" not in message


def test_a_fine_tuned_model_trains_and_exports_from_token_id_shards(
    dataset: Path, token_bank: FeatureBank, tmp_path: Path
):
    split = token_bank.split(dataset / "videos.parquet", dataset / "captions.parquet", "train")
    assert len(split.caption_ids) == 21 and len(split.video_ids) == 12  # 3 empty captions
    model = tmp_path / "model.pt"
    train(
        token_bank,
        split,
        None,
        FINETUNE,
        TRAINING,
        model,
        tmp_path / "log.csv",
        str(dataset / "t5"),
    )
    videos, captions = tmp_path / "videos.parquet", tmp_path / "captions.parquet"
    export_split(model, token_bank, split, 4, videos, captions)
    assert pq.read_table(captions).column("caption_id").to_pylist() == split.caption_ids


def test_a_frozen_model_given_token_id_shards_says_it_needs_the_states(
    dataset: Path, token_bank: FeatureBank, tmp_path: Path
):
    split = token_bank.split(dataset / "videos.parquet", dataset / "captions.parquet", "train")
    with pytest.raises(ValueError) as raised:
        train(token_bank, split, None, FROZEN, TRAINING, tmp_path / "m.pt", tmp_path / "l.csv")
    message = str(raised.value)
    assert FROZEN_NEEDS_STATES in message and str(dataset / "tokens0.parquet") in message
    frozen = SupportSetModel(FROZEN, VIDEO_DIM, TINY.d_model)  # as trained on states
    save_checkpoint(tmp_path / "m.pt", frozen.state_dict(), frozen, {}, token_bank.tokenizer)
    out = tmp_path / "videos.parquet", tmp_path / "captions.parquet"
    with pytest.raises(ValueError, match=re.escape(FROZEN_NEEDS_STATES)):
        export_split(tmp_path / "m.pt", token_bank, split, 4, *out)


def test_states_and_token_id_shards_are_not_read_together(dataset: Path, token_bank):
    states = embed(dataset, "mixed_states.parquet", 0, False)
    with pytest.raises(ValueError, match=r"mixed_states\.parquet \(T5 states\) and .*tokens1"):
        FeatureBank.load([dataset / "visual.parquet"], [states, dataset / "tokens1.parquet"])


def test_the_search_hint_names_token_id_sets_too(tmp_path: Path):
    for name in ("tokens/00000.parquet", "tokens-t5-small/00000.parquet", "text/00000.h5"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).touch()
    assert text_shards_option(tmp_path) == (
        f"--text-shards {tmp_path}/text/?????.h5 or --text-shards "
        f"{tmp_path}/tokens-t5-small/?????.parquet or --text-shards {tmp_path}/tokens/?????.parquet"
    )
