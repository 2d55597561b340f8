"""End to end: what the demo DAG shows of its models besides the table (per-query ranks,
the search index, free-text search, the browser and figures, the compact table, the
post-processed rows, provenance and the Snakemake report), on the shared small demo run."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from supportset.provenance import files_sha256
from supportset.retrieval.embeddings import read_caption_embeddings, read_video_embeddings
from supportset.retrieval.metrics import recall_summary
from supportset.table_plan import plan_table
from tests.workflow_runs import small_config, snakemake

pytestmark = pytest.mark.e2e

RUNS = [run.experiment for row in plan_table(small_config(), "demo_table3") for run in row.runs]


def supportset(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "supportset.cli", *args]
    return subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=300)


def test_every_demo_run_has_its_ranks_index_browser_and_figures(demo_run: Path):
    for experiment in RUNS:
        folder = demo_run / "results/demo" / experiment
        for name in ("index/test.faiss", "browser_test.html", "attention_test.png",
                     "retrievals_test.png"):  # fmt: skip
            assert (folder / name).stat().st_size > 0, (experiment, name)
        metrics = json.loads((folder / "metrics_test.json").read_text())
        ranks = pq.read_table(folder / "ranks_test.parquet").to_pylist()
        for direction in ("t2v", "v2t"):
            direction_ranks = [row["rank"] for row in ranks if row["direction"] == direction]
            summary = recall_summary(np.array(direction_ranks))
            for key in ("R@1", "R@5", "MdR", "MnR", "n_queries"):
                assert summary[key] == metrics[direction][key], (experiment, direction, key)


def test_the_demo_prints_a_compact_table_with_this_run_first(demo_run: Path):
    lines = (demo_run / "results/demo_table3.txt").read_text().splitlines()
    assert max(len(line) for line in lines) <= 120
    labels = list(small_config()["tables"]["demo_table3"]["rows"])
    assert lines[2].startswith(labels[0][:20]) and "[" in lines[2]  # R@1 [low-high]
    assert any(line.startswith(labels[0][:20]) and "DSL" in line for line in lines)
    page = (demo_run / "results/demo_table3.html").read_text()
    assert page.index(labels[0]) < page.index("Random Baseline")
    assert page.count("<details class='provenance'>") == len(RUNS) * 3  # raw, DSL, QB-Norm


def test_post_processed_rows_stand_beside_their_raw_row(demo_run: Path):
    with open(demo_run / "results/demo_table3.csv", newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["source"] == "this run"]
    labels = list(small_config()["tables"]["demo_table3"]["rows"])
    expected = [f"{label}{suffix}" for label in labels for suffix in ("", " + DSL", " + QB-Norm")]
    assert [row["row"] for row in rows] == expected
    metrics = json.loads((demo_run / "results/demo/supportset/metrics_test.json").read_text())
    raw = next(row for row in rows if row["row"] == labels[0])
    assert float(raw["T2V_R@1"]) == round(metrics["t2v"]["R@1"], 1)  # raw stays raw
    assert set(metrics["postprocessed"]) == {"dsl", "qbnorm"}


def test_model_and_metrics_carry_the_provenance_of_the_run(demo_run: Path):
    folder = demo_run / "results/demo/supportset"
    checkpoint = torch.load(folder / "model.pt", weights_only=True)
    record = checkpoint["provenance"]
    manifests = [demo_run / "results/demo/manifest" / name
                 for name in ("videos.parquet", "captions.parquet")]  # fmt: skip
    assert record["manifest_sha256"] == files_sha256(manifests)
    assert record["settings"]["model"]["dim"] == 32  # small_config's, after the overrides
    assert record["settings"]["training"]["captioning"] == "cross"
    assert len(record["config_sha256"]) == 64 and record["code_version"].startswith("0.")
    assert checkpoint["text_features"]["model"] == "results/demo/text_model"
    metrics = json.loads((folder / "metrics_test.json").read_text())
    assert metrics["provenance"]["model"] == record
    assert metrics["provenance"]["evaluation"]["settings"]["postprocess"] == ["dsl", "qbnorm"]


@pytest.mark.parametrize("split", ["test", "train"])
def test_search_finds_a_caption_s_video_as_the_exported_embeddings_rank_it(
    demo_run: Path, split: str
):
    """Free text in, videos out: a caption's text is encoded as embed_text and the model
    encoded it, so search returns the top 5 that its exported embedding ranks first, its
    own video among them. The small corpus's test split has 4 videos, so the train split's
    14 (whose index is built on request) are where missing it would be possible."""
    result = snakemake(demo_run, f"results/demo/supportset/index/{split}.faiss")
    assert result.returncode == 0, result.stderr[-3000:]
    embeddings = demo_run / "results/demo/supportset/embeddings"
    video_ids, videos = read_video_embeddings(embeddings / f"{split}_videos.parquet")
    caption_ids, owners, captions = read_caption_embeddings(
        embeddings / f"{split}_captions.parquet"
    )
    scores = captions @ videos.T  # unit vectors: cosine similarities
    top5 = np.argsort(-scores, axis=1, kind="stable")[:, :5]
    found = [i for i in range(len(caption_ids)) if video_ids.index(owners[i]) in top5[i]]
    assert found, "the demo model ranks no training caption's video in its top 5"
    query = found[0]
    manifest = pq.read_table(demo_run / "results/demo/manifest/captions.parquet").to_pylist()
    text = next(row["text"] for row in manifest if row["caption_id"] == caption_ids[query])
    search = supportset(demo_run, "search", "--experiment", "results/demo/supportset",
                        "--split", split, "--top", "5", "--json", text)  # fmt: skip
    assert search.returncode == 0, search.stderr
    hits = json.loads(search.stdout)
    assert [hit["video_id"] for hit in hits] == [video_ids[i] for i in top5[query]]
    assert [hit["score"] for hit in hits] == pytest.approx(scores[query, top5[query]], abs=1e-4)
    assert owners[query] in [hit["video_id"] for hit in hits]
    assert all(Path(demo_run, hit["path"]).exists() and hit["best_second"] >= 0 for hit in hits)


def test_the_report_holds_the_tables_the_browser_and_the_figures(demo_run: Path):
    result = snakemake(demo_run, "--report", "report.html")
    assert result.returncode == 0, result.stderr[-3000:]
    report = (demo_run / "report.html").read_text()
    for name in ("demo_table3.html", "browser_test.html", "attention_test.png",
                 "retrievals_test.png", "train_curves.png"):  # fmt: skip
        assert name in report, name
