"""The visual stage's rejects report: rates per split, reasons grouped without their video."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from supportset.cli import main
from supportset.data.manifest import write_videos
from supportset.features.rejects import REPORT_COLUMNS, reason_group, write_rejects_report
from supportset.features.store import write_rejects
from tests.workflow_runs import REPO


def videos(count: int, split: str, start: int = 0) -> list[dict]:
    return [
        {"video_id": f"v{i}", "path": f"/data/videos/v{i}.mp4", "split": split}
        for i in range(start, start + count)
    ]


@pytest.fixture
def dataset(tmp_path: Path) -> tuple[Path, list[Path]]:
    """8 train and 2 val videos; shard 0 rejects v1 (missing) and v8 (val, stalled),
    shard 1 rejects v3 (missing) and v5 (a worker's error), shard 2 none."""
    write_videos(videos(8, "train") + videos(2, "val", start=8), tmp_path)
    tables = [tmp_path / f"0000{shard}.rejects.parquet" for shard in range(3)]
    write_rejects(
        tables[0],
        "video_id",
        [
            ("v1", "/data/videos/v1.mp4: no such file"),
            ("v8", "/data/videos/v8.mp4: decoding stalled for 120 s (timeout), worker killed"),
        ],
    )
    write_rejects(
        tables[1],
        "video_id",
        [("v3", "/data/videos/v3.mp4: no such file"), ("v5", "v5.mp4: ValueError: bad shape")],
    )
    write_rejects(tables[2], "video_id", [])
    return tmp_path / "videos.parquet", tables


@pytest.mark.parametrize(
    ("reason", "group"),
    [
        ("/d/v1.mp4: no such file", "no such file"),
        ("v1.mp4: ZeroDivisionError: division by zero", "ZeroDivisionError"),
        ("/d/v1.mp4: decoding failed at frame 17: Invalid data", "decoding failed at frame #"),
        ("/d/v1.mp4: decoder process died (signal 11)", "decoder process died (signal #)"),
        ("/d/v1.mp4: no frame at or after 0.5 s", "no frame at or after # s"),
        ("", "(no reason given)"),
    ],
)
def test_a_reason_group_leaves_out_the_video(reason: str, group: str):
    assert reason_group(reason, "/d/v1.mp4") == group


def test_report_counts_rates_per_split_and_reason_with_an_example(dataset, tmp_path: Path):
    videos_path, tables = dataset
    out = tmp_path / "report/visual_rejects.csv"
    write_rejects_report(videos_path, tables, out)
    with open(out, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == REPORT_COLUMNS
    table = {(row["split"], row["reason"]): row for row in rows}
    assert [(row["split"], row["reason"]) for row in rows] == [
        ("all", "all"),
        ("all", "no such file"),
        ("all", "ValueError"),
        ("all", "decoding stalled for # s (timeout), worker killed"),
        ("train", "all"),
        ("train", "no such file"),
        ("train", "ValueError"),
        ("val", "all"),
        ("val", "decoding stalled for # s (timeout), worker killed"),
    ]
    assert table["all", "all"] | {"listed": "10", "rejected": "4"} == table["all", "all"]
    assert float(table["all", "all"]["rate_percent"]) == 40.0
    assert float(table["train", "all"]["rate_percent"]) == 37.5  # 3 of 8
    assert float(table["val", "all"]["rate_percent"]) == 50.0
    missing = table["all", "no such file"]
    assert missing["rejected"] == "2" and missing["example_video_id"] == "v1"
    assert missing["example_reason"] == "/data/videos/v1.mp4: no such file"
    markdown = out.with_suffix(".md").read_text()
    assert "| train | 8 | 3 | 37.5 |" in markdown
    assert "| no such file | 2 | 20.0 | v1: /data/videos/v1.mp4: no such file |" in markdown


def test_cli_writes_the_report_and_prints_it(dataset, tmp_path: Path, capsys):
    videos_path, tables = dataset
    out = tmp_path / "visual_rejects.csv"
    arguments = ["rejects-report", "--videos", str(videos_path), "--out", str(out)]
    assert main([*arguments, "--rejects", *map(str, tables)]) == 0
    assert out.exists() and "| all | 10 | 4 | 40.0 |" in capsys.readouterr().out


def test_a_dataset_without_rejects_says_so(dataset, tmp_path: Path):
    videos_path, tables = dataset
    rows = write_rejects_report(videos_path, tables[2:], tmp_path / "out.csv")
    assert [(row["split"], row["rejected"]) for row in rows] == [
        ("all", 0),
        ("train", 0),
        ("val", 0),
    ]
    assert (tmp_path / "out.md").read_text().endswith("\nNo video was rejected.\n")


def test_a_video_the_manifest_does_not_list_is_an_error_naming_it(dataset, tmp_path: Path):
    videos_path, tables = dataset
    stray = tmp_path / "stray.rejects.parquet"
    write_rejects(stray, "video_id", [("elsewhere", "x.mp4: no such file")])
    with pytest.raises(ValueError, match=r"stray.rejects.parquet: video 'elsewhere'"):
        write_rejects_report(videos_path, [*tables, stray], tmp_path / "out.csv")


def test_a_video_rejected_twice_is_an_error_naming_the_tables(dataset, tmp_path: Path):
    videos_path, tables = dataset
    again = tmp_path / "again.rejects.parquet"
    write_rejects(again, "video_id", [("v1", "/data/videos/v1.mp4: no such file")])
    with pytest.raises(ValueError, match=r"'v1' is rejected more than once: in .*00000.*again"):
        write_rejects_report(videos_path, [*tables, again], tmp_path / "out.csv")


def test_the_data_contracts_name_every_column_of_the_report():
    text = (REPO / "docs/data-contracts.md").read_text()
    section = text.split("## Visual rejects report", 1)[1].split("\n## ", 1)[0]
    assert [column for column in REPORT_COLUMNS if column not in section] == []
