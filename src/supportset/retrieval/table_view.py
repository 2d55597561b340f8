"""Views of a results table for people: a compact text table for the terminal and an HTML
page for `snakemake --report`. Neither replaces the CSV and Markdown of ``table``.

Both put this run's rows first, then the paper's. The text view fits about 120 characters:
one cell per recall ("R@1 [low-high]" with bootstrap bounds, "mean ± std" over seeds), the
chance level of R@1 (100 / videos in the gallery: the text-to-video gallery size; a
video's captions are about as rare among the captions) and the row label shortened to fit.
The HTML view adds each row's gallery sizes and, per run, the provenance block of its
metrics JSON (`supportset.provenance`).
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from supportset.retrieval.table import RUN_SOURCE, STD_SUFFIX

WIDTH = 120
LABEL_MIN = 16
TAIL = 12  # characters a shortened label keeps of its end


@dataclass(frozen=True)
class RunDetail:
    """What the views show of one run (a metrics JSON) of a row."""

    name: str  # dataset/experiment
    videos: int  # gallery of text-to-video: the videos queried (every video is a V2T query)
    captions: int  # gallery of video-to-text: the captions queried (T2V queries)
    provenance: dict[str, Any] | None  # the metrics JSON's provenance block, if any

    @classmethod
    def from_metrics(cls, name: str, metrics: Mapping[str, Any]) -> RunDetail:
        return cls(
            name,
            int(metrics["v2t"]["n_queries"]),
            int(metrics["t2v"]["n_queries"]),
            metrics.get("provenance"),
        )

    @property
    def chance_r1(self) -> float:
        """R@1 (percent) of a random ranking of the text-to-video gallery."""
        return 100.0 / self.videos


def ordered_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """This run's rows first, then the paper's, each in table order."""
    return [row for row in rows if row["source"] == RUN_SOURCE] + [
        row for row in rows if row["source"] != RUN_SOURCE
    ]


def _number(value: Any) -> str:
    return "-" if value is None or value == "" else f"{float(value):.1f}"


def recall_cell(row: Mapping[str, Any], column: str, bounds: bool = True) -> str:
    """'mean ± std' with seeds, 'value [low-high]' with bootstrap bounds (when `bounds`),
    else the value."""
    value = _number(row.get(column))
    spread = row.get(f"{column}{STD_SUFFIX}")
    if spread not in (None, ""):
        return f"{value} ± {_number(spread)}"
    low, high = row.get(f"{column}_low"), row.get(f"{column}_high")
    if bounds and low not in (None, "") and high not in (None, ""):
        return f"{value} [{_number(low)}-{_number(high)}]"
    return value


def metric_columns(rows: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    """The view's metric columns: T2V R@1, R@5, R@K, MdR, V2T R@1, R@5, MdR."""
    third = "R@50" if "T2V_R@50" in rows[0] else "R@10"
    return (
        "T2V_R@1",
        "T2V_R@5",
        f"T2V_{third}",
        "T2V_MdR",
        "V2T_R@1",
        "V2T_R@5",
        "V2T_MdR",
    )


def compact_text(
    title: str, rows: Sequence[dict[str, Any]], details: Mapping[str, Sequence[RunDetail]]
) -> str:
    """The table as aligned text of at most ``WIDTH`` characters per line (labels are
    shortened with '...' to fit; only R@1 shows its bootstrap bounds); `details` maps this
    run's row labels to their runs."""
    ordered = ordered_rows(rows)
    columns = metric_columns(ordered)
    headers = [_short_header(column) for column in columns] + ["chance"]
    cells = [
        [recall_cell(row, column, column.endswith("_R@1")) for column in columns]
        + [_chance(_runs_of(row, details))]
        for row in ordered
    ]
    widths = [max(len(text) for text in column) for column in zip(headers, *cells, strict=True)]
    label_width = max(LABEL_MIN, WIDTH - sum(width + 2 for width in widths))
    lines = [_line(_shorten(str(row["row"]), label_width), row_cells, label_width, widths)
             for row, row_cells in zip(ordered, cells, strict=True)]  # fmt: skip
    run_count = sum(row["source"] == RUN_SOURCE for row in ordered)
    if 0 < run_count < len(ordered):  # a rule between this run's rows and the paper's
        lines.insert(run_count, "-" * (label_width + sum(width + 2 for width in widths)))
    lines = [title, _line("row", headers, label_width, widths), *lines]
    return "\n".join(line.rstrip() for line in lines) + "\n"


def _runs_of(row: Mapping[str, Any], details: Mapping[str, Sequence[RunDetail]]) -> list:
    """The runs of one of this run's rows (a paper row may share its label: it has none)."""
    return list(details.get(row["row"], [])) if row["source"] == RUN_SOURCE else []


def _short_header(column: str) -> str:
    """'T2V R@1' for the first column of a direction, the metric alone for the others."""
    direction, metric = column.split("_", 1)
    return f"{direction} {metric}" if metric == "R@1" else metric


def _chance(runs: Sequence[RunDetail] | None) -> str:
    return f"{runs[0].chance_r1:.1f}" if runs else ""


def _shorten(label: str, width: int) -> str:
    """`label` in at most `width` characters: its start, '...' and its last 12 characters
    (which hold a post-processed row's '+ DSL' or '+ QB-Norm')."""
    if len(label) <= width:
        return label
    tail = min(TAIL, (width - 3) // 2)
    return label[: width - 3 - tail] + "..." + label[-tail:]


def _line(label: str, cells: Sequence[str], label_width: int, widths: Sequence[int]) -> str:
    return label.ljust(label_width) + "".join(
        "  " + text.rjust(width) for text, width in zip(cells, widths, strict=True)
    )


def report_html(
    title: str,
    rows: Sequence[dict[str, Any]],
    details: Mapping[str, Sequence[RunDetail]],
    notes: str = "",
) -> str:
    """A self-contained HTML page: this run's rows (with gallery sizes and chance level),
    the paper's rows, the notes, and the provenance of every run of this run's rows."""
    ordered = ordered_rows(rows)
    columns = metric_columns(ordered)
    head = ["row", "source", *(c.replace("_", " ") for c in columns), "videos", "captions"]
    head.append("chance R@1")
    body = []
    for row in ordered:
        runs = _runs_of(row, details)
        sizes = [str(runs[0].videos), str(runs[0].captions), _chance(runs)] if runs else [""] * 3
        cells = [row["row"], row["source"], *(recall_cell(row, c) for c in columns), *sizes]
        body.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    header = "".join(f"<th>{html.escape(name)}</th>" for name in head)
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>",
        f"<table><thead><tr>{header}</tr></thead><tbody>{''.join(body)}</tbody></table>",
        f"<p class='notes'>{html.escape(notes)}</p>" if notes else "",
        "<h2>Provenance</h2>",
        *(_provenance_html(label, runs) for label, runs in details.items()),
        "</body></html>",
    ]
    return "\n".join(part for part in parts if part) + "\n"


def _provenance_html(label: str, runs: Sequence[RunDetail]) -> str:
    blocks = []
    for run in runs:
        record = run.provenance
        if record is None:
            text = "no provenance recorded (metrics written before provenance was kept)"
        else:
            text = json.dumps(record, indent=2, sort_keys=True)
        summary = f"{label}: {run.name}"
        blocks.append(
            f"<details class='provenance'><summary>{html.escape(summary)}</summary>"
            f"<pre>{html.escape(text)}</pre></details>"
        )
    return "\n".join(blocks)


_STYLE = (
    "body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
    "td:first-child,td:nth-child(2),th:first-child{text-align:left}"
    "pre{background:#f6f6f6;padding:6px;font-size:12px}.notes{max-width:60em}"
)
