"""Captioning tables (the paper's Tables 7-9): reference rows, then this run's rows.

Columns: row, source, BLEU-4, METEOR, ROUGE-L, CIDEr (x 100, one decimal, as printed);
`source` is "paper" for rows copied from the paper and "this run" for rows computed here.
Each of this run's rows is the caption metrics JSON of one run (`supportset
score-captions`). The CSV and a Markdown rendering are written by
`retrieval.table.write_table`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from supportset.captioning.reference import CAPTION_NOTES, CAPTION_ROWS
from supportset.captioning.scores import METRICS
from supportset.retrieval.table import DECIMALS, PAPER_SOURCE, RUN_SOURCE, write_table

CAPTION_TABLE_COLUMNS = ("row", "source", *METRICS)


def read_caption_metrics(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A caption metrics JSON, checked to hold the four metrics."""
    metrics = json.loads(Path(path).read_text(encoding="utf-8"))
    missing = [name for name in METRICS if not isinstance(metrics.get(name), int | float)]
    if missing:
        raise ValueError(f"{path}: not a caption metrics file, missing {missing}")
    return metrics


def caption_table(
    rows: list[tuple[str, str | os.PathLike[str]]], reference: str | None
) -> list[dict]:
    """The table's rows: the paper's rows of `reference` (a CAPTION_ROWS key, or None),
    then one row per (label, metrics JSON path) of this run."""
    table = []
    if reference is not None:
        if reference not in CAPTION_ROWS:
            raise ValueError(
                f"no paper captioning table '{reference}' (known: {', '.join(CAPTION_ROWS)})"
            )
        for label, values in CAPTION_ROWS[reference]:
            table.append(
                {"row": label, "source": PAPER_SOURCE, **dict(zip(METRICS, values, strict=True))}
            )
    for label, path in rows:
        metrics = read_caption_metrics(path)
        values = {name: round(float(metrics[name]), DECIMALS) for name in METRICS}
        table.append({"row": label, "source": RUN_SOURCE, **values})
    return table


def write_caption_table(
    csv_path: str | os.PathLike[str],
    rows: list[tuple[str, str | os.PathLike[str]]],
    reference: str | None,
) -> None:
    """Write the CSV (and its .md) of a captioning table."""
    notes = CAPTION_NOTES.get(reference, "") if reference else ""
    write_table(csv_path, caption_table(rows, reference), notes, CAPTION_TABLE_COLUMNS)
