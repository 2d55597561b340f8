"""The configs and summaries of the demo benchmarks over seeds (benchmarks/demo_seeds.py,
benchmarks/demo_table1.py), checked without running them."""

import copy
import importlib
import json
from collections.abc import Callable
from types import ModuleType

import pytest

from supportset.config import load_schema, section_settings, validate_config
from tests.conftest import REPO

SCHEMA = load_schema(REPO / "workflow/schemas/config.schema.yaml")


@pytest.fixture
def benchmark(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], ModuleType]:
    """Imports a script of benchmarks/ by name, as the scripts import each other (the folder
    is on sys.path during the test only)."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    return importlib.import_module


def effective(config: dict, experiment: str) -> dict:
    """The model and training settings an experiment trains the demo with."""
    return {
        section: section_settings(config, section, "demo", experiment)
        for section in ("model", "training")
    }


def without_variant(settings: dict) -> dict:
    """Settings less the two keys that tell Table 1's runs apart."""
    training = settings["training"]
    return {
        **settings,
        "training": {key: training[key] for key in training if key not in ("captioning", "seed")},
    }


def test_table1_config_has_every_variant_and_seed_differing_in_nothing_else(benchmark):
    demo_table1 = benchmark("demo_table1")
    config, runs = demo_table1.table1_config(3)
    config = validate_config(copy.deepcopy(config), SCHEMA)
    assert len(config["experiments"]) == 15
    assert list(runs) == ["none", "identity", "full", "hybrid", "cross"]
    common = without_variant(effective(config, "t1_cross"))
    for variant, names in runs.items():
        assert len(names) == 3
        for seed, name in enumerate(names):
            training = effective(config, name)["training"]
            assert (training["captioning"], training["seed"]) == (variant, seed)
            assert without_variant(effective(config, name)) == common
    assert common["training"]["caption_weight"] == 10.0  # the paper's lambda, not tuned
    (table,) = config["tables"].values()
    assert (table["dataset"], table["split"]) == ("demo", "test")
    assert sorted(table["rows"].values()) == sorted(config["experiments"])


def test_demo_seeds_config_keeps_the_experiments_and_adds_seed_copies(benchmark):
    demo_seeds = benchmark("demo_seeds")
    config, labels = demo_seeds.seeds_config(2)
    config = validate_config(copy.deepcopy(config), SCHEMA)
    assert set(config["experiments"]) == {
        name + suffix for name in labels for suffix in ("", "_seed1")
    }
    rows = config["tables"]["demo_seeds"]["rows"]
    assert rows["triplet seed 0"] == "triplet"
    assert effective(config, "triplet_seed1")["training"]["seed"] == 1
    assert effective(config, "triplet_seed1")["training"]["captioning"] == "none"


def fake_metrics(t2v: float, v2t: float) -> dict:
    """A metrics JSON of the demo's test split (48 videos, 240 captions)."""
    return {
        "t2v": {"R@1": t2v, "n_queries": 240, "CI95": {"R@1": [t2v - 6.0, t2v + 6.0]}},
        "v2t": {"R@1": v2t, "n_queries": 48},
    }


def test_table1_summary_reports_spread_chance_and_cross_against_none(benchmark):
    demo_table1 = benchmark("demo_table1")
    metrics = {
        variant: [fake_metrics(30.0, 20.0)] * 3 for variant in ("identity", "full", "hybrid")
    }
    metrics["none"] = [fake_metrics(value, 25.0) for value in (10.0, 12.0, 14.0)]
    metrics["cross"] = [fake_metrics(value, 25.0) for value in (14.0, 16.0, 18.0)]
    text = demo_table1.summary(metrics)
    assert "| None | 12.0 ± 2.0 | 10.0 | 12.0 | 14.0 | 4.0-16.0 | 25.0 ± 0.0 |" in text
    assert "100 / 48 test videos = 2.1%" in text
    assert "beats None's: +4.0 points, +2.0 pooled sample std (2.0)" in text
    metrics["cross"], metrics["none"] = metrics["none"], metrics["cross"]
    assert "does not beat None's: -4.0 points" in demo_table1.summary(metrics)


def test_table1_reads_each_runs_test_metrics_where_evaluate_writes_them(benchmark, tmp_path):
    demo_table1 = benchmark("demo_table1")
    runs = {"none": ["t1_none", "t1_none_seed1"]}
    for value, name in enumerate(runs["none"]):
        (tmp_path / "demo" / name).mkdir(parents=True)
        (tmp_path / "demo" / name / "metrics_test.json").write_text(json.dumps({"t2v": value}))
    assert demo_table1.read_metrics(tmp_path, runs) == {"none": [{"t2v": 0}, {"t2v": 1}]}


@pytest.mark.parametrize("seeds", [1, 3])
def test_seed_copies_leave_the_experiments_alone(benchmark, seeds):
    demo_runs = benchmark("demo_runs")
    experiments = {"a": {"overrides": {"training": {"captioning": "none"}}}}
    repeated, runs = demo_runs.seed_copies(experiments, seeds)
    assert experiments == {"a": {"overrides": {"training": {"captioning": "none"}}}}
    assert runs == {"a": ["a"] + [f"a_seed{seed}" for seed in range(1, seeds)]}
    assert repeated["a"] == experiments["a"]
