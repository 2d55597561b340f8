"""Which runs fill a table: the rows of `tables` in config.yaml, expanded into experiments.

A row names an experiment, or derives runs from one with an object:

- `set`: settings changed for this row (dotted keys of the `model`, `training` sections,
  or `text.model`), e.g. ``{model.pooling: mean}``;
- `sweep`: one setting over a list of values, one row each; the label's ``{value}`` says
  which (Table 2f's support-set sizes);
- `seeds`: the row's, else the table's; one run per seed, reported as mean and standard
  deviation (Table 12). Without seeds a row is one run with the experiment's own seed;
- `dataset`: the dataset whose test split scores the row (the zero-shot table spans four).

Derived experiments are named after what they change (``triplet+pooling=mean``,
``pretrained+seed=2``) and added to ``config["experiments"]``, so every rule treats them
like the experiments written in config.yaml, and two tables that ask for the same run
share its jobs (and its features and text states, which depend only on the dataset).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

import jsonschema

# A row may change these settings; `text` only its model (Table 2c: the text states are
# then those of that T5, embedded once per dataset and model).
SETTABLE = {"model": None, "training": None, "text": ("model",)}
SWEEP_PLACEHOLDER = "{value}"
DERIVED_SEPARATOR = "+"  # never in the name of an experiment of config.yaml (schema)


class TablePlanError(ValueError):
    """A table row that cannot be expanded; the message names the config key."""


@dataclass(frozen=True)
class Run:
    """One trained (or reused) model scored for a row: results/{dataset}/{experiment}/."""

    dataset: str
    experiment: str


@dataclass(frozen=True)
class PlannedRow:
    """A row of a table and its runs: one, or one per seed."""

    label: str
    runs: tuple[Run, ...]


def plan_table(config: dict, name: str) -> list[PlannedRow]:
    """The rows of table `name`, in config order (a sweep's rows in its value order)."""
    return [row for row, _ in _expanded_rows(config, name)]


def add_derived_experiments(config: dict, schema: dict) -> None:
    """Add every experiment a table row derives to ``config["experiments"]`` (in place).

    Idempotent. Raises TablePlanError for a row whose settings, sweep or seeds are invalid,
    or whose derived name is taken by an experiment with other settings.
    """
    experiments = config.setdefault("experiments", {})
    for name in config.get("tables", {}):
        for row, derived in _expanded_rows(config, name, schema):
            for run, overrides in zip(row.runs, derived, strict=True):
                _add(experiments, run.experiment, overrides, f"tables.{name}.rows.{row.label}")


def is_derived(experiment: str) -> bool:
    """Whether `experiment` was derived by a table row (not written in config.yaml)."""
    return DERIVED_SEPARATOR in experiment


def derived_name(base: str, changes: dict[str, Any], seed: int | None) -> str:
    """``base`` followed by ``+key=value`` per changed setting (sorted) and ``+seed=N``."""
    parts = [base]
    for key, value in sorted(changes.items()):
        section, leaf = key.split(".", 1)
        parts.append(f"{'text_' if section == 'text' else ''}{leaf}={_value_text(value)}")
    if seed is not None:
        parts.append(f"seed={seed}")
    return DERIVED_SEPARATOR.join(parts)


def _expanded_rows(
    config: dict, name: str, schema: dict | None = None
) -> list[tuple[PlannedRow, list[dict]]]:
    """Each row with the overrides of each of its runs' experiments."""
    table = config["tables"][name]
    expanded = []
    for label, spec in table["rows"].items():
        key = f"tables.{name}.rows.{label}"
        spec = {"experiment": spec} if isinstance(spec, str) else spec
        base = spec["experiment"]
        if base not in config.get("experiments", {}):
            raise TablePlanError(f"config key '{key}': unknown experiment '{base}'")
        seeds = spec.get("seeds", table.get("seeds", []))
        if schema is not None:
            _check_row(config, spec, seeds, key, schema)
        dataset = spec.get("dataset", table["dataset"])
        for row_label, changes in _sweep(label, spec, key):
            runs, overrides = [], []
            for seed in seeds or [None]:
                seed = None if seed is None else _run_seed(config, dataset, base, seed)
                runs.append(Run(dataset, _run_name(base, changes, seed)))
                overrides.append(_overrides(config, base, changes, seed))
            expanded.append((PlannedRow(row_label, tuple(runs)), overrides))
    _check_unique_labels([row.label for row, _ in expanded], f"tables.{name}.rows")
    return expanded


def _run_seed(config: dict, dataset: str, base: str, seed: int | None) -> int | None:
    """None when `seed` is the one the base experiment trains with on `dataset` anyway
    (its run is then shared with the rows that name the experiment alone)."""
    for overrides in (
        config["experiments"][base].get("overrides", {}),
        config["datasets"][dataset].get("overrides", {}),
    ):
        if "seed" in overrides.get("training", {}):
            return None if overrides["training"]["seed"] == seed else seed
    return None if config.get("training", {}).get("seed", 0) == seed else seed


def _run_name(base: str, changes: dict[str, Any], seed: int | None) -> str:
    return base if not changes and seed is None else derived_name(base, changes, seed)


def _sweep(label: str, spec: dict, key: str) -> list[tuple[str, dict[str, Any]]]:
    """(label, settings) of each row of a spec: one row, or one per swept value."""
    fixed = dict(spec.get("set", {}))
    sweep = spec.get("sweep")
    if not sweep:
        return [(label, fixed)]
    if len(sweep) != 1:
        raise TablePlanError(f"config key '{key}.sweep': sweep exactly one setting")
    if SWEEP_PLACEHOLDER not in label:
        raise TablePlanError(
            f"config key '{key}': a swept row's label needs {SWEEP_PLACEHOLDER} "
            "(it becomes each row's value)"
        )
    (setting, values), = sweep.items()  # fmt: skip
    if setting in fixed:
        raise TablePlanError(f"config key '{key}.sweep.{setting}': also in the row's set")
    return [
        (label.replace(SWEEP_PLACEHOLDER, str(value)), {**fixed, setting: value})
        for value in values
    ]


def _overrides(config: dict, base: str, changes: dict[str, Any], seed: int | None) -> dict:
    """The base experiment's overrides with the row's changes (and seed) applied."""
    overrides = copy.deepcopy(config["experiments"][base].get("overrides", {}))
    for key, value in changes.items():
        section, leaf = key.split(".", 1)
        overrides.setdefault(section, {})[leaf] = copy.deepcopy(value)
    if seed is not None:
        overrides.setdefault("training", {})["seed"] = seed
    return overrides


def _check_row(config: dict, spec: dict, seeds: list[int], key: str, schema: dict) -> None:
    """The row's settings exist, may be changed, and have valid values; an experiment that
    is not trained (model_from) takes no settings or seeds."""
    changes = spec.get("set", {})
    if config["experiments"][spec["experiment"]].get("model_from") and (
        changes or spec.get("sweep") or seeds
    ):
        raise TablePlanError(
            f"config key '{key}': experiment '{spec['experiment']}' is not trained "
            "(model_from), so a row cannot change its settings or seeds"
        )
    for setting, value in changes.items():
        _check_setting(setting, value, f"{key}.set.{setting}", schema)
    for setting, values in (spec.get("sweep") or {}).items():
        for value in values:
            _check_setting(setting, value, f"{key}.sweep.{setting}", schema)
    for part in ("set", "sweep"):
        if "training.seed" in (spec.get(part) or {}):
            raise TablePlanError(
                f"config key '{key}.{part}.training.seed': give a row's seeds as `seeds` "
                "(one run each, mean and std)"
            )


def _check_setting(setting: str, value: Any, key: str, schema: dict) -> None:
    """A dotted setting a row may change (SETTABLE), with a value its schema accepts."""
    section, _, leaf = setting.partition(".")
    properties = schema["$defs"].get(section, {}).get("properties", {})
    only = SETTABLE.get(section)
    if section not in SETTABLE or leaf not in properties or (only and leaf not in only):
        raise TablePlanError(
            f"config key '{key}': a row can set keys of model and training, and text.model"
        )
    validator = jsonschema.validators.validator_for(schema)(
        {"$defs": schema["$defs"], **properties[leaf]}
    )
    error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    if error is not None:
        raise TablePlanError(f"config key '{key}': {error.message}")


def _add(experiments: dict, name: str, overrides: dict, key: str) -> None:
    """Add a derived experiment, or check that the one of that name has these overrides."""
    if name not in experiments:
        experiments[name] = {"description": f"Derived for {key}.", "overrides": overrides}
    elif experiments[name].get("overrides", {}) != overrides:
        raise TablePlanError(
            f"config key '{key}': the derived experiment '{name}' exists with other settings"
        )


def _check_unique_labels(labels: list[str], key: str) -> None:
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise TablePlanError(f"config key '{key}': duplicate row labels {duplicates}")


def _value_text(value: Any) -> str:
    """A setting's value as it appears in an experiment name (a path component)."""
    if isinstance(value, bool):
        text = str(value).lower()
    elif isinstance(value, list):
        text = "_".join(_value_text(item) for item in value)
    else:
        text = str(value)
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "empty"
