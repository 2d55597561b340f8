"""Comparison tables: the paper's reference rows followed by this run's rows.

A table is a list of dicts keyed by the CSV columns (``TABLE_COLUMNS``, or its R@50 variant
for ActivityNet). Recalls (percent) and median ranks are rounded to one decimal, as in the
paper; a value the paper does not give is empty in the CSV and "-" in Markdown. When this
run's metrics carry bootstrap intervals, each recall gets two more columns,
``{T2V,V2T}_R@K_low`` and ``_high`` (95%). A row of several runs (seeds) holds their mean,
and every metric gets a ``_std`` column (sample standard deviation, n - 1; empty for rows
of one run); such rows leave the interval columns empty, their spread being the seeds'.
``write_table`` writes the CSV and a Markdown rendering with the same stem (cells
"mean ± std", the paper's notes under the table); ``write_runs`` the per-run values.

In a table that shows post-processings (``postprocess``, the table's setting), each row is
followed by one row per post-processing, labelled "{label} + DSL" or "{label} + QB-Norm" and
built the same way from the runs' ``postprocessed`` summaries (see ``metrics``); the raw
row always stays.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from supportset.io import atomic_path
from supportset.retrieval.metrics import DIRECTIONS
from supportset.retrieval.postprocess import POSTPROCESS_LABELS, POSTPROCESSORS
from supportset.retrieval.reference import PAPER_RECALL_AT, paper_rows

PAPER_SOURCE = "paper"
RUN_SOURCE = "this run"
RECALL_AT_CHOICES: tuple[int, ...] = (10, 50)
DECIMALS = 1


def _metric_keys(recall_at: int) -> tuple[str, ...]:
    """Metric keys of one direction, in column order."""
    return ("R@1", "R@5", f"R@{recall_at}", "MdR")


def table_columns(recall_at: int = 10) -> tuple[str, ...]:
    """CSV columns of a table whose third recall column is R@``recall_at`` (10 or 50)."""
    if recall_at not in RECALL_AT_CHOICES:
        raise ValueError(f"recall_at must be one of {RECALL_AT_CHOICES}, got {recall_at}")
    metric_columns = [
        f"{direction.upper()}_{key}" for direction in DIRECTIONS for key in _metric_keys(recall_at)
    ]
    return ("row", "source", *metric_columns)


TABLE_COLUMNS: tuple[str, ...] = table_columns(10)
RUNS_COLUMNS_PREFIX: tuple[str, ...] = ("row", "run")
STD_SUFFIX = "_std"


def std_columns(recall_at: int = 10) -> tuple[str, ...]:
    """The standard deviation column of every metric column, in column order."""
    return tuple(f"{column}{STD_SUFFIX}" for column in table_columns(recall_at)[2:])


def interval_columns(recall_at: int = 10) -> tuple[str, ...]:
    """The low and high bootstrap bound columns of each recall, both directions."""
    return tuple(
        f"{direction.upper()}_{key}_{bound}"
        for direction in DIRECTIONS
        for key in _metric_keys(recall_at)[:3]
        for bound in ("low", "high")
    )


def _table_row(
    columns: tuple[str, ...], label: str, source: str, values: list[float | None]
) -> dict[str, Any]:
    """One table row: label, source and the metric values rounded to ``DECIMALS`` (None
    where there is no value)."""
    rounded = [None if value is None else round(float(value), DECIMALS) for value in values]
    return dict(zip(columns, [label, source, *rounded], strict=True))


def _interval_values(label: str, metrics: dict[str, Any], recall_at: int) -> list[float]:
    """The bootstrap bounds of one run, in ``interval_columns`` order."""
    values = []
    for direction in DIRECTIONS:
        intervals = metrics[direction].get("CI95")
        if intervals is None:
            raise ValueError(
                f"row {label!r}: metrics[{direction!r}] has no CI95, unlike other rows "
                "(evaluate every row with the same evaluation.bootstrap)"
            )
        for key in _metric_keys(recall_at)[:3]:
            values.extend(intervals[key])
    return values


def _run_values(label: str, metrics: dict[str, Any], recall_at: int) -> list[float]:
    """The table's metric values of one run, both directions, in column order."""
    values = []
    for direction in DIRECTIONS:
        summary = metrics.get(direction, {})
        missing = [key for key in _metric_keys(recall_at) if key not in summary]
        if missing:
            raise ValueError(f"row {label!r}: metrics[{direction!r}] lacks {missing}")
        values.extend(summary[key] for key in _metric_keys(recall_at))
    return values


def build_table(
    run_rows: Mapping[str, dict[str, Any] | list[dict[str, Any]]],
    reference: str | None,
    recall_at: int = 10,
    postprocess: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Rows of a comparison table, in ``table_columns(recall_at)`` order (then the interval
    and ``_std`` columns when there are any).

    ``run_rows``: row label -> metrics dict (metrics JSON shape) of this run, or a list of
    them, one per seed; kept in order. ``reference``: name of a table of
    ``reference.PAPER_ROWS`` whose rows come first, or None; ``recall_at``: K of the third
    recall column, 10 (MSR-VTT) or 50 (ActivityNet); ``postprocess``: the post-processings
    shown as rows of their own beside each row ("dsl", "qbnorm").
    """
    runs_of: dict[str, list[dict[str, Any]]] = {}
    for label, metrics in run_rows.items():
        runs = dict(enumerate(_as_runs(label, metrics)))  # seed index -> metrics
        for row_label, row_runs in _with_postprocessed(label, runs, postprocess):
            if row_label in runs_of:
                raise ValueError(f"row {row_label!r} appears twice")
            runs_of[row_label] = list(row_runs.values())
    with_intervals = any(
        len(runs) == 1 and "CI95" in runs[0].get("t2v", {}) for runs in runs_of.values()
    )
    with_std = any(len(runs) > 1 for runs in runs_of.values())
    columns = (
        table_columns(recall_at)
        + (interval_columns(recall_at) if with_intervals else ())
        + (std_columns(recall_at) if with_std else ())
    )
    extra = len(columns) - len(table_columns(recall_at))
    rows = []
    if reference is not None:
        references = paper_rows(reference)
        if PAPER_RECALL_AT[reference] != recall_at:
            raise ValueError(
                f"reference table {reference!r} reports R@{PAPER_RECALL_AT[reference]}, "
                f"not R@{recall_at}"
            )
        rows.extend(
            _table_row(columns, paper.row, PAPER_SOURCE, [*paper.t2v, *paper.v2t, *[None] * extra])
            for paper in references
        )
    for label, runs in runs_of.items():
        values = np.array([_run_values(label, metrics, recall_at) for metrics in runs])
        row_values: list[float | None] = list(values.mean(axis=0))
        if with_intervals:
            row_values += (
                _interval_values(label, runs[0], recall_at)
                if len(runs) == 1
                else [None] * len(interval_columns(recall_at))
            )
        if with_std:
            row_values += (
                list(values.std(axis=0, ddof=1))
                if len(runs) > 1
                else [None] * len(std_columns(recall_at))
            )
        rows.append(_table_row(columns, label, RUN_SOURCE, row_values))
    return rows


def run_value_rows(
    run_rows: Mapping[str, Mapping[str, dict[str, Any]]],
    recall_at: int = 10,
    postprocess: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """One row per run: ``row`` (the table row), ``run`` (its name, e.g. the experiment)
    and the metric values, for the sidecar of a table whose rows average seeds."""
    columns = RUNS_COLUMNS_PREFIX + table_columns(recall_at)[2:]
    return [
        _table_row(columns, row_label, run, _run_values(row_label, metrics, recall_at))
        for label, runs in run_rows.items()
        for row_label, row_runs in _with_postprocessed(label, runs, postprocess)
        for run, metrics in row_runs.items()
    ]


def _with_postprocessed(
    label: str, runs: Mapping[Any, dict[str, Any]], postprocess: Sequence[str]
) -> list[tuple[str, Mapping[Any, dict[str, Any]]]]:
    """A row's (label, runs), then a ("{label} + DSL", runs' DSL summaries) row for each
    post-processing of `postprocess` (the table's), in ``POSTPROCESSORS`` order. Others
    the runs report (for another table) are left out.

    Raises ValueError naming the row when a run does not report one the table shows.
    """
    unknown = sorted(set(postprocess) - set(POSTPROCESSORS))
    if unknown:
        raise ValueError(f"unknown post-processing(s) {unknown}, not one of {POSTPROCESSORS}")
    rows: list[tuple[str, Mapping[Any, dict[str, Any]]]] = [(label, runs)]
    for name in (name for name in POSTPROCESSORS if name in postprocess):
        lacking = [
            run for run, metrics in runs.items() if name not in metrics.get("postprocessed", {})
        ]
        if lacking:
            raise ValueError(
                f"row {label!r}: the table shows {name} but the metrics of run(s) {lacking} "
                "hold no such post-processed summary (evaluate them again)"
            )
        processed = {run: metrics["postprocessed"][name] for run, metrics in runs.items()}
        rows.append((f"{label} + {POSTPROCESS_LABELS[name]}", processed))
    return rows


def _as_runs(label: str, metrics: dict[str, Any] | list[dict[str, Any]]) -> list[dict]:
    """The runs of a row: a list of metrics dicts (one per seed), or one metrics dict."""
    runs = metrics if isinstance(metrics, list) else [metrics]
    if not runs:
        raise ValueError(f"row {label!r} has no runs")
    return runs


def _columns_of(rows: list[dict[str, Any]]) -> tuple[str, ...]:
    """The columns shared by every row, which must be those of a known table layout."""
    if not rows:
        raise ValueError("a table needs at least one row")
    columns = tuple(rows[0])
    layouts = {
        table_columns(recall_at) + intervals + stds
        for recall_at in RECALL_AT_CHOICES
        for intervals in ((), interval_columns(recall_at))
        for stds in ((), std_columns(recall_at))
    } | {RUNS_COLUMNS_PREFIX + table_columns(recall_at)[2:] for recall_at in RECALL_AT_CHOICES}
    if columns not in layouts:
        raise ValueError(f"unexpected table columns {columns}")
    mismatched = [row.get("row") for row in rows if tuple(row) != columns]
    if mismatched:
        raise ValueError(f"rows {mismatched} do not have the columns {columns}")
    return columns


def _cell(value: Any, missing: str = "") -> str:
    """Text of one cell: numbers with ``DECIMALS`` decimals, `missing` for None, anything
    else as is."""
    if value is None:
        return missing
    return f"{value:.{DECIMALS}f}" if isinstance(value, float | int) else str(value)


def _csv_text(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([_cell(row[column]) for column in columns] for row in rows)
    return buffer.getvalue()


def _markdown_text(rows: list[dict[str, Any]], columns: tuple[str, ...], notes: str) -> str:
    """A Markdown pipe table; text columns left-aligned, numbers right-aligned; a value
    with a standard deviation reads "mean ± std"; `notes` follow as a paragraph."""

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    def cell(row: dict[str, Any], column: str) -> str:
        spread = row.get(f"{column}{STD_SUFFIX}")
        text = _cell(row[column], "-")
        return text if spread is None else f"{text} ± {_cell(spread)}"

    shown = [column for column in columns if not column.endswith(STD_SUFFIX)]
    alignment = ["---" if column in ("row", "source", "run") else "---:" for column in shown]
    body = [line([cell(row, column) for column in shown]) for row in rows]
    text = "\n".join([line(shown), "|" + "|".join(alignment) + "|", *body]) + "\n"
    return text + (f"\n{notes}\n" if notes else "")


def write_table(
    csv_path: str | os.PathLike[str],
    rows: list[dict[str, Any]],
    notes: str = "",
    columns: tuple[str, ...] | None = None,
) -> None:
    """Atomically write ``rows`` to ``csv_path`` and their Markdown rendering (followed by
    ``notes``) to its ``.md``; ``columns`` names those of another task's table (captioning,
    action recognition), else they must be a retrieval table's."""
    columns = columns or _columns_of(rows)
    csv_text, markdown_text = _csv_text(rows, columns), _markdown_text(rows, columns, notes)
    with atomic_path(csv_path) as temporary:
        temporary.write_text(csv_text, encoding="utf-8")
    with atomic_path(Path(csv_path).with_suffix(".md")) as temporary:
        temporary.write_text(markdown_text, encoding="utf-8")


def write_runs(csv_path: str | os.PathLike[str], rows: list[dict[str, Any]]) -> None:
    """Atomically write the per-run rows of ``run_value_rows`` as CSV."""
    with atomic_path(csv_path) as temporary:
        temporary.write_text(_csv_text(rows, _columns_of(rows)), encoding="utf-8")


def read_metrics(path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """Read a metrics JSON file, checking it has a summary for each direction."""
    metrics = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(metrics, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(metrics).__name__}")
    missing = [
        direction for direction in DIRECTIONS if not isinstance(metrics.get(direction), dict)
    ]
    if missing:
        raise ValueError(f"{path}: no summary for direction(s) {missing}")
    return metrics
