"""Action-recognition tables (Table 11): mean top-1 over the folds, per pooling and dataset.

"We report average Top-1 accuracy across all 3 folds." Rows: the reference rows the
caller passes (source "paper"), then this run's rows, one per pooling (source "this run"),
then "Chance" (source "chance": 100 / the number of classes). Columns: row, source, dim, the
mean top-1 of each dataset (percent, one decimal), then a "<dataset> folds" column each
with the folds' top-1 ("61.2 / 60.4 / 62.0"). A value a row lacks is empty in the CSV and
"-" in Markdown.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from supportset.io import atomic_path

PAPER_SOURCE, RUN_SOURCE, CHANCE_SOURCE = "paper", "this run", "chance"
CHANCE_ROW = "Chance"
FOLDS_SUFFIX = " folds"
DECIMALS = 1

Row = tuple[str, Mapping[str, list[dict]]]  # (label, dataset label -> its folds' results)

# Our copy of the paper has lost Table 11's numbers; what its text says of it.
ACTION_NOTES: dict[str, str] = {
    "action_table11": (
        'Appendix 6.6: "We report average Top-1 accuracy across all 3 folds" ... "we see '
        "improvements of over 7% on HMDB-51 and 34% on UCF-101 by replacing average pooling "
        'with our transformer pooling head to aggregate features." The rows of Table 11 are '
        "lost from our copy of the paper."
    ),
}


def action_table(
    rows: Sequence[Row],
    references: Sequence[tuple[str, Mapping[str, float | None]]] = (),
) -> list[dict[str, Any]]:
    """Rows of an action table, each a dict keyed by the columns in order. `rows`: this
    run's rows (label, {dataset label: the `probe_fold` results of its folds}), every row
    with the same dataset labels, in column order; `references`: (row label, {dataset label
    or "dim": value or None}) rows from the paper, first. Last, "Chance": 100 / classes."""
    if not rows:
        raise ValueError("an action table needs at least one row")
    labels = list(rows[0][1])
    differing = [label for label, cells in rows if list(cells) != labels]
    if differing:
        raise ValueError(f"rows {differing} do not have the datasets {labels}")
    table = [_reference_row(row, values, labels) for row, values in references]
    table.extend(_run_row(label, cells) for label, cells in rows)
    chance = {label: [r["chance"] for _, cells in rows for r in cells[label]] for label in labels}
    table.append(_row(CHANCE_ROW, CHANCE_SOURCE, None, labels, _means(chance), {}))
    return table


def _run_row(row: str, folds: dict[str, list[dict]]) -> dict[str, Any]:
    """One of this run's rows: its width and the folds' mean top-1 per dataset."""
    dims = sorted({result["dim"] for results in folds.values() for result in results})
    if len(dims) != 1:
        raise ValueError(f"row {row!r}: the folds' features are {dims} wide, not one width")
    top1 = {label: [result["top1"] for result in results] for label, results in folds.items()}
    listed = {
        label: " / ".join(f"{value:.{DECIMALS}f}" for value in values)
        for label, values in top1.items()
    }
    return _row(row, RUN_SOURCE, dims[0], list(folds), _means(top1), listed)


def _reference_row(
    row: str, values: Mapping[str, float | None], labels: list[str]
) -> dict[str, Any]:
    unknown = sorted(set(values) - {*labels, "dim"})
    if unknown:
        raise ValueError(f"reference row {row!r} names unknown column(s) {unknown}")
    means = {label: values.get(label) for label in labels}
    return _row(row, PAPER_SOURCE, values.get("dim"), labels, means, {})


def _means(values: dict[str, list[float]]) -> dict[str, float | None]:
    """Label -> the mean of its values, None for none."""
    return {label: float(np.mean(v)) if v else None for label, v in values.items()}


def _row(
    row: str,
    source: str,
    dim: int | None,
    labels: list[str],
    means: Mapping[str, float | None],
    listed: Mapping[str, str],
) -> dict[str, Any]:
    """A table row: label, source, dim, the rounded means, then the listed folds."""
    rounded = {
        label: None if means[label] is None else round(float(means[label]), DECIMALS)
        for label in labels
    }
    folds = {f"{label}{FOLDS_SUFFIX}": listed.get(label) or None for label in labels}
    return {"row": row, "source": source, "dim": dim, **rounded, **folds}


def _cell(value: Any, missing: str) -> str:
    if value is None:
        return missing
    return f"{value:.{DECIMALS}f}" if isinstance(value, float) else str(value)


def write_action_table(
    rows: list[dict[str, Any]],
    csv_path: str | os.PathLike[str],
    md_path: str | os.PathLike[str],
    notes: str = "",
) -> None:
    """Write `action_table` rows as CSV and as a Markdown pipe table (followed by `notes`),
    each atomically."""
    columns = list(rows[0])
    mismatched = [row["row"] for row in rows if list(row) != columns]
    if mismatched:
        raise ValueError(f"rows {mismatched} do not have the columns {columns}")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([_cell(row[column], "") for column in columns] for row in rows)
    with atomic_path(csv_path) as temporary:
        temporary.write_text(buffer.getvalue(), encoding="utf-8")
    with atomic_path(md_path) as temporary:
        markdown = _markdown(rows, columns) + (f"\n{notes}\n" if notes else "")
        temporary.write_text(markdown, encoding="utf-8")


def _markdown(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A pipe table: text columns left-aligned, numbers right-aligned."""

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    text_columns = {"row", "source", *(c for c in columns if c.endswith(FOLDS_SUFFIX))}
    alignment = ["---" if column in text_columns else "---:" for column in columns]
    body = [line([_cell(row[column], "-") for column in columns]) for row in rows]
    return "\n".join([line(columns), "|" + "|".join(alignment) + "|", *body]) + "\n"
