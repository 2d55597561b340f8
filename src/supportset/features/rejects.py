"""Per-video failure rates of the visual stage: every rejects table of a dataset's visual
shards against its manifest, by split and by kind of failure (`supportset rejects-report`,
rule report_rejects; docs/data-contracts.md, "Visual rejects report").

A reason names its video ("/data/v1.mp4: no such file"), so reasons are grouped by what
is left once the video's path is taken off: the error class or leading words before the
next ": ", with numbers as "#" ("decoding stalled for # s (timeout), worker killed").
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from supportset.data.manifest import read_videos
from supportset.integrity import CheckedParquet
from supportset.io import atomic_path

REPORT_COLUMNS = (
    "split", "reason", "listed", "rejected", "rate_percent", "example_video_id",
    "example_reason",
)  # fmt: skip
ALL = "all"  # the split of rows over every split, the reason of rows over every reason
NUMBER = re.compile(r"\d+(\.\d+)?")


@dataclass(frozen=True)
class Reject:
    """One rejected video: its id, the reason as written, and the rejects table it is in."""

    video_id: str
    reason: str
    table: Path


def reason_group(reason: str, video_path: str) -> str:
    """The kind of failure `reason` names, the same for every video: the reason without its
    leading video path (or file name), up to the next ": ", with numbers as "#"."""
    for prefix in (video_path, Path(video_path).name):
        if prefix and reason.startswith(f"{prefix}: "):
            reason = reason[len(prefix) + 2 :]
            break
    head = reason.split(": ", 1)[0].strip()
    return NUMBER.sub("#", " ".join(head.split())) or "(no reason given)"


def read_rejects(paths: Iterable[str | Path]) -> list[Reject]:
    """The rows of rejects tables (video_id, reason), checksums verified; a video rejected
    twice is an error naming the tables."""
    rejects = []
    for path in map(Path, paths):
        file = CheckedParquet(path)
        try:
            if not {"video_id", "reason"} <= set(file.schema.names):
                raise ValueError(f"{path}: a rejects table needs columns video_id and reason")
            rows = file.read(["video_id", "reason"]).to_pylist()
        finally:
            file.close()
        rejects += [Reject(row["video_id"], row["reason"], path) for row in rows]
    counts = Counter(reject.video_id for reject in rejects)
    twice = [reject.video_id for reject in rejects if counts[reject.video_id] > 1]
    if twice:
        tables = [str(reject.table) for reject in rejects if reject.video_id == twice[0]]
        raise ValueError(f"video {twice[0]!r} is rejected more than once: in {', '.join(tables)}")
    return rejects


def rejects_report(videos: list[dict], rejects: list[Reject]) -> list[dict]:
    """Rows of REPORT_COLUMNS: for `all` splits then each split (manifest order), the row
    over every reason, then one row per reason group (most rejected first); rate_percent is
    rejected / listed videos of the split x 100. A reject of a video the manifest does not
    list is an error naming it and its table."""
    split_of = {video["video_id"]: video["split"] for video in videos}
    path_of = {video["video_id"]: video["path"] for video in videos}
    unknown = [reject for reject in rejects if reject.video_id not in split_of]
    if unknown:
        raise ValueError(
            f"{unknown[0].table}: video {unknown[0].video_id!r} is not in the manifest "
            f"({len(unknown)} rejected videos are not)"
        )
    listed = Counter(split_of.values())
    splits = [ALL, *dict.fromkeys(split_of.values())]
    rows = []
    for split in splits:
        chosen = [r for r in rejects if split in (ALL, split_of[r.video_id])]
        total = len(split_of) if split == ALL else listed[split]
        rows.append(_row(split, ALL, total, chosen, example=None))
        for group, members in _grouped(chosen, path_of):
            rows.append(_row(split, group, total, members, example=members[0]))
    return rows


def _grouped(rejects: list[Reject], path_of: dict[str, str]) -> list[tuple[str, list[Reject]]]:
    """(reason group, its rejects in table order), most rejected first, then by name."""
    groups: dict[str, list[Reject]] = {}
    for reject in rejects:
        group = reason_group(reject.reason, path_of[reject.video_id])
        groups.setdefault(group, []).append(reject)
    return sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))


def _row(
    split: str, reason: str, listed: int, rejects: list[Reject], example: Reject | None
) -> dict:
    return {
        "split": split,
        "reason": reason,
        "listed": listed,
        "rejected": len(rejects),
        "rate_percent": round(100 * len(rejects) / listed, 3) if listed else 0.0,
        "example_video_id": example.video_id if example else "",
        "example_reason": example.reason if example else "",
    }


def write_rejects_report(
    videos_path: str | Path, rejects_paths: Iterable[str | Path], out: str | Path
) -> list[dict]:
    """Write the report of the manifest `videos_path` and the rejects tables as CSV at
    `out` and as Markdown beside it (`.md`), each atomically; return its rows."""
    rows = rejects_report(read_videos(videos_path), read_rejects(rejects_paths))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=REPORT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_path(out) as temporary:
        temporary.write_text(buffer.getvalue(), encoding="utf-8")
    with atomic_path(Path(out).with_suffix(".md")) as temporary:
        temporary.write_text(markdown(rows), encoding="utf-8")
    return rows


def markdown(rows: list[dict]) -> str:
    """Two pipe tables: the rate per split, then every reason group over all splits with
    its example (a sentence instead when there is none)."""
    totals = [row for row in rows if row["reason"] == ALL]
    reasons = [row for row in rows if row["split"] == ALL and row["reason"] != ALL]
    lines = ["| split | listed | rejected | rate (%) |", "|---|---:|---:|---:|"]
    lines += [_line(r["split"], r["listed"], r["rejected"], r["rate_percent"]) for r in totals]
    if not reasons:
        return "\n".join([*lines, "", "No video was rejected."]) + "\n"
    lines += ["", "| reason | rejected | rate (%) | example |", "|---|---:|---:|---|"]
    lines += [
        _line(
            r["reason"],
            r["rejected"],
            r["rate_percent"],
            f"{r['example_video_id']}: {r['example_reason']}",
        )
        for r in reasons
    ]
    return "\n".join(lines) + "\n"


def _line(*cells) -> str:
    return (
        "| " + " | ".join(" ".join(str(cell).split()).replace("|", "\\|") for cell in cells) + " |"
    )
