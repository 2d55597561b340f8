"""The action-recognition linear probe (Table 11) and its table, trained for real on small
synthetic features: a few epochs through `ProbeConfig`, on the CPU."""

from __future__ import annotations

import csv
import dataclasses
import json
import logging

import numpy as np
import pytest
import torch

from supportset.actions.probe import (
    ProbeConfig,
    ProbeData,
    average_pool,
    encode_labels,
    head_pool,
    probe_fold,
    read_fold,
    train_probe,
    write_probe_json,
)
from supportset.actions.table import action_table, write_action_table
from supportset.data.manifest import write_manifest
from supportset.features.bank import FeatureBank, pad_batch
from supportset.features.store import write_visual_shard
from supportset.model.checkpoint import save_checkpoint
from supportset.model.retrieval_model import ModelConfig, SupportSetModel

CPU = torch.device("cpu")
FAST = ProbeConfig(lr=0.05, epochs=30, milestones=(20, 25), batch_size=32)
SIZES = {"train": 20, "val": 5, "test": 10}  # videos per class and split


def clusters(rng, classes: int, dim: int, spread: float, sizes: dict = SIZES) -> ProbeData:
    """Gaussian clusters, one per class around 3 e_k, with `spread` noise; `sizes` videos
    per class and split."""
    features, labels = {}, {}
    for split, size in sizes.items():
        labels[split] = np.repeat(np.arange(classes), size)
        centres = 3.0 * np.eye(classes, dim)[labels[split]]
        features[split] = (centres + spread * rng.normal(size=centres.shape)).astype(np.float32)
    return ProbeData(features, labels, [f"class {k}" for k in range(classes)])


def test_separable_classes_are_learned() -> None:
    sizes = {"train": 20, "val": 40, "test": 40}
    data = clusters(np.random.default_rng(0), classes=3, dim=8, spread=0.3, sizes=sizes)
    fit = train_probe(data, FAST, CPU)
    assert fit.test_top1 >= 98.0 and fit.val_top1 == 100.0


def test_labels_unrelated_to_the_features_stay_near_chance() -> None:
    rng = np.random.default_rng(1)
    sizes = {"train": 400, "val": 200, "test": 1200}
    data = ProbeData(
        {split: rng.normal(size=(n, 16)).astype(np.float32) for split, n in sizes.items()},
        {split: rng.integers(0, 4, n) for split, n in sizes.items()},
        ["a", "b", "c", "d"],
    )
    fit = train_probe(data, dataclasses.replace(FAST, batch_size=100), CPU)
    assert abs(fit.test_top1 - 25.0) < 6.0  # 1,200 draws: one standard deviation is 1.25


def test_early_stopping_never_reads_the_test_split() -> None:
    data = clusters(np.random.default_rng(2), classes=4, dim=8, spread=1.5)
    config = dataclasses.replace(FAST, lr=0.005, patience=8)
    fit = train_probe(data, config, CPU)
    poisoned = dataclasses.replace(
        data,
        features={**data.features, "test": -data.features["test"]},
        labels={**data.labels, "test": (data.labels["test"] + 1) % 4},
    )
    fit_poisoned = train_probe(poisoned, config, CPU)
    assert fit.best_epoch > 1  # the kept epoch is a real choice
    assert (fit_poisoned.best_epoch, fit_poisoned.epochs_run, fit_poisoned.val_top1) == (
        fit.best_epoch, fit.epochs_run, fit.val_top1,
    )  # fmt: skip
    assert fit_poisoned.history == fit.history
    assert fit_poisoned.test_top1 != fit.test_top1


def test_learning_rate_drops_by_ten_after_each_milestone() -> None:
    data = clusters(np.random.default_rng(3), classes=2, dim=4, spread=0.5)
    config = dataclasses.replace(FAST, lr=0.01, epochs=7, milestones=(2, 5))
    fit = train_probe(data, config, CPU)
    expected = [0.01, 0.01, 0.001, 0.001, 0.001, 0.0001, 0.0001]
    assert [epoch["lr"] for epoch in fit.history] == pytest.approx(expected)
    assert [epoch["epoch"] for epoch in fit.history] == list(range(1, 8))


def test_a_seed_fixes_the_fit_and_another_seed_changes_it() -> None:
    data = clusters(np.random.default_rng(4), classes=3, dim=8, spread=1.0)
    first, again = train_probe(data, FAST, CPU), train_probe(data, FAST, CPU)
    other = train_probe(data, dataclasses.replace(FAST, seed=1), CPU)
    assert first == again
    assert [e["loss"] for e in other.history] != [e["loss"] for e in first.history]


def test_patience_stops_after_epochs_without_a_better_val_top1() -> None:
    data = clusters(np.random.default_rng(5), classes=3, dim=8, spread=1.0)
    frozen = dataclasses.replace(FAST, lr=0.0, epochs=20)  # val top-1 never changes
    stopped = train_probe(data, dataclasses.replace(frozen, patience=3), CPU)
    assert (stopped.best_epoch, stopped.epochs_run) == (1, 4)
    whole = train_probe(data, frozen, CPU)
    assert (whole.best_epoch, whole.epochs_run) == (1, 20)  # the earliest of equal epochs


def test_average_pool_is_the_mean_of_the_first_steps() -> None:
    rng = np.random.default_rng(6)
    sequences = {f"v{n}": (1e4 + rng.normal(size=(n, 3))).astype(np.float32) for n in range(1, 7)}
    pooled = average_pool(sequences, ["v6", "v1", "v4"], steps=4)
    expected = [
        [sum(float(x) for x in sequences[v][:4, d]) / min(n, 4) for d in range(3)]
        for v, n in (("v6", 6), ("v1", 1), ("v4", 4))
    ]
    assert pooled.dtype == np.float32 and pooled.shape == (3, 3)
    np.testing.assert_allclose(pooled, expected, rtol=1e-7)


def tiny_model(video_dim: int = 8, **settings) -> SupportSetModel:
    """A small model with a frozen text side, its weights drawn from seed 0."""
    config = ModelConfig(dim=16, heads=2, ffn_dim=32, layers=1, text_encoder="frozen", **settings)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return SupportSetModel(config, video_dim, 6)


def test_head_pool_is_embed_videos_on_the_same_padded_input() -> None:
    rng = np.random.default_rng(7)
    ids = [f"v{i}" for i in range(300)]  # more than one EVAL_BATCH
    sequences = {v: rng.normal(size=(int(rng.integers(1, 9)), 8)).astype(np.float32) for v in ids}
    model = tiny_model(dropout=0.3).train()  # head_pool must switch dropout off
    pooled = head_pool(model, sequences, ids, steps=5, device=CPU)
    model.eval()
    with torch.no_grad():
        expected = model.embed_videos(*pad_batch([sequences[v] for v in ids], 5)).numpy()
    assert pooled.shape == (300, 16)
    np.testing.assert_allclose(pooled, expected, atol=1e-5)


def test_classes_are_sorted_and_each_needs_a_training_video() -> None:
    classes, labels = encode_labels(
        {"train": ["run", "jump", "run"], "val": ["jump"], "test": ["run", "jump"]}
    )
    assert classes == ["jump", "run"]
    assert {split: list(values) for split, values in labels.items()} == {
        "train": [1, 0, 1], "val": [0], "test": [1, 0],
    }  # fmt: skip
    with pytest.raises(ValueError, match="class\\(es\\) swim of the test split have no training"):
        encode_labels({"train": ["run"], "val": ["run"], "test": ["swim"]})


# probe_fold: manifests and shards on disk ------------------------------------------------

CLASSES = ("appears", "grows", "turns")
LAYOUT = {"appearance": [0, 4], "motion": [4, 8]}


def write_fold(folder, missing: str = "") -> list:
    """A fold manifest of 3 classes (SIZES videos each) and a visual shard of (T, 8)
    features whose every step is near its class's corner; `missing` has no features."""
    rng = np.random.default_rng(8)
    videos, captions, features = [], [], {}
    for split, size in SIZES.items():
        for k, name in enumerate(CLASSES):
            for i in range(size):
                video_id = f"{split}_{k}_{i}"
                videos.append({"video_id": video_id, "path": f"{video_id}.mp4", "split": split})
                captions.append(
                    {"caption_id": video_id, "video_id": video_id, "text": name, "split": split}
                )
                centre = 2.0 * (np.eye(4)[k] + np.eye(4)[k + 1])
                steps = np.tile(centre, 2) + rng.normal(size=(int(rng.integers(2, 7)), 8))
                features[video_id] = steps.astype(np.float32)
    write_manifest(videos, captions, folder)
    features.pop(missing, None)
    ids = list(features)
    times = [np.arange(len(features[v]), dtype=np.float32) for v in ids]
    metadata = {"settings": {"fps": 1.0}, "dim": 8, "layout": LAYOUT}
    shard = folder / "visual.parquet"
    write_visual_shard(shard, ids, times, [features[v] for v in ids], 8, "float32", metadata)
    return [shard]


def test_probe_fold_with_average_pooling(tmp_path, caplog) -> None:
    shards = write_fold(tmp_path, missing="test_1_3")
    with caplog.at_level(logging.WARNING):
        result = probe_fold(
            tmp_path / "videos.parquet", tmp_path / "captions.parquet", shards, None, FAST, CPU
        )
    assert "1 video(s)" in caplog.text and "test_1_3" in caplog.text
    assert result["top1"] == 100.0 and result["val_top1"] == 100.0
    expected = {
        "pooling": "average", "model": None, "dim": 8, "chance": 100 / 3, "n_train": 60,
        "n_val": 15, "n_test": 29, "classes": 3, "missing": ["test_1_3"],
        "settings": {**dataclasses.asdict(FAST), "milestones": (20, 25)},
    }  # fmt: skip
    assert {key: result[key] for key in expected} == expected
    assert 1 <= result["best_epoch"] <= result["epochs_run"] == FAST.epochs
    write_probe_json(result, tmp_path / "out" / "fold1.json")
    saved = json.loads((tmp_path / "out" / "fold1.json").read_text())
    assert saved == {**result, "settings": {**result["settings"], "milestones": [20, 25]}}


def test_probe_fold_with_the_head_pools_the_models_part_of_the_features(tmp_path) -> None:
    shards = write_fold(tmp_path)
    model = tiny_model(video_dim=4, dropout=0.0, visual_features="motion")
    save_checkpoint(tmp_path / "model.pt", model.state_dict(), model, best={})
    config = dataclasses.replace(FAST, max_video_seconds=3)
    result = probe_fold(
        tmp_path / "videos.parquet", tmp_path / "captions.parquet", shards,
        tmp_path / "model.pt", config, CPU,
    )  # fmt: skip
    assert (result["pooling"], result["dim"], result["model"]) == (
        "head", 16, str(tmp_path / "model.pt"),
    )  # fmt: skip
    motion = FeatureBank.load(shards, []).visual_part("motion").videos
    fold = read_fold(tmp_path / "videos.parquet", tmp_path / "captions.parquet")
    classes, labels = encode_labels({s: [name for _, name in rows] for s, rows in fold.items()})
    pooled = {s: head_pool(model, motion, [v for v, _ in rows], 3, CPU) for s, rows in fold.items()}
    fit = train_probe(ProbeData(pooled, labels, classes), config, CPU)
    assert (result["top1"], result["best_epoch"]) == (fit.test_top1, fit.best_epoch)


def test_a_model_of_other_features_is_refused(tmp_path) -> None:
    shards = write_fold(tmp_path)
    model = tiny_model(video_dim=6)
    save_checkpoint(tmp_path / "model.pt", model.state_dict(), model, best={})
    with pytest.raises(ValueError, match=r"takes 6-dim visual features .*'both'.*give 8"):
        probe_fold(
            tmp_path / "videos.parquet", tmp_path / "captions.parquet", shards,
            tmp_path / "model.pt", FAST, CPU,
        )  # fmt: skip


def test_a_manifest_of_several_captions_per_video_is_not_a_fold(tmp_path) -> None:
    video = {"video_id": "a", "path": "a.mp4", "split": "train"}
    captions = [
        {"caption_id": f"a_{k}", "video_id": "a", "text": f"text {k}", "split": "train"}
        for k in range(2)
    ]
    write_manifest([video], captions, tmp_path)
    with pytest.raises(ValueError, match="video a has 2 captions, not one class name"):
        read_fold(tmp_path / "videos.parquet", tmp_path / "captions.parquet")


# the table --------------------------------------------------------------------------------


def folds(pooling: str, dim: int, classes: int, top1s: list[float]) -> list[dict]:
    return [{"pooling": pooling, "dim": dim, "top1": t, "chance": 100 / classes} for t in top1s]


def test_action_table_means_the_folds_per_row_and_dataset(tmp_path) -> None:
    rows = [
        ("Average pooling", {"HMDB-51": folds("average", 2560, 51, [50.0, 52.0, 57.0]),
                             "UCF-101": folds("average", 2560, 101, [70.0, 71.0, 72.0])}),
        ("Transformer pooling head", {"HMDB-51": folds("head", 1024, 51, [61.24, 60.4, 62.0]),
                                      "UCF-101": folds("head", 1024, 101, [89.0, 90.0, 91.5])}),
    ]  # fmt: skip
    references = [("Ours (transformer pooling)", {"dim": 1024, "HMDB-51": 61.2, "UCF-101": None})]
    table = action_table(rows, references)
    keys = ("row", "source", "dim", "HMDB-51", "UCF-101", "HMDB-51 folds", "UCF-101 folds")
    expected = [
        ("Ours (transformer pooling)", "paper", 1024, 61.2, None, None, None),
        ("Average pooling", "this run", 2560, 53.0, 71.0, "50.0 / 52.0 / 57.0",
         "70.0 / 71.0 / 72.0"),
        ("Transformer pooling head", "this run", 1024, 61.2, 90.2, "61.2 / 60.4 / 62.0",
         "89.0 / 90.0 / 91.5"),
        ("Chance", "chance", None, 2.0, 1.0, None, None),
    ]  # fmt: skip
    assert table == [dict(zip(keys, values, strict=True)) for values in expected]
    write_action_table(table, tmp_path / "t.csv", tmp_path / "t.md", "A note.")
    with (tmp_path / "t.csv").open() as handle:
        read = list(csv.DictReader(handle))
    assert list(read[0]) == list(keys)
    assert read[0] == {
        "row": "Ours (transformer pooling)", "source": "paper", "dim": "1024",
        "HMDB-51": "61.2", "UCF-101": "", "HMDB-51 folds": "", "UCF-101 folds": "",
    }  # fmt: skip
    markdown = (tmp_path / "t.md").read_text().splitlines()
    assert markdown[1] == "|---|---|---:|---:|---:|---|---|"
    assert markdown[3] == (
        "| Average pooling | this run | 2560 | 53.0 | 71.0 | 50.0 / 52.0 / 57.0 "
        "| 70.0 / 71.0 / 72.0 |"
    )
    assert markdown[-1] == "A note."


def test_action_table_refuses_rows_of_other_datasets_unknown_columns_and_mixed_widths() -> None:
    with pytest.raises(ValueError, match="do not have the datasets"):
        action_table([("A", {"X": folds("head", 8, 3, [1.0])}), ("B", {"Y": []})])
    with pytest.raises(
        ValueError, match="reference row 'x' names unknown column\\(s\\) \\['UCF'\\]"
    ):
        action_table([("A", {"HMDB-51": folds("head", 8, 3, [1.0])})], [("x", {"UCF": 1.0})])
    mixed = {"H": folds("head", 8, 3, [1.0]), "U": folds("head", 16, 3, [1.0])}
    with pytest.raises(ValueError, match="'A': the folds' features are"):
        action_table([("A", mixed)])


def test_probe_config_takes_yaml_lists_and_refuses_empty_schedules() -> None:
    assert ProbeConfig(epochs=500, milestones=[200, 400]).milestones == (200, 400)
    with pytest.raises(ValueError, match=r"probe epochs \(0\) and batch_size \(256\)"):
        ProbeConfig(epochs=0)
    with pytest.raises(ValueError, match=r"patience \(-1\) at least 0"):
        ProbeConfig(patience=-1)


def test_of_epochs_with_equal_val_top1_the_one_of_lowest_val_loss_is_kept() -> None:
    """A small val split is all right long before training is done: among the epochs at
    the best val top-1 the kept one has the lowest val cross-entropy, not the first."""
    data = clusters(np.random.default_rng(7), classes=3, dim=8, spread=0.2)
    fit = train_probe(data, dataclasses.replace(FAST, lr=0.01, epochs=30), CPU)
    best = [e for e in fit.history if e["val_top1"] == fit.val_top1]
    assert len(best) > 1 and fit.best_epoch != best[0]["epoch"]
    assert fit.best_epoch == min(best, key=lambda e: e["val_loss"])["epoch"]
