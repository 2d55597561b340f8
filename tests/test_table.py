"""Comparison tables: layout, sources, rounding, CSV and Markdown files."""

from __future__ import annotations

import csv
import dataclasses
import statistics
from pathlib import Path

import numpy as np
import pytest

from supportset.retrieval.metrics import bootstrap_intervals, recall_summary, write_metrics
from supportset.retrieval.reference import PAPER_NOTES, PAPER_RECALL_AT, PAPER_ROWS, ReferenceRow
from supportset.retrieval.table import (
    TABLE_COLUMNS,
    build_table,
    interval_columns,
    read_metrics,
    run_value_rows,
    std_columns,
    table_columns,
    write_runs,
    write_table,
)
from tests.conftest import REPO

SEED = REPO.parent / "shared/seeds/002_09ed9920da4395ee.txt"

EXPECTED_COLUMNS = (
    "row", "source",
    "T2V_R@1", "T2V_R@5", "T2V_R@10", "T2V_MdR",
    "V2T_R@1", "V2T_R@5", "V2T_R@10", "V2T_MdR",
)  # fmt: skip
PAPER_LABELS = [
    "Random Baseline",
    "JSFusion (Yu et al., 2018)",
    "HT100M (Miech et al., 2019)",
    "JPoSE (Wray et al., 2019)",
    "CE (Liu et al., 2019)",
    "MMT (Gabeur et al., 2020)",
    "Ours",
    "VidTranslate (Korbar et al., 2020) [HowTo100M]",
    "HT100M (Miech et al., 2019) [HowTo100M]",
    "NoiseEstimation (Amrani et al., 2020) [HowTo100M]",
    "UniVL (Luo et al., 2020) [HowTo100M]",
    "AVLnet (Rouditchenko et al., 2020) [HowTo100M]",
    "MMT (Gabeur et al., 2020) [HowTo100M]",
    "Ours-pretrained",
]


def run_metrics(t2v_ranks: list[float], v2t_ranks: list[float]) -> dict:
    return {"t2v": recall_summary(np.array(t2v_ranks)), "v2t": recall_summary(np.array(v2t_ranks))}


RUN_ROWS = {
    "demo": run_metrics([1, 2, 3, 12, 60, 7], [1, 1, 2.5, 8]),
    "demo | ablation": run_metrics([1, 1, 1], [4, 6, 70]),
}


def test_table_columns_are_the_contract() -> None:
    assert TABLE_COLUMNS == EXPECTED_COLUMNS
    assert table_columns(10) == EXPECTED_COLUMNS


def test_paper_rows_come_first_then_this_run() -> None:
    rows = build_table(RUN_ROWS, reference="msrvtt_table3")
    assert [row["row"] for row in rows] == [*PAPER_LABELS, *RUN_ROWS]
    assert [row["source"] for row in rows] == ["paper"] * 14 + ["this run"] * 2
    assert all(tuple(row) == EXPECTED_COLUMNS for row in rows)


def test_paper_numbers_are_copied() -> None:
    rows = {row["row"]: row for row in build_table({}, reference="msrvtt_table3")}
    assert [rows["Ours"][column] for column in EXPECTED_COLUMNS[2:]] == [
        27.4, 56.3, 67.7, 3.0, 26.6, 55.1, 67.5, 3.0,
    ]  # fmt: skip
    vidtranslate = rows["VidTranslate (Korbar et al., 2020) [HowTo100M]"]
    assert [vidtranslate[column] for column in EXPECTED_COLUMNS[2:]] == [
        14.7, None, 52.8, None, None, None, None, None,
    ]  # fmt: skip
    activitynet = {row["row"]: row for row in build_table({}, "activitynet_table5", 50)}
    assert activitynet["CE (Liu et al., 2019)"]["T2V_R@50"] == 91.4
    msvd = {row["row"]: row for row in build_table({}, "msvd_table6")}
    assert msvd["Ours"]["V2T_R@1"] == 27.3


def test_missing_paper_values_are_empty_in_csv_and_a_dash_in_markdown(tmp_path: Path) -> None:
    write_table(tmp_path / "t.csv", build_table({}, reference="vatex_table4"))
    with (tmp_path / "t.csv").open(newline="") as handle:
        ours = next(row for row in csv.DictReader(handle) if row["row"] == "Ours")
    assert (ours["T2V_R@1"], ours["T2V_R@10"], ours["V2T_MdR"]) == ("45.9", "", "")
    assert (
        "| Ours | paper | 45.9 | 82.4 | - | - | - | - | - | - |" in (tmp_path / "t.md").read_text()
    )


def test_bootstrap_intervals_get_their_own_columns(tmp_path: Path) -> None:
    with_ci = {
        label: {
            direction: {**summary, "CI95": bootstrap_intervals(np.array(ranks), 50)}
            for (direction, summary), ranks in zip(
                metrics.items(), ([1, 2, 3, 12, 60, 7], [1, 1, 2.5, 8]), strict=True
            )
        }
        for label, metrics in RUN_ROWS.items()
    }
    rows = build_table(with_ci, reference="msrvtt_table3")
    assert tuple(rows[0]) == EXPECTED_COLUMNS + interval_columns(10)
    assert rows[0]["T2V_R@1_low"] is None
    run = rows[-2]  # "demo", whose ranks the intervals were drawn from
    assert run["T2V_R@1_low"] <= run["T2V_R@1"] <= run["T2V_R@1_high"]
    write_table(tmp_path / "t.csv", rows)
    mixed = {"a": with_ci["demo"], "b": RUN_ROWS["demo"]}
    with pytest.raises(ValueError, match=r"row 'b'.*no CI95"):
        build_table(mixed, reference=None)


def test_run_numbers_are_rounded_to_one_decimal() -> None:
    demo = build_table(RUN_ROWS, reference=None)[0]
    assert demo["T2V_R@1"] == 16.7
    assert demo["T2V_R@5"] == 50.0
    assert demo["T2V_R@10"] == 66.7
    assert demo["T2V_MdR"] == 5.0
    assert demo["V2T_R@1"] == 50.0
    assert demo["V2T_MdR"] == 1.8


def test_recall_at_50_variant() -> None:
    rows = build_table(RUN_ROWS, reference=None, recall_at=50)
    columns = tuple(rows[0])
    assert columns == table_columns(50)
    assert "T2V_R@50" in columns and "V2T_R@50" in columns
    assert "T2V_R@10" not in columns and "V2T_R@10" not in columns
    assert rows[1]["V2T_R@50"] == 66.7


def test_reference_table_must_report_the_same_recall() -> None:
    with pytest.raises(ValueError, match="R@10, not R@50"):
        build_table(RUN_ROWS, reference="msrvtt_table3", recall_at=50)


def test_invalid_requests_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown reference table 'nope'"):
        build_table(RUN_ROWS, reference="nope")
    with pytest.raises(ValueError, match="recall_at"):
        build_table(RUN_ROWS, reference=None, recall_at=20)
    with pytest.raises(ValueError, match=r"row 'partial'.*v2t"):
        build_table({"partial": {"t2v": RUN_ROWS["demo"]["t2v"]}}, reference=None)


@pytest.mark.parametrize("recall_at", [10, 50])
def test_written_table_files(tmp_path: Path, recall_at: int) -> None:
    reference = "msrvtt_table3" if recall_at == 10 else None
    rows = build_table(RUN_ROWS, reference=reference, recall_at=recall_at)
    csv_path = tmp_path / "table3.csv"
    write_table(csv_path, rows)
    with csv_path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames or ()) == table_columns(recall_at)
        written = list(reader)
    assert [row["row"] for row in written] == [row["row"] for row in rows]
    assert [row["source"] for row in written] == [row["source"] for row in rows]
    assert written[-2]["T2V_MdR"] == "5.0"
    markdown = (tmp_path / "table3.md").read_text()
    assert len(markdown.splitlines()) == len(rows) + 2
    assert all(row["row"].replace("|", "\\|") in markdown for row in rows)
    assert sorted(item.name for item in tmp_path.iterdir()) == ["table3.csv", "table3.md"]


def test_write_table_rejects_unknown_layouts(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one row"):
        write_table(tmp_path / "t.csv", [])
    with pytest.raises(ValueError, match="unexpected table columns"):
        write_table(tmp_path / "t.csv", [{"row": "x", "source": "this run"}])
    assert not list(tmp_path.iterdir())


def test_read_metrics_round_trip(tmp_path: Path) -> None:
    write_metrics(tmp_path / "metrics.json", RUN_ROWS["demo"])
    assert read_metrics(tmp_path / "metrics.json") == RUN_ROWS["demo"]


def test_read_metrics_requires_both_directions(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    path.write_text('{"t2v": {"R@1": 1.0}}')
    with pytest.raises(ValueError, match="v2t"):
        read_metrics(path)


def test_reference_rows_are_frozen_quadruples() -> None:
    assert set(PAPER_ROWS) == set(PAPER_RECALL_AT)
    for rows in PAPER_ROWS.values():
        assert all(len(row.t2v) == len(row.v2t) == 4 for row in rows)
    with pytest.raises(dataclasses.FrozenInstanceError):
        PAPER_ROWS["msrvtt_table3"][0].row = "changed"  # type: ignore[misc]
    assert isinstance(PAPER_ROWS["msrvtt_table3"][0], ReferenceRow)


SEED_RANKS = ([1, 2, 3, 12, 60, 7], [2, 2, 9, 1, 1, 4], [1, 30, 3, 3, 2, 5])


def test_a_row_of_several_seeds_holds_their_mean_and_sample_std(tmp_path: Path) -> None:
    seeds = [run_metrics(list(ranks), [1, 1, 2.5, 8]) for ranks in SEED_RANKS]
    rows = build_table({"3 seeds": seeds, "one": RUN_ROWS["demo"]}, reference="vatex_table12")
    assert tuple(rows[0]) == EXPECTED_COLUMNS + std_columns(10)
    three, one = rows[-2], rows[-1]
    r1 = [statistics.mean([float(r == 1) for r in ranks]) * 100 for ranks in SEED_RANKS]
    assert three["T2V_R@1"] == round(statistics.mean(r1), 1)
    assert three["T2V_R@1_std"] == round(statistics.stdev(r1), 1)
    assert three["V2T_R@1_std"] == 0.0  # the same video ranks in every seed
    assert one["T2V_R@1_std"] is None and rows[0]["T2V_R@1_std"] is None
    write_table(tmp_path / "t.csv", rows, "A note.")
    markdown = (tmp_path / "t.md").read_text()
    assert f"| {three['T2V_R@1']:.1f} ± {three['T2V_R@1_std']:.1f} |" in markdown
    assert "_std" not in markdown and markdown.endswith("\nA note.\n")


def test_rows_of_several_seeds_leave_the_bootstrap_columns_empty() -> None:
    with_ci = {
        direction: {**summary, "CI95": bootstrap_intervals(np.array(ranks), 50)}
        for (direction, summary), ranks in zip(
            RUN_ROWS["demo"].items(), ([1, 2, 3, 12, 60, 7], [1, 1, 2.5, 8]), strict=True
        )
    }
    rows = build_table({"one": with_ci, "two": [with_ci, with_ci]}, reference=None)
    assert rows[0]["T2V_R@1_low"] is not None and rows[1]["T2V_R@1_low"] is None
    assert rows[1]["T2V_R@1_std"] == 0.0


def test_the_runs_sidecar_lists_every_run(tmp_path: Path) -> None:
    runs = {
        "3 seeds": {f"vatex/pretrained+seed={seed}": run_metrics(list(ranks), [1, 2])
                    for seed, ranks in enumerate(SEED_RANKS)},
        "one": {"vatex/supportset": RUN_ROWS["demo"]},
    }  # fmt: skip
    write_runs(tmp_path / "t.runs.csv", run_value_rows(runs))
    with (tmp_path / "t.runs.csv").open(newline="") as handle:
        written = list(csv.DictReader(handle))
    assert [(row["row"], row["run"]) for row in written] == [
        ("3 seeds", "vatex/pretrained+seed=0"),
        ("3 seeds", "vatex/pretrained+seed=1"),
        ("3 seeds", "vatex/pretrained+seed=2"),
        ("one", "vatex/supportset"),
    ]
    assert written[1]["T2V_R@1"] == "33.3"


def test_tables_whose_numbers_are_lost_carry_the_paper_s_words() -> None:
    assert set(PAPER_NOTES) <= set(PAPER_ROWS)
    for name in ("msrvtt_table1", "zeroshot_table", "vatex_table12"):
        assert name in PAPER_NOTES
    for part in "abcdef":
        assert PAPER_ROWS[f"msrvtt_table2{part}"] == []  # differences only: no rows
        assert f"msrvtt_table2{part}" in PAPER_NOTES
    table1 = {row.row: row for row in PAPER_ROWS["msrvtt_table1"]}
    assert table1["Cross"].t2v[:2] == (27.2, 55.2) and table1["Hybrid"].t2v[:2] == (26.0, 54.8)
    assert "25.9" in PAPER_NOTES["msrvtt_table1"] and "None" not in table1


@pytest.mark.skipif(not SEED.exists(), reason=f"the paper's text is not at {SEED}")
@pytest.mark.parametrize("name", sorted(PAPER_NOTES))
def test_the_notes_quote_the_paper_word_for_word(name: str) -> None:
    paper = " ".join(SEED.read_text().split())
    quoted = PAPER_NOTES[name].split(': "', 1)[1].rsplit('"', 1)[0]
    for fragment in quoted.split(" ... "):
        assert " ".join(fragment.split()).strip('."') in paper, fragment


def with_postprocessed(metrics: dict, **summaries: dict) -> dict:
    """`metrics` with post-processed summaries (name -> metrics dict), as evaluate writes."""
    return {**metrics, "postprocessed": summaries}


DSL_RUN = run_metrics([1, 1, 1, 12, 60, 7], [1, 1, 1, 8])
QBNORM_RUN = run_metrics([1, 2, 2, 3, 4, 5], [2, 2, 2, 1])


def test_post_processed_rows_follow_their_raw_row_under_their_own_names(tmp_path: Path) -> None:
    runs = {
        label: with_postprocessed(RUN_ROWS[label], qbnorm=QBNORM_RUN, dsl=DSL_RUN)
        for label in ("demo", "demo | ablation")
    }
    rows = build_table(runs, reference="msrvtt_table3", postprocess=("qbnorm", "dsl"))
    assert [row["row"] for row in rows[len(PAPER_LABELS) :]] == [
        "demo", "demo + DSL", "demo + QB-Norm",
        "demo | ablation", "demo | ablation + DSL", "demo | ablation + QB-Norm",
    ]  # fmt: skip
    assert [row["source"] for row in rows[len(PAPER_LABELS) :]] == ["this run"] * 6
    raw_only = build_table(RUN_ROWS, reference="msrvtt_table3")
    assert rows[len(PAPER_LABELS)] == raw_only[len(PAPER_LABELS)]  # the raw row stays as it was
    # post-processings another table asked the evaluation for are not shown here
    assert build_table(runs, reference="msrvtt_table3") == raw_only
    expected = {"dsl": DSL_RUN, "qbnorm": QBNORM_RUN}
    for row, name in zip(rows[len(PAPER_LABELS) + 1 : -3], ("dsl", "qbnorm"), strict=True):
        alone = build_table({row["row"]: expected[name]}, reference=None)[0]
        assert row == alone
    assert rows[len(PAPER_LABELS) + 1]["T2V_R@1"] == 50.0
    write_table(tmp_path / "t.csv", rows)
    assert "| demo + QB-Norm | this run | 16.7 |" in (tmp_path / "t.md").read_text()


def test_post_processed_rows_of_seeds_and_with_intervals() -> None:
    seeds = [
        with_postprocessed(run_metrics(list(ranks), [1, 2]), dsl=run_metrics(list(ranks), [1, 1]))
        for ranks in SEED_RANKS
    ]
    rows = build_table({"3 seeds": seeds}, reference=None, postprocess=("dsl",))
    assert [row["row"] for row in rows] == ["3 seeds", "3 seeds + DSL"]
    assert rows[1]["T2V_R@1"] == rows[0]["T2V_R@1"] and rows[1]["T2V_R@1_std"] is not None
    assert rows[1]["V2T_R@1"] == 100.0 and rows[0]["V2T_R@1"] == 50.0

    def with_ci(ranks: tuple[list[float], list[float]]) -> dict:
        metrics = run_metrics(*ranks)
        for direction, direction_ranks in zip(("t2v", "v2t"), ranks, strict=True):
            metrics[direction]["CI95"] = bootstrap_intervals(np.array(direction_ranks), 50)
        return metrics

    one = with_postprocessed(with_ci(([1, 2, 9], [1, 3])), qbnorm=with_ci(([1, 1, 9], [1, 1])))
    rows = build_table({"one": one}, reference=None, postprocess=("qbnorm",))
    assert tuple(rows[1]) == EXPECTED_COLUMNS + interval_columns(10)
    assert rows[1]["T2V_R@1_low"] <= rows[1]["T2V_R@1"] == 66.7 <= rows[1]["T2V_R@1_high"]


def test_every_run_must_hold_the_post_processing_its_table_shows() -> None:
    seeds = [with_postprocessed(RUN_ROWS["demo"], dsl=DSL_RUN), RUN_ROWS["demo"]]
    lacking = r"row 'mixed': the table shows dsl but the metrics of run\(s\) \[1\]"
    with pytest.raises(ValueError, match=lacking):
        build_table({"mixed": seeds}, reference=None, postprocess=("dsl",))
    with pytest.raises(ValueError, match=r"run\(s\) \['a/y'\] hold no such"):
        run_value_rows({"mixed": {"a/x": seeds[0], "a/y": seeds[1]}}, postprocess=("dsl",))
    with pytest.raises(ValueError, match=r"unknown post-processing\(s\) \['rerank'\]"):
        build_table({"odd": seeds[0]}, None, postprocess=("rerank",))


def test_the_runs_sidecar_lists_post_processed_runs_after_the_raw_ones() -> None:
    runs = {
        "two": {
            f"demo/seed={seed}": with_postprocessed(RUN_ROWS["demo"], dsl=DSL_RUN, qbnorm=DSL_RUN)
            for seed in (0, 1)
        },
        "plain": {"demo/plain": RUN_ROWS["demo | ablation"]},
    }
    runs["plain"] = {"demo/plain": with_postprocessed(RUN_ROWS["demo | ablation"], dsl=DSL_RUN)}
    rows = run_value_rows(runs, postprocess=("dsl",))
    assert [(row["row"], row["run"]) for row in rows] == [
        ("two", "demo/seed=0"), ("two", "demo/seed=1"),
        ("two + DSL", "demo/seed=0"), ("two + DSL", "demo/seed=1"),
        ("plain", "demo/plain"), ("plain + DSL", "demo/plain"),
    ]  # fmt: skip
    assert rows[2]["T2V_R@1"] == 50.0 and rows[0]["T2V_R@1"] == 16.7
