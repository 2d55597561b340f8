"""`supportset search`: a query is encoded as export encoded the captions, its hits are
the exact top k of the index, and each hit's best second is the step closest to it."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers

from supportset.cli import main
from supportset.data.manifest import read_captions, write_manifest
from supportset.features.bank import FeatureBank, text_features_record
from supportset.features.store import (
    ShardWriter,
    text_schema,
    write_rejects,
    write_visual_shard,
)
from supportset.features.text import TextSettings, TinyT5Settings, embed_shard
from supportset.features.tiny_t5 import build_from_manifest, build_tiny_t5
from supportset.model.checkpoint import save_checkpoint
from supportset.model.retrieval_model import ModelConfig, SupportSetModel
from supportset.provenance import provenance
from supportset.retrieval.embeddings import (
    read_caption_embeddings,
    read_video_embeddings,
    write_video_embeddings,
)
from supportset.retrieval.export import export_split
from supportset.retrieval.query import Searcher, experiment_files, text_shards_option

TINY = TinyT5Settings(d_model=16, num_layers=1, num_heads=2, d_ff=32, vocab_size=120)
# max_tokens 8 truncates the long captions; float16 states are what the cache holds
TEXT = TextSettings(model="tiny", max_tokens=8, dtype="float16", batch_size=4, tiny=TINY)
VIDEO_DIM, APPEARANCE = 12, 8
LAYOUT = {"appearance": [0, APPEARANCE], "motion": [APPEARANCE, VIDEO_DIM]}
MAX_VIDEO_SECONDS = 5
COLOURS = ("red", "green", "blue", "yellow", "white")
SHAPES = ("square", "circle", "triangle")
# model.text_encoder, model.visual_features of the two experiments
EXPERIMENTS = {"frozen": ("frozen", "both"), "finetune": ("finetune", "appearance")}


def captions_of(index: int) -> list[str]:
    colour, shape = COLOURS[index % 5], SHAPES[index // 5]
    return [
        f"a {colour} {shape} turns {COLOURS[(index + 1) % 5]}",
        f"on a dark background the small {colour} {shape} moves slowly to the left and fades",
    ]


def write_dataset(root: Path) -> Path:
    """results/demo-like folders: manifest (10 test videos, 2 train), a tiny T5, a text
    shard and two visual shards (Parquet, HDF5) of random features, 3 to 9 steps."""
    ids = [f"v{i}" for i in range(12)]
    videos = [
        {"video_id": v, "path": f"videos/{v}.mp4", "split": "test" if i < 10 else "train"}
        for i, v in enumerate(ids)
    ]
    captions = [
        {"caption_id": f"{v}_{k}", "video_id": v, "text": text, "split": videos[i]["split"]}
        for i, v in enumerate(ids)
        for k, text in enumerate(captions_of(i))
    ]
    write_manifest(videos, captions, root / "manifest")
    build_from_manifest(root / "manifest/captions.parquet", TINY, root / "text_model")
    embed_shard(
        root / "manifest/captions.parquet", 0, TEXT, str(root / "text_model"),
        root / "features/text/00000.parquet", root / "features/text/00000.rejects.parquet",
    )  # fmt: skip
    rng = np.random.default_rng(0)
    features = [rng.normal(size=(int(rng.integers(3, 10)), VIDEO_DIM)) for _ in ids]
    times = [0.25 + np.arange(len(f), dtype=np.float32) for f in features]
    metadata = {"settings": {"fps": 1.0}, "layout": LAYOUT}
    visual = root / "features/visual"
    for name, part in (("00000.parquet", slice(0, 6)), ("00001.h5", slice(6, 12))):
        write_visual_shard(
            visual / name, ids[part], times[part], features[part], VIDEO_DIM, "float32", metadata
        )
    write_rejects(visual / "00000.rejects.parquet", "video_id", [])
    return root


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("results") / "demo")


def shards(dataset: Path) -> tuple[list[Path], list[Path]]:
    visual = [dataset / "features/visual/00000.parquet", dataset / "features/visual/00001.h5"]
    return visual, [dataset / "features/text/00000.parquet"]


def write_experiment(dataset: Path, name: str, provenance_block: dict | None = None) -> Path:
    """An untrained model of experiment `name` saved as train saves one, its test split
    exported and indexed as the DAG does."""
    text_encoder, visual_features = EXPERIMENTS[name]
    folder = dataset / name
    visual, text = shards(dataset)
    bank = FeatureBank.load(visual, text)
    torch.manual_seed(0)
    t5 = None
    if text_encoder == "finetune":
        t5 = transformers.T5EncoderModel.from_pretrained(dataset / "text_model")
    config = ModelConfig(
        dim=16, heads=2, ffn_dim=32, layers=1, dropout=0.0, text_encoder=text_encoder,
        visual_features=visual_features,
    )  # fmt: skip
    video_dim = APPEARANCE if visual_features == "appearance" else VIDEO_DIM
    model = SupportSetModel(config, video_dim, TINY.d_model, t5).eval()
    manifest = [dataset / "manifest/videos.parquet", dataset / "manifest/captions.parquet"]
    if provenance_block is None:
        provenance_block = provenance(
            {"training": {"max_video_seconds": MAX_VIDEO_SECONDS}}, manifest
        )
    save_checkpoint(
        folder / "model.pt", model.state_dict(), model, {}, bank.tokenizer,
        text_features_record(text), provenance_block,
    )  # fmt: skip
    split = bank.split(*manifest, "test")
    export_split(
        folder / "model.pt", bank, split, MAX_VIDEO_SECONDS,
        folder / "embeddings/test_videos.parquet", folder / "embeddings/test_captions.parquet",
    )  # fmt: skip
    assert main(["index", "--videos", str(folder / "embeddings/test_videos.parquet"),
                 "--out", str(folder / "index/test.faiss")]) == 0  # fmt: skip
    return folder


@pytest.fixture(scope="module", params=list(EXPERIMENTS))
def experiment(request, dataset) -> Path:
    return write_experiment(dataset, request.param)


def searcher(experiment: Path, **options) -> Searcher:
    return Searcher(experiment_files(experiment, "test"), **options)


def caption_texts(experiment: Path, dataset: Path) -> tuple[list[str], np.ndarray]:
    """The texts of the exported captions, in file order, and their (N_c, d) embeddings."""
    ids, _, exported = read_caption_embeddings(experiment / "embeddings/test_captions.parquet")
    rows = read_captions(dataset / "manifest/captions.parquet")
    text_of = {row["caption_id"]: row["text"] for row in rows}
    return [text_of[caption] for caption in ids], exported


def test_a_captions_text_is_encoded_as_its_exported_embedding(experiment, dataset):
    texts, exported = caption_texts(experiment, dataset)
    encode = searcher(experiment).encode
    np.testing.assert_allclose(encode(texts), exported, rtol=0, atol=1e-6)
    alone = np.concatenate([encode([text]) for text in texts])
    np.testing.assert_allclose(alone, exported, rtol=0, atol=1e-6)


def test_without_the_stored_dtype_a_frozen_query_would_differ(dataset):
    """The float16 round trip of the cached states is what makes the two equal."""
    folder = write_experiment(dataset, "frozen")
    texts, exported = caption_texts(folder, dataset)
    encode = searcher(folder).encode
    encode.dtype = "float32"
    assert np.abs(encode(texts) - exported).max() > 1e-5


def brute_force_top(experiment: Path, queries: np.ndarray) -> tuple[list[str], np.ndarray]:
    video_ids, videos = read_video_embeddings(experiment / "embeddings/test_videos.parquet")
    scores = queries @ (videos / np.linalg.norm(videos, axis=1, keepdims=True)).T
    return video_ids, scores


def test_hits_are_the_exact_top_k_with_cosine_scores(experiment, dataset):
    queries = ["a red square turns green", "the blue circle", "yellow"]
    found = searcher(experiment)
    results = found.search(queries, 4)
    video_ids, scores = brute_force_top(experiment, found.encode(queries))
    for hits, row in zip(results, scores, strict=True):
        order = np.argsort(-row, kind="stable")[:4]
        assert [hit.video_id for hit in hits] == [video_ids[i] for i in order]
        np.testing.assert_allclose([hit.score for hit in hits], row[order], rtol=0, atol=1e-6)
        assert [hit.rank for hit in hits] == [1, 2, 3, 4]
        assert [hit.path for hit in hits] == [f"videos/{video_ids[i]}.mp4" for i in order]


def test_the_best_second_is_the_closest_step_alone_within_the_exported_seconds(experiment, dataset):
    found = searcher(experiment)
    model = found.model
    query = "a white circle turns red"
    hits = found.search([query], 10)[0]
    vector = torch.from_numpy(found.encode([query])[0])
    raw = FeatureBank.load(*shards(dataset))
    columns = slice(0, APPEARANCE) if model.config.visual_features == "appearance" else slice(None)
    longer = [hit for hit in hits if len(raw.videos[hit.video_id]) > MAX_VIDEO_SECONDS]
    assert longer, "some video must have steps beyond the exported seconds"
    for hit in hits:
        features = raw.videos[hit.video_id][:MAX_VIDEO_SECONDS, columns]
        with torch.no_grad():
            step_scores = [
                float(
                    model.embed_videos(
                        torch.from_numpy(step[None, None]), torch.ones(1, 1, dtype=torch.bool)
                    )[0]
                    @ vector
                )
                for step in features
            ]
        expected = raw.timestamps[hit.video_id][int(np.argmax(step_scores))]
        assert hit.best_second == pytest.approx(float(expected))


def test_search_prints_json_and_a_table_and_reads_queries_from_a_file(experiment, tmp_path, capsys):
    queries = tmp_path / "queries.txt"
    queries.write_text("a green square\n\n  the red circle fades  \n")
    arguments = ["search", "--experiment", str(experiment), "--top", "3"]
    assert main([*arguments, "--json", "--queries", str(queries), "blue"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(row["query"], row["rank"]) for row in rows] == [
        (query, rank)
        for query in ("blue", "a green square", "the red circle fades")
        for rank in (1, 2, 3)
    ]
    assert set(rows[0]) >= {"query", "rank", "video_id", "path", "score", "best_second"}
    assert main([*arguments, "blue"]) == 0
    table = capsys.readouterr().out
    assert table.startswith("query: 'blue'\nrank")
    assert rows[0]["video_id"] in table.splitlines()[2]


def test_queries_from_stdin_are_answered_line_by_line(experiment, monkeypatch, capsys):
    arguments = ["search", "--experiment", str(experiment), "--top", "3", "--json"]
    assert main([*arguments, "blue", "a green square"]) == 0
    batched = json.loads(capsys.readouterr().out)
    monkeypatch.setattr("sys.stdin", io.StringIO("blue\n\na green square\n"))
    assert main([*arguments, "--queries", "-"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2  # one JSON list per query, as each line arrives
    streamed = [hit for line in lines for hit in json.loads(line)]
    key = ("query", "rank", "video_id", "path", "best_second")
    assert [[hit[k] for k in key] for hit in streamed] == [[hit[k] for k in key] for hit in batched]
    assert [hit["score"] for hit in streamed] == pytest.approx(
        [hit["score"] for hit in batched], abs=1e-6
    )


def test_a_tokenizer_other_than_the_captions_is_refused(experiment, tmp_path, capsys):
    build_tiny_t5(["a chef chops onions", "someone fries tomatoes"], TINY, tmp_path / "other")
    arguments = ["search", "--experiment", str(experiment), "--text-model", str(tmp_path / "other")]
    assert main([*arguments, "a red square"]) == 1
    error = capsys.readouterr().err
    assert re.search(r"tokenizer of .*other \(vocabulary sha256 \w{12}\) is not the one", error)


def test_a_text_model_that_is_gone_says_to_pass_text_model(experiment, tmp_path, capsys):
    arguments = ["search", "--experiment", str(experiment), "--text-model", str(tmp_path / "gone")]
    assert main([*arguments, "a red square"]) == 1
    assert "pass the T5 the captions were embedded with as --text-model" in capsys.readouterr().err


EXPERIMENT_FILES = (
    "model.pt",
    "index/test.faiss",
    "embeddings/test_videos.parquet",
    "../manifest/videos.parquet",
    "../features/visual/00000.parquet",
)


@pytest.mark.parametrize("missing", EXPERIMENT_FILES[:4])
def test_a_missing_file_names_itself_and_its_snakemake_target(tmp_path, missing):
    folder = tmp_path / "demo" / "exp"
    for name in EXPERIMENT_FILES:
        if name != missing:
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).touch()
    path = Path(os.path.normpath(folder / missing))
    with pytest.raises(FileNotFoundError) as error:
        experiment_files(folder, "test")
    assert str(error.value).startswith(f"{path} is missing: build it with `snakemake {path}`")


def test_a_missing_model_says_how_to_pass_the_model_of_model_from(tmp_path):
    folder = tmp_path / "demo" / "exp"
    with pytest.raises(FileNotFoundError, match=r"model_from, has none: pass that one as --model"):
        experiment_files(folder, "test")
    with pytest.raises(FileNotFoundError, match=r"^--model elsewhere.pt does not exist$"):
        experiment_files(folder, "test", "elsewhere.pt")


def test_missing_visual_shards_name_their_folder(tmp_path):
    folder = tmp_path / "demo" / "exp"
    for name in [*EXPERIMENT_FILES[:4], "../features/visual/00000.rejects.parquet"]:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).touch()
    message = r"visual holds no visual feature shard: build them with `snakemake .*/00000.parquet`"
    with pytest.raises(FileNotFoundError, match=message):
        experiment_files(folder, "test")


def copy_with_checkpoint(experiment: Path, tmp_path: Path, change) -> Path:
    """The experiment (with its dataset's shared folders) with model.pt changed by `change`."""
    copy = tmp_path / "demo" / experiment.name
    shutil.copytree(experiment, copy)
    for shared in ("manifest", "features", "text_model"):
        (tmp_path / "demo" / shared).symlink_to(experiment.parent / shared)
    checkpoint = torch.load(copy / "model.pt", weights_only=True)
    change(checkpoint)
    torch.save(checkpoint, copy / "model.pt")
    return copy


def written_before_search(checkpoint: dict) -> None:
    """model.pt as versions before search wrote it: no text_features record."""
    del checkpoint["text_features"]


def test_a_model_without_its_text_features_record_says_which_text_shards_to_pass(
    experiment, tmp_path
):
    copy = copy_with_checkpoint(experiment, tmp_path, written_before_search)
    option = f"--text-shards {tmp_path}/demo/features/text/?????.parquet"
    with pytest.raises(ValueError) as error:
        searcher(copy)
    assert "does not record how its captions were encoded" in str(error.value)
    assert str(error.value).endswith(f"pass the text shards it was trained on, {option}")


def test_text_shards_option_names_each_text_set_and_its_format(tmp_path):
    features = tmp_path / "features"
    for name in ("text/00000.h5", "text/00001.h5", "text/00000.rejects.parquet",
                 "text-t5-base/00000.parquet", "visual/00000.parquet"):  # fmt: skip
        (features / name).parent.mkdir(parents=True, exist_ok=True)
        (features / name).touch()
    assert text_shards_option(features) == (
        f"--text-shards {features}/text-t5-base/?????.parquet "
        f"or --text-shards {features}/text/?????.h5"
    )
    assert text_shards_option(tmp_path / "none") == (
        f"--text-shards {tmp_path}/none/text/?????.parquet"
    )


@pytest.mark.parametrize(
    "tokenizer_record", ["kept", "none", "absent"], ids=["tokenizer", "None", "no-key"]
)
def test_text_shards_give_a_model_without_its_record_the_exported_embeddings(
    experiment, dataset, tmp_path, caplog, tokenizer_record
):
    def older(checkpoint: dict) -> None:
        written_before_search(checkpoint)
        if tokenizer_record == "none":
            checkpoint["tokenizer"] = None
        elif tokenizer_record == "absent":
            del checkpoint["tokenizer"]

    copy = copy_with_checkpoint(experiment, tmp_path, older)
    texts, exported = caption_texts(experiment, dataset)
    with caplog.at_level(logging.INFO, logger="supportset.retrieval.query"):
        encode = searcher(copy, text_shards=shards(copy.parent)[1]).encode
    np.testing.assert_allclose(encode(texts), exported, rtol=0, atol=1e-6)
    assert re.search(
        r"encoded is taken from the text shards .*00000.parquet \(1 shards\), not from the "
        r"model: .*\(model.pt's own record: None\)",
        caplog.text,
    )
    not_checked = "not checked that the text shards, text.model"
    assert (not_checked in caplog.text) == (tokenizer_record != "kept")


def test_text_shards_given_replace_the_models_record_and_say_so(experiment, dataset, caplog):
    with caplog.at_level(logging.INFO, logger="supportset.retrieval.query"):
        searcher(experiment, text_shards=shards(dataset)[1])
    assert "taken from the text shards" in caplog.text
    assert "(model.pt's own record: {'model': " in caplog.text


def write_text_shard(path: Path, metadata: dict) -> Path:
    """A one-caption text shard with `metadata` (that of an older embed_text, or another
    tokenizer's)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with ShardWriter(path, text_schema(TINY.d_model, "float16"), metadata) as writer:
        writer.write(("c", "v"), (np.array([3, 1]), np.zeros((2, TINY.d_model))), (2,))
    return path


SHARD_SETTINGS = {"max_tokens": TEXT.max_tokens, "dtype": TEXT.dtype}


def test_text_shards_of_another_tokenizer_are_refused_naming_both(experiment, tmp_path):
    copy = copy_with_checkpoint(experiment, tmp_path, written_before_search)
    other = {"model": "t5-other", "tokenizer_sha256": "f" * 64, "settings": SHARD_SETTINGS}
    shard = write_text_shard(tmp_path / "other/00000.parquet", other)
    trained = torch.load(copy / "model.pt", weights_only=True)["tokenizer"]
    message = (
        rf"model.pt was trained on captions tokenized by text.model {trained['text_model']} "
        rf"\(tokenizer vocabulary sha256 {trained['sha256'][:12]}\), but the --text-shards "
        r"were tokenized by text.model t5-other \(tokenizer vocabulary sha256 ffffffffffff\)"
    )
    with pytest.raises(ValueError, match=message):
        searcher(copy, text_shards=[shard])


def test_text_shards_that_predate_the_tokenizer_record_say_to_embed_the_text_again(
    experiment, tmp_path
):
    copy = copy_with_checkpoint(experiment, tmp_path, written_before_search)
    old = {"model": str(copy.parent / "text_model"), "settings": SHARD_SETTINGS}
    shard = write_text_shard(tmp_path / "old/00000.parquet", old)
    with pytest.raises(ValueError) as error:
        searcher(copy, text_shards=[shard])
    message = str(error.value)
    assert f"the --text-shards (1, e.g. {shard}) predate tokenizer_sha256" in message
    assert "embed the text again (`supportset embed-text`" in message
    assert message.endswith("the model need not be trained again")


def test_a_rejects_file_given_as_a_text_shard_is_refused(experiment, dataset):
    text = dataset / "features/text"
    with pytest.raises(ValueError, match=r"00000.rejects.parquet is not a text shard .*pass the "
                       rf"shards alone, {text}/\?\?\?\?\?.parquet"):  # fmt: skip
        searcher(experiment, text_shards=[text / "00000.parquet", text / "00000.rejects.parquet"])


def test_search_takes_text_shards_on_the_command_line(experiment, tmp_path, capsys):
    copy = copy_with_checkpoint(experiment, tmp_path, written_before_search)
    arguments = ["search", "--experiment", str(copy), "--json", "a red square"]
    assert main(arguments) == 1
    assert "--text-shards" in capsys.readouterr().err
    text = [str(path) for path in shards(copy.parent)[1]]
    assert main([*arguments, "--text-shards", *text]) == 0
    with_shards = json.loads(capsys.readouterr().out)
    assert main(["search", "--experiment", str(experiment), "--json", "a red square"]) == 0
    with_record = json.loads(capsys.readouterr().out)
    scores = [hit.pop("score") for hit in with_shards], [hit.pop("score") for hit in with_record]
    assert with_shards == with_record
    np.testing.assert_allclose(*scores, rtol=0, atol=1e-6)


def test_a_t5_of_another_width_than_the_models_text_input_is_refused(dataset, tmp_path):
    folder = write_experiment(dataset, "frozen")
    wider = dataclasses.replace(TINY, d_model=24)
    build_from_manifest(dataset / "manifest/captions.parquet", wider, tmp_path / "wide")
    with pytest.raises(ValueError, match=r"wide gives 24-d states, the model reads 16-d ones"):
        searcher(folder, text_model=str(tmp_path / "wide"))


def test_the_exported_seconds_come_from_the_option_when_the_model_does_not_record_them(
    experiment, tmp_path
):
    copy = copy_with_checkpoint(experiment, tmp_path, lambda c: c.update(provenance=None))
    with pytest.raises(
        ValueError, match=r"records no training.max_video_seconds: pass .* --max-video-seconds"
    ):
        searcher(copy)
    assert searcher(copy, max_video_seconds=2).steps == 2
    assert searcher(experiment).steps == MAX_VIDEO_SECONDS


def test_an_index_of_other_videos_is_refused(experiment, tmp_path):
    copy = copy_with_checkpoint(experiment, tmp_path, lambda c: None)
    videos = copy / "embeddings/test_videos.parquet"
    ids, vectors = read_video_embeddings(videos)
    write_video_embeddings(videos, ids[:-1], vectors[:-1])
    with pytest.raises(ValueError, match=r"holds 10 16-d vectors, but .* lists 9 videos"):
        searcher(copy)


def test_an_empty_query_or_none_at_all_is_refused(experiment, tmp_path, capsys):
    with pytest.raises(ValueError, match="every query must hold some text"):
        searcher(experiment).search(["a red square", "  "], 3)
    (tmp_path / "none.txt").write_text("\n\n")
    arguments = ["search", "--experiment", str(experiment), "--queries", str(tmp_path / "none.txt")]
    assert main(arguments) == 1
    assert "give at least one query" in capsys.readouterr().err


def test_search_settings_must_be_of_the_index_kind(experiment, capsys):
    arguments = ["search", "--experiment", str(experiment), "a red square", "--settings"]
    assert main([*arguments, '{"index": "flat"}']) == 0
    capsys.readouterr()
    assert main([*arguments, '{"index": "hnsw", "hnsw_ef_search": 512}']) == 1
    assert "test.faiss is a flat index, the settings ask for hnsw" in capsys.readouterr().err


def test_search_settings_without_a_kind_are_for_the_index_files(experiment, tmp_path, capsys):
    copy = copy_with_checkpoint(experiment, tmp_path, lambda c: None)
    assert main(["index", "--videos", str(copy / "embeddings/test_videos.parquet"),
                 "--settings", '{"index": "hnsw", "hnsw_ef_search": 16}',
                 "--out", str(copy / "index/test.faiss")]) == 0  # fmt: skip
    assert searcher(copy).index.hnsw.efSearch == 16
    assert searcher(copy, settings={"hnsw_ef_search": 512}).index.hnsw.efSearch == 512
    for folder in (copy, experiment):  # an HNSW index and the flat one
        arguments = ["search", "--experiment", str(folder), "a red square", "--settings"]
        assert main([*arguments, '{"hnsw_ef_search": 512}']) == 0
        assert "query: 'a red square'" in capsys.readouterr().out
