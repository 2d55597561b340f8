"""Reference rows copied from the paper, to be shown next to this run's numbers.

``PAPER_ROWS`` maps a table name to its rows; ``PAPER_RECALL_AT`` gives, for the same name,
the K of the third recall column (10 for MSR-VTT, 50 for ActivityNet), so that the numbers
are never shown under the wrong heading. Add both entries together, with numbers copied from
the paper only.
"""

from __future__ import annotations

from dataclasses import dataclass

Quadruple = tuple[float, float, float, float]


@dataclass(frozen=True)
class ReferenceRow:
    """One method's row of a paper table.

    ``t2v`` and ``v2t``: (R@1, R@5, R@K, MdR), recalls in percent, K from ``PAPER_RECALL_AT``.
    """

    row: str
    t2v: Quadruple
    v2t: Quadruple


PAPER_ROWS: dict[str, list[ReferenceRow]] = {
    "msrvtt_table3": [
        ReferenceRow("Ours", t2v=(27.4, 56.3, 67.7, 3.0), v2t=(26.6, 55.1, 67.5, 3.0)),
        ReferenceRow("Ours-pretrained", t2v=(30.1, 58.5, 69.3, 3.0), v2t=(28.5, 58.6, 71.6, 3.0)),
        ReferenceRow(
            "MMT (Gabeur et al., 2020)", t2v=(24.6, 54.0, 67.1, 4.0), v2t=(24.4, 56.0, 67.8, 4.0)
        ),
        ReferenceRow(
            "CE (Liu et al., 2019)", t2v=(20.9, 48.8, 62.4, 6.0), v2t=(20.6, 50.3, 64.0, 5.3)
        ),
    ],
}

PAPER_RECALL_AT: dict[str, int] = {"msrvtt_table3": 10}


def paper_rows(table: str) -> list[ReferenceRow]:
    """The reference rows of ``table``; ``ValueError`` listing the known tables if unknown."""
    if table not in PAPER_ROWS:
        raise ValueError(f"unknown reference table {table!r}; known: {sorted(PAPER_ROWS)}")
    return PAPER_ROWS[table]
