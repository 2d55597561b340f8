"""The demo's captioning and action-recognition tables, built by the default target of
the shared small demo run (tests/conftest.py, `demo_run`)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from supportset.captioning.references import read_generated, references_of
from supportset.captioning.scores import METRICS, caption_scores
from supportset.data.manifest import read_videos
from tests.workflow_runs import small_config

pytestmark = pytest.mark.e2e


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def rejected_videos(results: Path) -> list[str]:
    """Videos the demo's extraction rejected (its rejects tables)."""
    tables = sorted((results / "features/visual").glob("*.rejects.parquet"))
    return [v for table in tables for v in pq.read_table(table).column("video_id").to_pylist()]


def test_demo_captioning_scores_each_run_s_captions_of_the_test_videos(demo_run: Path):
    rows = read_rows(demo_run / "results/demo_captioning.csv")
    assert list(rows[0]) == ["row", "source", *METRICS]
    labels = list(small_config()["captioning_tables"]["demo_captioning"]["rows"])
    assert [row["row"] for row in rows] == labels and {r["source"] for r in rows} == {"this run"}
    results = demo_run / "results/demo"
    rejected = set(rejected_videos(results))
    test_videos = [v["video_id"] for v in read_videos(results / "manifest/videos.parquet")
                   if v["split"] == "test" and v["video_id"] not in rejected]  # fmt: skip
    for row, experiment in zip(rows, ("supportset", "identity"), strict=True):
        generated = read_generated(results / experiment / "captions_test.parquet")
        assert list(generated) == test_videos  # one per test video with features, in order
        metrics = json.loads((results / experiment / "caption_metrics_test.json").read_text())
        assert {name: float(row[name]) for name in METRICS} == {
            name: round(metrics[name], 1) for name in METRICS
        }
    # the table's numbers are the COCO tools' on the written captions (Java starts in ~5 s:
    # checked on the last run)
    references = references_of(results / "manifest/captions.parquet", list(generated))
    assert caption_scores(generated, references) == pytest.approx(
        {name: metrics[name] for name in METRICS}
    )
    metadata = pq.read_schema(results / "supportset/captions_test.parquet").metadata
    settings = json.loads(metadata[b"supportset"])["settings"]
    assert settings["beam_size"] == 5 and settings["max_tokens"] == 32  # text.max_tokens


def test_demo_actions_probe_the_events_with_both_poolings_against_chance(demo_run: Path):
    rows = read_rows(demo_run / "results/demo_actions.csv")
    assert [row["row"] for row in rows] == [
        *small_config()["action_tables"]["demo_actions"]["rows"], "Chance",
    ]  # fmt: skip
    assert [row["source"] for row in rows] == ["this run", "this run", "this run", "chance"]
    assert rows[-1]["Demo events"] == "20.0"  # five events
    probes = demo_run / "results/demo/probe"
    average = json.loads((probes / "average/events.json").read_text())
    head = json.loads((probes / "head-demo-supportset/events.json").read_text())
    assert (average["dim"], head["dim"]) == (1024, 32)  # resnet18 + R(2+1)D; the model's d
    assert average["classes"] == head["classes"] == 5
    assert average["settings"]["lr"] == 0.01  # the demo's override of the probe
    fold = read_videos(demo_run / "results/demo/folds/events/videos.parquet")
    tests = {video["video_id"] for video in fold if video["split"] == "test"}
    assert average["n_test"] == len(tests - set(rejected_videos(demo_run / "results/demo")))
    for row, result in zip(rows, (average, head), strict=False):
        assert row["Demo events"] == f"{result['top1']:.1f}"
        assert row["Demo events folds"] == f"{result['top1']:.1f}"
