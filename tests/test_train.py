import csv
import logging
import re
import traceback
from pathlib import Path

import numpy as np
import pytest
import torch

from supportset.features.bank import FeatureBank, SplitData, clip_split, pad_batch
from supportset.features.store import ShardWriter, text_schema, visual_schema
from supportset.model.checkpoint import load_model, save_checkpoint
from supportset.model.retrieval_model import ModelConfig, SupportSetModel
from supportset.train.config import TrainConfig
from supportset.train.loop import validate
from supportset.train.objective import Batch
from supportset.train.plan import epoch_plan
from tests.train_runs import train

MODEL = ModelConfig(
    dim=32,
    heads=2,
    ffn_dim=64,
    layers=1,
    dropout=0.0,
    input_norm="standardize",
    text_encoder="frozen",
)
TRAINING = TrainConfig(batch_size=16, lr=3e-3, epochs=12, max_video_seconds=6, captioning="none")
# what draws at random in training: dropout in the heads (and the T5 decoder's, 0.1), the
# support sets of cross-captioning (subsets of 3), over several epochs
DROPOUT_MODEL = ModelConfig(**{**MODEL.__dict__, "dropout": 0.1})
CROSS_TRAINING = TrainConfig(
    **{**TRAINING.__dict__, "epochs": 3, "captioning": "cross", "support_set_size": 3}
)


def synthetic_bank(num_videos: int = 64, seed: int = 0) -> tuple[FeatureBank, SplitData, SplitData]:
    """Video i shows class i % 8 (a feature pattern, offset by a large constant); its two
    captions carry the same class as a token vector. Retrieval is learnable."""
    rng = np.random.default_rng(seed)
    video_patterns = rng.normal(size=(8, 12))
    token_patterns = rng.normal(size=(8, 10))
    videos, texts, token_ids = {}, {}, {}
    for index in range(num_videos):
        label = index % 8
        steps = rng.integers(2, 8)
        videos[f"v{index}"] = (
            50 + video_patterns[label] + 0.3 * rng.normal(size=(steps, 12))
        ).astype(np.float32)
        for k in range(2):
            length = rng.integers(2, 5)
            texts[f"v{index}_{k}"] = (
                token_patterns[label] + 0.3 * rng.normal(size=(length, 10))
            ).astype(np.float32)
            token_ids[f"v{index}_{k}"] = np.array([3 + label] * (length - 1) + [1])
    bank = FeatureBank(videos, texts, token_ids)

    def split(ids):
        captions = [f"{v}_{k}" for v in ids for k in range(2)]
        return SplitData(
            ids,
            captions,
            [c.split("_")[0] for c in captions],
            {v: [f"{v}_0", f"{v}_1"] for v in ids},
        )

    ids = list(videos)
    return bank, split(ids[:48]), split(ids[48:])


def test_pad_batch_masks_and_truncates():
    batch, valid = pad_batch([np.ones((5, 2), np.float32), np.ones((2, 2), np.float32)], 4)
    assert batch.shape == (2, 4, 2)
    assert valid.tolist() == [[True] * 4, [True, True, False, False]]
    assert batch[1, 2:].abs().sum() == 0


def test_training_learns_and_writes_checkpoint_and_log(tmp_path):
    bank, train_split, val_split = synthetic_bank()
    best = train(
        bank, train_split, val_split, MODEL, TRAINING, tmp_path / "m.pt", tmp_path / "l.csv"
    )
    chance_r1 = 100 / len(val_split.video_ids)
    assert best["t2v_R@1"] > 3 * chance_r1
    model = load_model(tmp_path / "m.pt", torch.device("cpu"))
    assert validate(model, bank, val_split, 6, torch.device("cpu")) == {
        key: best[key] for key in ("t2v_R@1", "t2v_R@5", "t2v_R@10", "rsum")
    }
    assert model.video_norm.mean.mean().item() == pytest.approx(50, abs=1)
    with open(tmp_path / "l.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    val_rows = [row for row in rows if row["kind"] == "val"]
    assert len(val_rows) == TRAINING.epochs
    assert (tmp_path / "train_curves.png").read_bytes().startswith(b"\x89PNG")
    assert max(float(row["rsum"]) for row in val_rows) == pytest.approx(best["rsum"])
    assert all(float(row["loss"]) >= 0 for row in rows if row["kind"] == "train")


def log_without_seconds(path) -> list[str]:
    """train_log.csv's lines without the wall-clock seconds column (the last)."""
    return [line.rsplit(",", 1)[0] for line in path.read_text().splitlines()]


def checkpoint_weights(path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["model"]


def assert_same_weights(first, second) -> None:
    """Two model.pt files hold bit-identical weights."""
    weights = [checkpoint_weights(path) for path in (first, second)]
    assert weights[0].keys() == weights[1].keys()
    different = [name for name in weights[0] if not torch.equal(weights[0][name], weights[1][name])]
    assert not different, f"weights differ: {different}"


def test_training_is_repeatable(tmp_path):
    """Each run in its own folder: in a shared one the second would resume the first's
    finished state and train nothing."""
    bank, train_split, val_split = synthetic_bank()
    short = TrainConfig(**{**TRAINING.__dict__, "epochs": 2})
    for run in range(2):
        (tmp_path / str(run)).mkdir()
        train(bank, train_split, val_split, MODEL, short, tmp_path / f"{run}/m.pt",
              tmp_path / f"{run}/l.csv")  # fmt: skip
    assert log_without_seconds(tmp_path / "0/l.csv") == log_without_seconds(tmp_path / "1/l.csv")
    assert_same_weights(tmp_path / "0/m.pt", tmp_path / "1/m.pt")


def write_bank_shards(folder, bank: FeatureBank) -> FeatureBank:
    """The bank written to two visual shards and one text shard, loaded back lazily."""
    folder.mkdir()
    video_ids = list(bank.videos)
    visual = [folder / "v0.parquet", folder / "v1.h5"]
    for path, ids in zip(visual, (video_ids[:40], video_ids[40:]), strict=True):
        with ShardWriter(path, visual_schema(12, "float32"), {}, rows_per_group=4) as writer:
            for video_id in ids:
                features = bank.videos[video_id]
                writer.write((video_id,), (np.zeros(len(features), np.float32), features))
    with ShardWriter(folder / "t.parquet", text_schema(10, "float32"), {}, 16) as writer:
        for caption_id, states in bank.texts.items():
            ids = bank.token_ids[caption_id]
            writer.write((caption_id, caption_id.split("_")[0]), (ids, states), (len(ids),))
    return FeatureBank.load(visual, [folder / "t.parquet"], cache_mb=1)


def save_tiny_t5(folder):
    import transformers

    config = transformers.T5Config(
        vocab_size=16, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
        decoder_start_token_id=0, pad_token_id=0,
    )  # fmt: skip
    transformers.T5ForConditionalGeneration(config).save_pretrained(folder)
    return str(folder)


def test_reader_workers_change_nothing(tmp_path):
    """Over several epochs, with dropout and cross-captioning drawing at random, the batches
    read from the shards by 2 worker processes (the default) train the same weights as the
    in-memory features read by the main process."""
    t5 = save_tiny_t5(tmp_path / "t5")
    bank, train_split, val_split = synthetic_bank()
    lazy = write_bank_shards(tmp_path / "shards", bank)
    for source, workers in ((bank, 0), (lazy, 2)):
        folder = tmp_path / str(workers)
        folder.mkdir()
        train(source, train_split, val_split, DROPOUT_MODEL, CROSS_TRAINING, folder / "m.pt",
              folder / "l.csv", t5, workers=workers)  # fmt: skip
    assert log_without_seconds(tmp_path / "0/l.csv") == log_without_seconds(tmp_path / "2/l.csv")
    assert_same_weights(tmp_path / "0/m.pt", tmp_path / "2/m.pt")


def test_cross_captioning_is_logged_and_changes_what_is_learned(tmp_path):
    t5 = save_tiny_t5(tmp_path / "t5")
    bank, train_split, val_split = synthetic_bank()
    plain = TrainConfig(**{**TRAINING.__dict__, "epochs": 2})
    cross = TrainConfig(**{**plain.__dict__, "captioning": "cross"})
    for name, config in (("plain", plain), ("cross", cross)):
        (tmp_path / name).mkdir()
        train(bank, train_split, val_split, MODEL, config, tmp_path / name / "m.pt",
              tmp_path / name / "l.csv", text_model=t5)  # fmt: skip
    with open(tmp_path / "cross" / "l.csv", newline="") as handle:
        steps = [row for row in csv.DictReader(handle) if row["kind"] == "train"]
    assert all(float(row["caption"]) > 0 for row in steps)
    plain_weights = torch.load(tmp_path / "plain" / "m.pt", weights_only=True)["model"]
    cross_weights = torch.load(tmp_path / "cross" / "m.pt", weights_only=True)["model"]
    name = "text_head.aggregation_token"  # reached by the captioning loss only via the weights
    assert not torch.equal(plain_weights[name], cross_weights[name])


def test_captioning_without_a_text_model_is_a_clear_error(tmp_path):
    bank, train_split, val_split = synthetic_bank()
    cross = TrainConfig(**{**TRAINING.__dict__, "captioning": "cross"})
    with pytest.raises(ValueError, match="captioning needs the T5 model"):
        train(bank, train_split, val_split, MODEL, cross, tmp_path / "m.pt", tmp_path / "l.csv")


def test_training_can_start_from_a_checkpoint(tmp_path):
    bank, train_split, val_split = synthetic_bank()
    short = TrainConfig(**{**TRAINING.__dict__, "epochs": 1})
    train(bank, train_split, val_split, MODEL, short, tmp_path / "a.pt", tmp_path / "a.csv")
    finetune = TrainConfig(**{**short.__dict__, "init_from": str(tmp_path / "a.pt"), "lr": 1e-9})
    (tmp_path / "b").mkdir()
    train(bank, train_split, val_split, MODEL, finetune, tmp_path / "b/m.pt", tmp_path / "b/l.csv")
    before = torch.load(tmp_path / "a.pt", weights_only=True)["model"]
    after = torch.load(tmp_path / "b/m.pt", weights_only=True)["model"]
    weights = [name for name in before if "running_" not in name and "num_batches" not in name]
    drift = max((before[name] - after[name]).abs().max().item() for name in weights)
    assert drift < 1e-6  # with a vanishing learning rate the weights stay where they started
    assert torch.equal(before["video_norm.mean"], after["video_norm.mean"])
    other = ModelConfig(**{**MODEL.__dict__, "dim": 64})
    with pytest.raises(ValueError, match="init_from"):
        train(bank, train_split, val_split, other, finetune, tmp_path / "c.pt", tmp_path / "c.csv")


def write_not_a_checkpoint(kind: str, folder) -> Path:
    """A file that `training.init_from` or export's model file might wrongly point at."""
    path = folder / f"{kind}.pt"
    bank, _, _ = synthetic_bank()
    model = SupportSetModel(MODEL, bank.video_dim, bank.text_dim)
    if kind == "state_dict":  # the weights alone, without our checkpoint's fields
        torch.save(model.state_dict(), path)
    elif kind == "tensor":
        torch.save(torch.zeros(3), path)
    elif kind == "module":  # a whole pickled module: torch would advise weights_only=False
        torch.save(model, path)
    elif kind == "truncated":  # a real model.pt cut short
        save_checkpoint(folder / "whole.pt", model.state_dict(), model, {"rsum": 0.0})
        path.write_bytes((folder / "whole.pt").read_bytes()[:4000])
    elif kind == "text":
        path.write_text("epoch,step,kind,loss\n")
    elif kind == "empty":
        path.write_bytes(b"")
    return path  # "missing": never written


BAD_CHECKPOINTS = ["state_dict", "tensor", "module", "truncated", "text", "empty", "missing"]


@pytest.mark.parametrize("kind", BAD_CHECKPOINTS)
def test_init_from_anything_but_a_checkpoint_is_one_clear_sentence(tmp_path, kind):
    path = write_not_a_checkpoint(kind, tmp_path)
    bank, train_split, val_split = synthetic_bank()
    config = TrainConfig(**{**TRAINING.__dict__, "epochs": 1, "init_from": str(path)})
    with pytest.raises(ValueError) as raised:
        train(bank, train_split, val_split, MODEL, config, tmp_path / "m.pt", tmp_path / "l.csv")
    message = str(raised.value)
    assert message.startswith(f"training.init_from {path} ") and "\n" not in message
    assert "weights_only" not in "".join(traceback.format_exception(raised.value))  # -v shows it


@pytest.mark.parametrize("kind", BAD_CHECKPOINTS)
def test_exporting_from_anything_but_a_checkpoint_is_one_clear_sentence(tmp_path, kind):
    path = write_not_a_checkpoint(kind, tmp_path)
    with pytest.raises(ValueError) as raised:
        load_model(path, torch.device("cpu"))
    message = str(raised.value)
    assert message.startswith(f"model file {path} ") and "\n" not in message
    assert "weights_only" not in "".join(traceback.format_exception(raised.value))


def test_init_from_a_checkpoint_of_other_feature_dimensions_is_refused(tmp_path):
    bank, train_split, val_split = synthetic_bank()
    model = SupportSetModel(MODEL, bank.video_dim, bank.text_dim)
    save_checkpoint(tmp_path / "a.pt", model.state_dict(), model, {"rsum": 0.0})
    wider = FeatureBank(
        {v: np.concatenate([f, f[:, :1]], axis=1) for v, f in bank.videos.items()},
        bank.texts, bank.token_ids,
    )  # fmt: skip
    config = TrainConfig(**{**TRAINING.__dict__, "epochs": 1, "init_from": str(tmp_path / "a.pt")})
    message = f"training.init_from {tmp_path / 'a.pt'} was trained on 12-dim visual and 10-dim text"
    with pytest.raises(ValueError, match=re.escape(message)):
        train(wider, train_split, val_split, MODEL, config, tmp_path / "m.pt", tmp_path / "l.csv")


def test_finetuned_t5_encoder_is_trained_saved_and_used_for_export(tmp_path):
    import transformers

    t5 = save_tiny_t5(tmp_path / "t5")
    bank, train_split, val_split = synthetic_bank()
    model = ModelConfig(**{**MODEL.__dict__, "text_encoder": "finetune"})
    config = TrainConfig(**{**TRAINING.__dict__, "epochs": 2})
    best = train(
        bank, train_split, val_split, model, config, tmp_path / "m.pt", tmp_path / "l.csv", t5
    )
    trained = load_model(tmp_path / "m.pt", torch.device("cpu"))
    original = transformers.T5EncoderModel.from_pretrained(t5)
    name = "encoder.block.0.layer.0.SelfAttention.q.weight"
    assert not torch.equal(trained.t5_encoder.state_dict()[name], original.state_dict()[name])
    assert validate(trained, bank, val_split, 6, torch.device("cpu"))["rsum"] == best["rsum"]


def test_milnce_training_with_several_captions_per_video(tmp_path):
    t5 = save_tiny_t5(tmp_path / "t5")
    bank, train_split, val_split = synthetic_bank()
    config = TrainConfig(
        **{
            **TRAINING.__dict__,
            "loss": "milnce",
            "captions_per_video": 2,
            "captioning": "cross",
            "epoch_unit": "videos",
        }
    )
    best = train(
        bank, train_split, val_split, MODEL, config, tmp_path / "m.pt", tmp_path / "l.csv", t5
    )
    assert best["t2v_R@1"] > 3 * 100 / len(val_split.video_ids)
    with pytest.raises(ValueError, match=r"needs training\.loss milnce"):
        triplet = TrainConfig(**{**config.__dict__, "loss": "triplet"})
        train(bank, train_split, val_split, MODEL, triplet, tmp_path / "x.pt", tmp_path / "x.csv")


def clip_bank() -> tuple[FeatureBank, SplitData, SplitData]:
    """Narrated videos: each has four 3-s segments showing different classes, and one
    caption per segment carrying that segment's class (HowTo100M-like)."""
    rng = np.random.default_rng(4)
    video_patterns, token_patterns = rng.normal(size=(32, 12)), rng.normal(size=(32, 10))
    videos, texts, token_ids, windows, captions_of_video = {}, {}, {}, {}, {}
    for index in range(64):
        labels = rng.permutation(32)[:4]
        steps = [video_patterns[label] + 0.3 * rng.normal(size=(3, 12)) for label in labels]
        videos[f"v{index}"] = (50 + np.concatenate(steps)).astype(np.float32)
        captions_of_video[f"v{index}"] = []
        for segment, label in enumerate(labels):
            caption = f"v{index}_{segment}"
            texts[caption] = (token_patterns[label] + 0.3 * rng.normal(size=(3, 10))).astype(
                np.float32
            )
            token_ids[caption] = np.array([3 + label, 3 + label, 1])
            windows[caption] = (3.0 * segment, 3.0 * segment + 3.0)
            captions_of_video[f"v{index}"].append(caption)
    bank = FeatureBank(videos, texts, token_ids)

    def split(ids: list[str]) -> SplitData:
        captions = [c for v in ids for c in captions_of_video[v]]
        return SplitData(
            ids,
            captions,
            [c.split("_")[0] for c in captions],
            {v: captions_of_video[v] for v in ids},
            {c: windows[c] for c in captions},
        )

    ids = list(videos)
    return bank, split(ids[:48]), split(ids[48:])


def test_clip_is_the_steps_timed_inside_the_segment():
    bank = FeatureBank({"v": np.arange(10, dtype=np.float32)[:, None]}, {}, {}, fps=2.0)
    assert bank.clip("v", 1.0, 2.5)[:, 0].tolist() == [2.0, 3.0, 4.0]
    assert bank.clip("v", 2.1, 2.2)[:, 0].tolist() == [4.0]  # shorter than a step: nearest
    timed = FeatureBank(bank.videos, {}, {}, timestamps={"v": np.arange(10) * 0.25})
    assert timed.clip("v", 1.0, 1.5)[:, 0].tolist() == [4.0, 5.0]


def test_clip_training_reads_neighbouring_segments_and_their_span():
    bank, train_split, _ = clip_bank()
    config = TrainConfig(
        **{
            **TRAINING.__dict__,
            "clips": True,
            "loss": "milnce",
            "captions_per_video": 2,
            "epoch_unit": "videos",
        }
    )
    keys = epoch_plan(train_split, config, np.random.default_rng(0), 0, 1)
    video_ids, caption_ids, windows, _ = keys[0]
    for position, video_id in enumerate(video_ids):
        first, second = caption_ids[2 * position : 2 * position + 2]
        assert first.split("_")[0] == second.split("_")[0] == video_id
        assert int(second.split("_")[1]) == int(first.split("_")[1]) + 1  # neighbours in time
        assert windows[position] == (
            3.0 * int(first.split("_")[1]),
            3.0 * int(first.split("_")[1]) + 6.0,
        )
    batch = Batch.read(bank, keys[0], 32)
    assert batch.video.shape[1] == 6 and batch.video_valid.all()


def test_clip_training_learns_segment_level_retrieval(tmp_path):
    """Trained on clips, captions find their own segment among all validation clips far
    better than after training on whole videos (the first seconds of each)."""
    bank, train_split, val_split = clip_bank()
    recalls = {}
    for clips in (True, False):
        config = TrainConfig(
            **{
                **TRAINING.__dict__,
                "clips": clips,
                "loss": "milnce",
                "captions_per_video": 2,
                "epoch_unit": "videos",
            }
        )
        folder = tmp_path / str(clips)
        folder.mkdir()
        best = train(bank, train_split, val_split, MODEL, config, folder / "m.pt", folder / "l.csv")
        model = load_model(folder / "m.pt", torch.device("cpu"))
        clip_summary = validate(model, *clip_split(bank, val_split), 6, torch.device("cpu"))
        recalls[clips] = clip_summary["t2v_R@1"]
        if clips:
            assert best["t2v_R@1"] == clip_summary["t2v_R@1"]  # validated on clips
    chance = 100 / len(val_split.caption_ids)
    assert recalls[True] > 10 * chance and recalls[True] > 1.5 * recalls[False]
    whole = SplitData(
        train_split.video_ids, train_split.caption_ids, train_split.caption_video_ids,
        train_split.captions_of_video,
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"training\.clips needs captions with start and end"):
        clip_config = TrainConfig(**{**TRAINING.__dict__, "clips": True})
        train(bank, whole, val_split, MODEL, clip_config, tmp_path / "x.pt", tmp_path / "x.csv")


def train_rows(path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_selection_last_keeps_the_last_epoch_and_trains_without_validation(tmp_path, caplog):
    bank, train_split, _ = synthetic_bank()
    config = TrainConfig(**{**TRAINING.__dict__, "epochs": 3, "selection": "last"})
    with caplog.at_level(logging.INFO):
        kept = train(bank, train_split, None, MODEL, config, tmp_path / "m.pt", tmp_path / "l.csv")
    assert kept == {"epoch": 3}
    assert "epoch 3: loss" in caplog.text and "no validation split" in caplog.text
    rows = train_rows(tmp_path / "l.csv")
    assert [row["rsum"] for row in rows if row["kind"] == "val"] == ["", "", ""]
    assert (tmp_path / "train_curves.png").is_file()
    state = torch.load(tmp_path / "training_state.pt", weights_only=True)
    last = state["objective"]
    for name, value in checkpoint_weights(tmp_path / "m.pt").items():
        torch.testing.assert_close(value, last[f"model.{name}"])
    with pytest.raises(ValueError, match="selection 'val' needs a validation split"):
        train(bank, train_split, None, MODEL, TRAINING, tmp_path / "x.pt", tmp_path / "x.csv")


def test_selection_last_with_a_validation_split_still_keeps_the_last_epoch(tmp_path):
    bank, train_split, val_split = synthetic_bank()
    config = TrainConfig(**{**TRAINING.__dict__, "epochs": 2, "selection": "last"})
    kept = train(bank, train_split, val_split, MODEL, config, tmp_path / "m.pt", tmp_path / "l.csv")
    assert kept["epoch"] == 2
    assert float(train_rows(tmp_path / "l.csv")[-1]["rsum"]) == pytest.approx(kept["rsum"])


def test_an_epoch_visits_every_pair_and_says_how_many_steps(tmp_path, caplog):
    bank, train_split, val_split = synthetic_bank()  # 48 training videos, 2 captions each
    steps = {}
    for unit in ("pairs", "videos"):
        config = TrainConfig(**{**TRAINING.__dict__, "epochs": 1, "epoch_unit": unit})
        with caplog.at_level(logging.INFO):
            train(bank, train_split, val_split, MODEL, config, tmp_path / unit / "m.pt",
                  tmp_path / unit / "l.csv")  # fmt: skip
        steps[unit] = sum(row["kind"] == "train" for row in train_rows(tmp_path / unit / "l.csv"))
    assert steps == {"pairs": 6, "videos": 3}  # 96 pairs or 48 videos in batches of 16
    assert "an epoch visits 96 pairs (training.epoch_unit pairs) in 6 steps of up to 16" in (
        caplog.text
    )


def split_from_manifest(splits: list[str]) -> SplitData:
    """FeatureBank.split of the synthetic bank's videos listed in a manifest (the first 48
    train, the rest val)."""
    bank, train_split, val_split = synthetic_bank()
    ids = [*train_split.video_ids, *val_split.video_ids]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("supportset.features.bank.read_videos", lambda _: videos_listed(ids))
        patch.setattr("supportset.features.bank.read_captions", lambda _: captions_listed(ids))
        return bank.split("videos", "captions", splits)


def test_several_splits_train_together():
    _, train_split, val_split = synthetic_bank()
    both = split_from_manifest(["train", "val"])
    assert both.video_ids == [*train_split.video_ids, *val_split.video_ids]
    assert len(both.caption_ids) == len(train_split.caption_ids) + len(val_split.caption_ids)


def videos_listed(ids: list[str]) -> list[dict]:
    """Manifest rows: the first 48 videos train, the rest val."""
    return [{"video_id": v, "split": "train" if i < 48 else "val"} for i, v in enumerate(ids)]


def captions_listed(ids: list[str]) -> list[dict]:
    splits = {row["video_id"]: row["split"] for row in videos_listed(ids)}
    return [
        {"caption_id": f"{v}_{k}", "video_id": v, "split": splits[v]} for v in ids for k in range(2)
    ]


def test_a_checkpoint_of_an_older_version_loads_with_the_settings_it_was_trained_with(tmp_path):
    """model.pt files written before text_encoder and the chained pre-encoders existed hold
    no such keys; they were trained frozen with mlp / gru."""
    bank, _, _ = synthetic_bank()
    old = ModelConfig(**{**MODEL.__dict__, "video_pre_encoder": "mlp", "text_pre_encoder": "gru"})
    model = SupportSetModel(old, bank.video_dim, bank.text_dim)
    save_checkpoint(tmp_path / "old.pt", model.state_dict(), model, {"rsum": 0.0})
    checkpoint = torch.load(tmp_path / "old.pt", weights_only=True)
    for key in ("text_encoder", "video_pre_encoder", "text_pre_encoder"):
        del checkpoint["model_config"][key]
    torch.save(checkpoint, tmp_path / "old.pt")
    loaded = load_model(tmp_path / "old.pt", torch.device("cpu"))
    assert (loaded.config.video_pre_encoder, loaded.config.text_encoder) == ("mlp", "frozen")


def test_a_misspelt_training_split_is_refused():
    with pytest.raises(ValueError, match=r"split\(s\) trian have no video"):
        split_from_manifest(["train", "trian"])


def test_a_nan_validation_score_still_keeps_an_epoch(tmp_path, monkeypatch):
    bank, train_split, val_split = synthetic_bank()
    nan = {"t2v_R@1": float("nan"), "t2v_R@5": 0.0, "t2v_R@10": 0.0, "rsum": float("nan")}
    monkeypatch.setattr("supportset.train.loop.validate", lambda *args: nan)
    config = TrainConfig(**{**TRAINING.__dict__, "epochs": 2})
    kept = train(bank, train_split, val_split, MODEL, config, tmp_path / "m.pt", tmp_path / "l.csv")
    assert kept["epoch"] == 1
    load_model(tmp_path / "m.pt", torch.device("cpu"))  # weights, not None


def test_an_epoch_that_draws_no_batch_stops_training(tmp_path, monkeypatch):
    bank, train_split, val_split = synthetic_bank()
    plans = iter([epoch_plan(train_split, TRAINING, np.random.default_rng(0), 0, 1)])
    monkeypatch.setattr("supportset.train.loop.epoch_plan", lambda *args: next(plans, []))
    with pytest.raises(ValueError, match="epoch 1 drew no batch of two or more videos"):
        train(bank, train_split, val_split, MODEL, TRAINING, tmp_path / "m.pt", tmp_path / "l.csv")
