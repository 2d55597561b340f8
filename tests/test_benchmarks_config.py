"""The config and summary of the demo tables over seeds (benchmarks/demo_tables.py),
checked without running the DAG."""

import csv
import importlib
import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from supportset.config import load_schema, section_settings, validate_config
from supportset.table_plan import Run, plan_table
from tests.conftest import REPO

SCHEMA = load_schema(REPO / "workflow/schemas/config.schema.yaml")


@pytest.fixture
def benchmark(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], ModuleType]:
    """Imports a script of benchmarks/ by name, as the scripts import each other (the folder
    is on sys.path during the test only)."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    return importlib.import_module


def planned(config: dict, table: str) -> dict[str, list[str]]:
    """Row label -> the experiments of its runs, of a validated config."""
    return {row.label: [run.experiment for run in row.runs] for row in plan_table(config, table)}


def test_the_config_adds_seeds_to_the_chosen_tables_and_changes_nothing_else(benchmark):
    demo_tables = benchmark("demo_tables")
    config = demo_tables.seeded_config(["demo_table1", "demo_table2b"], 3)
    for name in ("demo_table1", "demo_table2b"):
        assert config["tables"][name].pop("seeds") == [0, 1, 2]
    assert config == benchmark("demo_runs").repo_config()


def test_an_unknown_table_is_refused(benchmark):
    with pytest.raises(ValueError, match="not_a_table"):
        benchmark("demo_tables").seeded_config(["demo_table1", "not_a_table"], 3)


def test_seeded_rows_train_one_model_per_seed_seed_0_being_the_experiment(benchmark):
    demo_tables = benchmark("demo_tables")
    config = validate_config(demo_tables.seeded_config(["demo_table1"], 3), SCHEMA)
    (none, *_, cross) = plan_table(config, "demo_table1")
    assert none.runs == (
        Run("demo", "triplet"), Run("demo", "triplet+seed=1"), Run("demo", "triplet+seed=2"),
    )  # fmt: skip
    assert cross.label == "Cross" and cross.runs[2] == Run("demo", "supportset+seed=2")
    training = section_settings(config, "training", "demo", "triplet+seed=2")
    assert (training["seed"], training["captioning"]) == (2, "none")
    assert planned(config, "demo_table2b") == {  # a table without seeds: one run a row
        "Mean": ["triplet+pooling=mean"],
        "Max": ["triplet+pooling=max"],
        "Transformer": ["triplet"],
    }


def test_the_default_tables_share_runs_27_trainings_in_all(benchmark):
    demo_tables = benchmark("demo_tables")
    written = demo_tables.seeded_config(list(demo_tables.TABLES), 3)
    assert demo_tables.split_of(written, "demo_table1") == "test"  # the schema's default
    config = validate_config(written, SCHEMA)
    runs = {
        run for name in demo_tables.TABLES for row in plan_table(config, name) for run in row.runs
    }
    assert len(runs) == (5 + 2 + 2) * 3  # demo_table3's rows are all in the other tables
    assert planned(config, "demo_table2b")["Transformer"] == planned(config, "demo_table1")["None"]


def test_every_comparison_names_rows_of_its_table(benchmark):
    demo_tables = benchmark("demo_tables")
    config = validate_config(demo_tables.seeded_config(list(demo_tables.TABLES), 3), SCHEMA)
    for name, pairs in demo_tables.COMPARISONS.items():
        labels = planned(config, name)
        assert all(row in labels and baseline in labels for row, baseline in pairs), name


def write_results(results: Path, name: str, t2v: dict[str, dict[str, float]]) -> None:
    """A table's Markdown and runs.csv as the table rule writes them (T2V R@1 only filled)."""
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{name}.md").write_text(f"| row | source |\n|---|---|\n| {name} | this run |\n")
    with open(results / f"{name}.runs.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["row", "run", "T2V_R@1", "V2T_R@1"])
        for label, runs in t2v.items():
            writer.writerows([label, run, f"{value:.1f}", "9.9"] for run, value in runs.items())


def seeded(label: str, experiment: str, values: tuple[float, ...]) -> dict[str, dict[str, float]]:
    names = [experiment] + [f"{experiment}+seed={seed}" for seed in range(1, len(values))]
    return {label: {f"demo/{name}": value for name, value in zip(names, values, strict=True)}}


def test_the_summary_prints_tables_runs_comparisons_and_chance(benchmark, tmp_path):
    demo_tables = benchmark("demo_tables")
    table1 = {**seeded("None", "triplet", (10.0, 12.0, 14.0))}
    for variant, experiment in (("Identity", "identity"), ("Full", "full"), ("Hybrid", "hybrid")):
        table1 |= seeded(variant, experiment, (11.0, 12.0, 13.0))
    table1 |= seeded("Cross", "supportset", (14.0, 16.0, 18.0))
    write_results(tmp_path, "demo_table1", table1)
    write_results(tmp_path, "demo_table3", seeded("Triplet", "triplet", (10.0, 12.0, 14.0)))
    (tmp_path / "demo/triplet").mkdir(parents=True)
    (tmp_path / "demo/triplet/metrics_test.json").write_text(
        json.dumps({"t2v": {"n_queries": 240}, "v2t": {"n_queries": 48}})
    )
    text = demo_tables.summary(tmp_path, ["demo_table1", "demo_table3"], "test")
    assert "### demo_table1\n\n| row | source |" in text
    assert "- None: demo/triplet 10.0, demo/triplet+seed=1 12.0, demo/triplet+seed=2 14.0" in text
    assert "Cross minus None, mean T2V R@1: +4.0 points, +2.0 pooled std (2.0)." in text
    # sqrt((2 * 4 + 2 * 1) / 4) = 1.58
    assert "Identity minus None, mean T2V R@1: +0.0 points, +0.0 pooled std (1.6)." in text
    assert "### demo_table3" in text and "demo_table3 minus" not in text
    assert text.endswith(
        "Chance R@1 (either direction) = 100 / 48 test videos = 2.1% "
        "(240 caption queries, 48 video queries)."
    )


def test_a_comparison_without_spread_says_so(benchmark):
    values = seeded("Mean", "m", (5.0, 5.0)) | seeded("Transformer", "t", (3.0, 3.0))
    assert benchmark("demo_tables").comparison_line(values, "Transformer", "Mean") == (
        "Transformer minus Mean, mean T2V R@1: -2.0 points (pooled std 0)."
    )
