"""Table rows expanded into runs: set, sweep, seeds, shared runs and the errors that name
the config key."""

from __future__ import annotations

import copy

import pytest
import yaml

from supportset.config import ConfigError, load_schema, section_settings, validate_config
from supportset.table_plan import Run, add_derived_experiments, derived_name, plan_table
from tests.conftest import REPO

SCHEMA = load_schema(REPO / "workflow/schemas/config.schema.yaml")
CONFIG = yaml.safe_load((REPO / "config.yaml").read_text())


def validated(tables: dict, experiments: dict | None = None) -> dict:
    config = copy.deepcopy(CONFIG)
    config["tables"] = tables
    config["experiments"].update(experiments or {})
    return validate_config(config, SCHEMA)


def experiments_of(config: dict, table: str) -> list[list[str]]:
    return [[run.experiment for run in row.runs] for row in plan_table(config, table)]


def test_a_set_row_derives_an_experiment_with_the_changed_setting():
    config = validated({"t": {"dataset": "demo", "rows": {"Max": {
        "experiment": "triplet", "set": {"model.pooling": "max"}}}}})  # fmt: skip
    assert experiments_of(config, "t") == [["triplet+pooling=max"]]
    model = section_settings(config, "model", "demo", "triplet+pooling=max")
    training = section_settings(config, "training", "demo", "triplet+pooling=max")
    assert model["pooling"] == "max" and training["captioning"] == "none"  # the base's kept


def test_a_sweep_makes_one_row_per_value_in_order():
    config = validated({"t": {"dataset": "demo", "rows": {"Size {value}": {
        "experiment": "supportset", "sweep": {"training.support_set_size": [8, 2]}}}}})  # fmt: skip
    rows = plan_table(config, "t")
    assert [row.label for row in rows] == ["Size 8", "Size 2"]
    assert [row.runs for row in rows] == [
        (Run("demo", "supportset+support_set_size=8"),),
        (Run("demo", "supportset+support_set_size=2"),),
    ]
    assert (
        section_settings(config, "training", "demo", rows[1].runs[0].experiment)["support_set_size"]
        == 2
    )


def test_seeds_train_one_model_each_and_the_own_seed_is_the_experiment_itself():
    config = validated({"t": {"dataset": "demo", "seeds": [0, 1, 2], "rows": {"A": "triplet"}}})
    assert experiments_of(config, "t") == [["triplet", "triplet+seed=1", "triplet+seed=2"]]
    seeds = [
        section_settings(config, "training", "demo", name)["seed"]
        for name in experiments_of(config, "t")[0]
    ]
    assert seeds == [0, 1, 2]


def test_a_row_s_seeds_win_over_the_table_s():
    config = validated({"t": {"dataset": "demo", "seeds": [0, 1], "rows": {
        "A": "triplet", "B": {"experiment": "identity", "seeds": [3]}}}})  # fmt: skip
    assert experiments_of(config, "t") == [["triplet", "triplet+seed=1"], ["identity+seed=3"]]


def test_tables_asking_for_the_same_run_share_it():
    rows = {"Mean": {"experiment": "triplet", "set": {"model.pooling": "mean"}}}
    config = validated(
        {"a": {"dataset": "demo", "rows": rows}, "b": {"dataset": "demo", "rows": rows}}
    )
    assert experiments_of(config, "a") == experiments_of(config, "b")
    assert sum(name.startswith("triplet+") for name in config["experiments"]) == 1


def test_expansion_is_idempotent():
    config = validated({"t": {"dataset": "demo", "seeds": [0, 1], "rows": {"A": "triplet"}}})
    experiments = copy.deepcopy(config["experiments"])
    add_derived_experiments(config, SCHEMA)
    assert config["experiments"] == experiments


def test_a_row_may_score_another_dataset():
    config = validated(
        {"t": {"dataset": "demo", "rows": {"M": {"experiment": "zeroshot", "dataset": "msvd"}}}}
    )
    assert plan_table(config, "t")[0].runs == (Run("msvd", "zeroshot"),)


def test_derived_names_are_path_components():
    assert derived_name("triplet", {"text.model": "/models/t5 small"}, None) == (
        "triplet+text_model=models_t5_small"
    )
    assert derived_name("b", {"training.train_splits": ["train", "val"]}, 4) == (
        "b+train_splits=train_val+seed=4"
    )


def triplet_row(**fields) -> dict:
    return {"experiment": "triplet", **fields}


@pytest.mark.parametrize(
    ("row", "key"),
    [
        ({"experiment": "nope"}, "tables.t.rows.R': unknown experiment 'nope'"),
        (triplet_row(set={"model.poolin": "max"}), "R.set.model.poolin"),
        (triplet_row(set={"model.pooling": "median"}), "R.set.model.pooling"),
        (triplet_row(set={"features.fps": 2}), "R.set.features.fps"),
        (triplet_row(set={"text.max_tokens": 8}), "R.set.text.max_tokens"),
        (triplet_row(sweep={"training.lr": [0.1, -1]}), "R.sweep.training.lr"),
        (triplet_row(sweep={"training.lr": [0.1]}), "{value}"),
        ({"experiment": "zeroshot", "seeds": [1]}, "is not trained (model_from)"),
        (triplet_row(dataset="nope"), "tables.t.rows.R.dataset': unknown dataset"),
        (triplet_row(set={"training.seed": 5}, seeds=[0, 5]), "R.set.training.seed"),
        (triplet_row(sweep={"training.seed": [0, 1]}), "R.sweep.training.seed"),
        (
            triplet_row(
                set={"training.selection": "val", "training.train_splits": ["train", "val"]}
            ),
            "config key 'tables.t.rows.R' (dataset demo",
        ),
    ],
)
def test_bad_rows_name_their_key(row: dict, key: str):
    with pytest.raises(ConfigError, match=None) as error:
        validated({"t": {"dataset": "demo", "rows": {"R": row}}})
    assert key in str(error.value)


def test_two_rows_whose_derived_names_collide_are_an_error():
    rows = {
        "A": {"experiment": "triplet", "set": {"text.model": "t5/small"}},
        "B": {"experiment": "triplet", "set": {"text.model": "t5_small"}},
    }
    with pytest.raises(ConfigError, match="exists with other settings"):
        validated({"t": {"dataset": "demo", "rows": rows}})


def test_swept_labels_must_differ():
    rows = {
        "Size {value}": {"experiment": "supportset", "sweep": {"training.support_set_size": [8]}},
        "Size 8": "triplet",
    }
    with pytest.raises(ConfigError, match="duplicate row labels"):
        validated({"t": {"dataset": "demo", "rows": rows}})


def test_an_experiment_scored_with_another_model_takes_no_overrides():
    with pytest.raises(ConfigError, match=r"experiments\.z\.overrides"):
        validated({}, {"z": {"model_from": "m.pt", "overrides": {"training": {"lr": 0.1}}}})


def test_two_t5_folders_that_would_share_a_text_set_are_an_error():
    experiments = {
        "a": {"overrides": {"text": {"model": "/models/t5_small"}}},
        "b": {"overrides": {"text": {"model": "/models/t5-small"}}},
    }
    with pytest.raises(
        ConfigError, match="would share results/demo/features/text-models-t5-small/"
    ):
        validated({}, experiments)


def test_a_derived_experiment_is_checked_on_its_row_s_dataset_only():
    """msrvtt trains on train and val and keeps the last epoch; a row that selects on val
    is valid on the demo and is not checked on msrvtt."""
    row = {"experiment": "triplet", "set": {"training.selection": "val"}}
    validated({"t": {"dataset": "demo", "rows": {"R": row}}})
    with pytest.raises(ConfigError, match=r"'tables\.t\.rows\.R' \(dataset msrvtt"):
        validated({"t": {"dataset": "msrvtt", "rows": {"R": row}}})
