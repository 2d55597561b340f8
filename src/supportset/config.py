"""Configuration checks and per-stage settings.

The Snakefile validates config.yaml against workflow/schemas/config.schema.yaml (filling
defaults). This module adds what a JSON schema cannot say on its own: the `overrides` of
datasets and experiments are checked against the schema of the section they change, and
tables may only name datasets and experiments that exist. Every error names the key.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from supportset.data.adapters import ADAPTERS
from supportset.retrieval.reference import PAPER_RECALL_AT
from supportset.table_plan import TablePlanError, add_derived_experiments, is_derived, plan_table
from supportset.train.config import FINE_TUNING_EPOCH_FRACTION, TrainConfig

STATES_TEXT_SET = "text"  # T5 states and token ids: what a frozen text encoder reads
TOKEN_IDS_TEXT_SET = "tokens"  # token ids alone: what a fine-tuned text encoder reads


class ConfigError(ValueError):
    """A config key or value that the pipeline cannot run with; the message names the key."""


def load_schema(path: str | Path) -> dict:
    """Read the JSON schema (YAML syntax) of config.yaml."""
    with open(path) as handle:
        return yaml.safe_load(handle)


def validate_config(config: dict, schema: dict) -> dict:
    """Validate a whole config, fill its defaults in place and check the cross references.

    Snakemake's own `validate` does the first two in the Snakefile; this is the same check
    for use outside Snakemake (tests, notebooks).
    """
    validator = _defaulting_validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is not None:
        raise ConfigError(f"config key '{_key_path(error.absolute_path)}': {error.message}")
    check_cross_references(config, schema)
    return config


def check_cross_references(config: dict, schema: dict) -> None:
    """Check every `overrides` block against its section schema, and tables' references;
    add the experiments that table rows derive (table_plan) to ``config["experiments"]``."""
    for name, dataset in config.get("datasets", {}).items():
        _check_overrides(dataset.get("overrides", {}), f"datasets.{name}", schema)
        try:
            ADAPTERS[dataset["adapter"]].choose_split(dataset.get("split", ""))
        except ValueError as error:
            raise ConfigError(f"config key 'datasets.{name}.split': {error}") from error
        if dataset["adapter"] == "demo" and dataset.get("root") != f"resources/{name}":
            raise ConfigError(
                f"config key 'datasets.{name}.root': a generated demo corpus lives in "
                f"resources/{name}"
            )
        for section in ("features", "text"):
            if "format" in dataset.get("overrides", {}).get(section, {}):
                raise ConfigError(
                    f"config key 'datasets.{name}.overrides.{section}.format': the shard "
                    f"format is set once for all datasets ({section}.format)"
                )
    for name, table in config.get("tables", {}).items():
        for key, dataset in _table_datasets(name, table):
            if dataset not in config.get("datasets", {}):
                raise ConfigError(f"config key '{key}': unknown dataset '{dataset}'")
    try:
        add_derived_experiments(config, schema)
    except TablePlanError as error:
        raise ConfigError(str(error)) from None
    for name, experiment in config.get("experiments", {}).items():
        _check_overrides(experiment.get("overrides", {}), f"experiments.{name}", schema)
        _check_model_from(name, experiment)
    _check_training_combinations(config)
    _check_text_sets(config)
    _check_task_tables(config)
    for name, table in config.get("tables", {}).items():
        paper_recall_at = PAPER_RECALL_AT.get(table.get("reference", ""), table.get("recall_at"))
        if table.get("reference") and paper_recall_at != table.get("recall_at", 10):
            raise ConfigError(
                f"config key 'tables.{name}.recall_at': reference {table['reference']} "
                f"reports R@{paper_recall_at}"
            )


def text_set(config: dict, dataset: str, experiment: str | None = None) -> str:
    """The folder under results/{dataset}/features/ of the text shards an experiment reads
    (without one, the dataset's settings): 'text', T5 states, when its model.text_encoder
    is 'frozen'; 'tokens', token ids alone, when it is fine-tuned, as the encoder computes
    the states itself (HowTo100M's would take 136M captions x ~20 tokens x 768 x 2 bytes,
    about 4 TB). An experiment whose text.model is not the dataset's reads 'text-<model>'
    or 'tokens-<model>' (Table 2c, "using T5-base, instead of T5-small")."""
    encoder = section_settings(config, "model", dataset, experiment)["text_encoder"]
    kind = STATES_TEXT_SET if encoder == "frozen" else TOKEN_IDS_TEXT_SET
    model = section_settings(config, "text", dataset, experiment)["model"]
    if model == section_settings(config, "text", dataset)["model"]:
        return kind
    return f"{kind}-" + (re.sub(r"[^a-z0-9.]+", "-", model.lower()).strip("-") or "model")


def text_set_holds_token_ids(name: str) -> bool:
    """Whether text set `name` (see `text_set`) holds token ids alone (embed_text
    --token-ids-only) rather than T5 states."""
    return name.split("-", 1)[0] == TOKEN_IDS_TEXT_SET


def text_set_settings(config: dict, dataset: str, name: str) -> dict:
    """The text settings of text set `name` of `dataset` (see `text_set`)."""
    if name in (STATES_TEXT_SET, TOKEN_IDS_TEXT_SET):
        return section_settings(config, "text", dataset)
    for experiment in config.get("experiments", {}):
        if text_set(config, dataset, experiment) == name:
            return section_settings(config, "text", dataset, experiment)
    raise ConfigError(f"no experiment of dataset '{dataset}' reads the text set '{name}'")


def _table_datasets(name: str, table: dict) -> list[tuple[str, str]]:
    """(config key, dataset) of a table and of each row that names its own dataset."""
    pairs = [(f"tables.{name}.dataset", table["dataset"])]
    for label, spec in table["rows"].items():
        if isinstance(spec, dict) and "dataset" in spec:
            pairs.append((f"tables.{name}.rows.{label}.dataset", spec["dataset"]))
    return pairs


def _check_task_tables(config: dict) -> None:
    """Captioning and action tables name known datasets and experiments, a head pooling
    names its run, an action dataset has probe folds, and no two tables share a name
    (each is results/{name}.csv)."""
    datasets, experiments = config.get("datasets", {}), config.get("experiments", {})
    seen = set(config.get("tables", {}))
    for section in ("captioning_tables", "action_tables"):
        for name in config.get(section, {}):
            if name in seen:
                raise ConfigError(
                    f"config key '{section}.{name}': another table is named '{name}' too "
                    f"(both would be results/{name}.csv)"
                )
            seen.add(name)
    for name, table in config.get("captioning_tables", {}).items():
        _known(datasets, table["dataset"], f"captioning_tables.{name}.dataset", "dataset")
        for label, experiment in table["rows"].items():
            key = f"captioning_tables.{name}.rows.{label}"
            _known(experiments, experiment, key, "experiment")
            training = section_settings(config, "training", table["dataset"], experiment)
            if not experiments[experiment].get("model_from") and training["captioning"] == "none":
                raise ConfigError(
                    f"config key '{key}': experiment '{experiment}' trains no caption decoder "
                    "(training.captioning 'none'), so it cannot caption"
                )
    for name, table in config.get("action_tables", {}).items():
        for column, dataset in table["datasets"].items():
            key = f"action_tables.{name}.datasets.{column}"
            _known(datasets, dataset, key, "dataset")
            adapter = ADAPTERS[datasets[dataset]["adapter"]]
            if not adapter.probe_folds:
                raise ConfigError(
                    f"config key '{key}': adapter {datasets[dataset]['adapter']} labels no "
                    "videos with classes (no probe folds); use hmdb51, ucf101 or demo"
                )
            split = adapter.choose_split(datasets[dataset].get("split", ""))
            if "all" in adapter.splits and split != "all":
                raise ConfigError(
                    f"config key 'datasets.{dataset}.split': '{split}' extracts the features "
                    f"of one fold only, but {key} probes all of {', '.join(adapter.probe_folds)}"
                    ": use 'all' (every video of the folds)"
                )
        for label, row in table["rows"].items():
            key = f"action_tables.{name}.rows.{label}"
            if row["pooling"] == "head" and not row.get("experiment"):
                raise ConfigError(f"config key '{key}.experiment': pooling head needs the run")
            if row["pooling"] == "average" and (row.get("experiment") or row.get("dataset")):
                raise ConfigError(f"config key '{key}': average pooling uses no model")
            if row["pooling"] == "head":
                _known(experiments, row["experiment"], f"{key}.experiment", "experiment")
                if row.get("dataset"):
                    _known(datasets, row["dataset"], f"{key}.dataset", "dataset")


def _known(names: Mapping[str, Any], name: str, key: str, kind: str) -> None:
    if name not in names:
        raise ConfigError(f"config key '{key}': unknown {kind} '{name}'")


def _check_model_from(name: str, experiment: dict) -> None:
    """An experiment scored with another run's model is not trained, so it sets nothing."""
    if experiment.get("model_from") and experiment.get("overrides"):
        raise ConfigError(
            f"config key 'experiments.{name}.overrides': the experiment reuses the model "
            f"{experiment['model_from']} (model_from) and trains nothing, so its settings "
            "would not apply"
        )


def section_settings(
    config: dict, section: str, dataset: str, experiment: str | None = None
) -> dict:
    """The effective settings of one section: defaults, then dataset, then experiment overrides.

    An evaluation protocol `auto` becomes the one the dataset's split was published with.
    Training from `init_from` runs a quarter of the epochs (at least one), as appendix 6.2
    does for fine-tuning ("we reduce training epochs into quarters"), unless the
    experiment's own overrides set `epochs`.
    Returns a new dict; the config is not modified.
    """
    settings = copy.deepcopy(config[section])
    dataset_overrides = config["datasets"][dataset].get("overrides", {})
    _deep_update(settings, dataset_overrides.get(section, {}))
    if experiment is not None:
        experiment_overrides = config["experiments"][experiment].get("overrides", {})
        _deep_update(settings, experiment_overrides.get(section, {}))
        explicit = "epochs" in experiment_overrides.get(section, {})
        if section == "training" and settings.get("init_from") and not explicit:
            epochs = settings.get("epochs", TrainConfig.epochs)  # halves round up: 30 -> 8
            settings["epochs"] = max(1, math.floor(epochs / FINE_TUNING_EPOCH_FRACTION + 0.5))
    if section == "evaluation" and settings.get("protocol") == "auto":
        settings["protocol"] = published_protocol(config["datasets"][dataset], dataset)
    return settings


def _check_training_combinations(config: dict) -> None:
    """Training settings that are valid one by one but not together (e.g. selection 'val'
    while training on val), for every dataset and experiment of config.yaml, and for each
    experiment a table row derives on the dataset of that row (naming the row)."""
    if "training" not in config:
        return
    for dataset, experiment, key in _trained_pairs(config):
        values = section_settings(config, "training", dataset, experiment)
        try:
            TrainConfig(**values)
        except (TypeError, ValueError) as error:
            raise ConfigError(
                f"config key '{key}' (dataset {dataset}, experiment {experiment}): {error}"
            ) from None


def _trained_pairs(config: dict) -> list[tuple[str, str, str]]:
    """(dataset, experiment, config key to blame) of every run the config can ask for."""
    pairs = [
        (dataset, experiment, "training")
        for dataset in config.get("datasets", {})
        for experiment in config.get("experiments", {})
        if not is_derived(experiment)
    ]
    for name in config.get("tables", {}):
        for row in plan_table(config, name):
            pairs.extend(
                (run.dataset, run.experiment, f"tables.{name}.rows.{row.label}")
                for run in row.runs
                if is_derived(run.experiment)
            )
    return pairs


def _check_text_sets(config: dict) -> None:
    """Two T5s whose names make the same text-set folder would share text states."""
    for dataset in config.get("datasets", {}):
        models: dict[str, str] = {}
        for experiment in config.get("experiments", {}):
            model = section_settings(config, "text", dataset, experiment)["model"]
            name = text_set(config, dataset, experiment)
            if models.setdefault(name, model) != model:
                raise ConfigError(
                    f"config key 'experiments.{experiment}.overrides.text.model': '{model}' "
                    f"and '{models[name]}' would share results/{dataset}/features/{name}/; "
                    "rename one model folder"
                )


def published_protocol(dataset: dict, name: str) -> str:
    """The evaluation protocol of the dataset's adapter and split choice."""
    protocol = ADAPTERS[dataset["adapter"]].protocol(dataset.get("split", ""))
    if protocol is None:
        raise ConfigError(
            f"config key 'datasets.{name}.overrides.evaluation.protocol': adapter "
            f"{dataset['adapter']} has no published retrieval protocol (it is scored by "
            "classification accuracy); set one of multi-caption, one-caption, paragraph"
        )
    return protocol


def _check_overrides(overrides: dict, prefix: str, schema: dict) -> None:
    """Check each overridden section against that section's schema (no defaults filled)."""
    for section, values in overrides.items():
        section_schema = {"$defs": schema["$defs"], **schema["$defs"][section]}
        validator = jsonschema.validators.validator_for(schema)(section_schema)
        error = jsonschema.exceptions.best_match(validator.iter_errors(values))
        if error is not None:
            key = _key_path([f"{prefix}.overrides.{section}", *error.absolute_path])
            raise ConfigError(f"config key '{key}': {error.message}")


def _deep_update(target: dict, changes: Mapping[str, Any]) -> None:
    for key, value in changes.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _deep_update(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def _key_path(parts) -> str:
    return ".".join(str(part) for part in parts) or "<top level>"


def _defaulting_validator(schema: dict) -> jsonschema.protocols.Validator:
    base = jsonschema.validators.validator_for(schema)
    validate_properties = base.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, subschema):
        if isinstance(instance, dict):
            for name, property_schema in properties.items():
                if "default" in property_schema:
                    instance.setdefault(name, copy.deepcopy(property_schema["default"]))
        yield from validate_properties(validator, properties, instance, subschema)

    return jsonschema.validators.extend(base, {"properties": set_defaults})(schema)
