"""Comparison tables: the paper's reference rows followed by this run's rows.

A table is a list of dicts keyed by the CSV columns (``TABLE_COLUMNS``, or its R@50 variant
for ActivityNet). Recalls (percent) and median ranks are rounded to one decimal, as in the
paper; a value the paper does not give is empty in the CSV and "-" in Markdown. When this
run's metrics carry bootstrap intervals, each recall gets two more columns,
``{T2V,V2T}_R@K_low`` and ``_high`` (95%). ``write_table`` writes the CSV and a Markdown
rendering with the same stem.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

from supportset.io import atomic_path
from supportset.retrieval.metrics import DIRECTIONS
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
    run_rows: dict[str, dict[str, Any]], reference: str | None, recall_at: int = 10
) -> list[dict[str, Any]]:
    """Rows of a comparison table, in ``table_columns(recall_at)`` order.

    ``run_rows``: row label -> metrics dict (metrics JSON shape) of this run, kept in order;
    ``reference``: name of a table of ``reference.PAPER_ROWS`` whose rows come first, or None;
    ``recall_at``: K of the third recall column, 10 (MSR-VTT) or 50 (ActivityNet).
    """
    with_intervals = any("CI95" in metrics.get("t2v", {}) for metrics in run_rows.values())
    columns = table_columns(recall_at) + (interval_columns(recall_at) if with_intervals else ())
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
    for label, metrics in run_rows.items():
        values = _run_values(label, metrics, recall_at)
        if with_intervals:
            values += _interval_values(label, metrics, recall_at)
        rows.append(_table_row(columns, label, RUN_SOURCE, values))
    return rows


def _columns_of(rows: list[dict[str, Any]]) -> tuple[str, ...]:
    """The columns shared by every row, which must be those of a known table layout."""
    if not rows:
        raise ValueError("a table needs at least one row")
    columns = tuple(rows[0])
    layouts = {
        layout
        for recall_at in RECALL_AT_CHOICES
        for layout in (
            table_columns(recall_at),
            table_columns(recall_at) + interval_columns(recall_at),
        )
    }
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


def _markdown_text(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    """A Markdown pipe table; text columns left-aligned, numbers right-aligned."""

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    alignment = ["---" if column in ("row", "source") else "---:" for column in columns]
    body = [line([_cell(row[column], "-") for column in columns]) for row in rows]
    return "\n".join([line(list(columns)), "|" + "|".join(alignment) + "|", *body]) + "\n"


def write_table(csv_path: str | os.PathLike[str], rows: list[dict[str, Any]]) -> None:
    """Atomically write ``rows`` to ``csv_path`` and their Markdown rendering to its ``.md``."""
    columns = _columns_of(rows)
    csv_text, markdown_text = _csv_text(rows, columns), _markdown_text(rows, columns)
    with atomic_path(csv_path) as temporary:
        temporary.write_text(csv_text, encoding="utf-8")
    with atomic_path(Path(csv_path).with_suffix(".md")) as temporary:
        temporary.write_text(markdown_text, encoding="utf-8")


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
