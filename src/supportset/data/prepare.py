"""The `prepare` stage: a dataset's annotations become the two manifest tables.

Videos the annotations list but the dataset folder lacks are counted, logged and written
to `missing_videos.csv` next to the manifest; with `missing_videos: skip` they and their
captions are left out, with `fail` the stage stops naming them. A skip may drop at most
`max_missing` of each split's listed videos, and never all of a split: beyond that the
files are more likely named or placed wrongly than gone from YouTube. Every video must be
in train, val or test, train and val must have videos (training selects its model on
val), every video needs a caption, and a test gallery of at most GALLERY_K videos gets a
warning. Captions an adapter hands over as a CaptionStream (too many for Python rows) are
checked and written batch by batch; captions.parquet appears only once all passed.
"""

from __future__ import annotations

import csv
import logging
from collections import Counter
from pathlib import Path

import pyarrow as pa

from supportset.data.adapters import ADAPTERS
from supportset.data.manifest import (
    CaptionStream,
    ManifestError,
    caption_writer,
    check_caption_videos,
    check_manifest,
    write_tables,
    write_videos,
)
from supportset.io import atomic_path

log = logging.getLogger(__name__)
MISSING_POLICIES = ("skip", "fail")
# YouTube-sourced datasets lose videos as uploaders delete them: 5-11% is reported for
# ActivityNet (2018-2020) and VATEX (2023); 20% leaves room for that and still stops a
# folder whose files are mostly named or placed wrongly.
DEFAULT_MAX_MISSING = 0.2
GALLERY_K = 50  # the largest K of the metrics' R@K (retrieval.metrics.DEFAULT_KS)


def prepare(
    adapter: str,
    root: str | Path,
    out_dir: str | Path,
    split: str = "",
    missing_videos: str = "fail",
    max_missing: float = DEFAULT_MAX_MISSING,
) -> tuple[int, int]:
    """Write `out_dir/videos.parquet`, `captions.parquet` and `missing_videos.csv`; return
    the manifest's row counts. `split`: the adapter's split choice ("" = its default);
    `max_missing`: the largest fraction (0-1) of a split's videos `skip` may leave out."""
    _check_arguments(adapter, root, missing_videos, max_missing)
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder '{root}' does not exist")
    spec = ADAPTERS[adapter]
    listed, captions = spec.read(root, spec.choose_split(split))
    streamed = isinstance(captions, CaptionStream)
    check_manifest(listed, [] if streamed else captions)  # a stream's rows: see its batches
    videos = _present_videos(listed, Path(out_dir), missing_videos, max_missing)
    _check_split_sizes(videos)
    if streamed:
        return len(videos), _write_streamed(videos, captions, out_dir)
    if len(videos) < len(listed):
        present = {video["video_id"] for video in videos}
        captions = [caption for caption in captions if caption["video_id"] in present]
    _refuse_uncaptioned(videos, {caption["video_id"] for caption in captions})
    write_tables(videos, captions, out_dir)  # checked above; leaving videos out keeps it so
    return len(videos), len(captions)


def _check_arguments(adapter: str, root: str | Path, missing_videos: str, max_missing: float):
    if adapter not in ADAPTERS:
        raise ValueError(f"unknown adapter '{adapter}' (known: {', '.join(sorted(ADAPTERS))})")
    if missing_videos not in MISSING_POLICIES:
        raise ValueError(
            f"missing_videos must be one of {MISSING_POLICIES}, got {missing_videos!r}"
        )
    if not 0.0 <= max_missing <= 1.0:
        raise ValueError(f"max_missing must be a fraction from 0 to 1, got {max_missing}")
    if not str(root):
        raise ValueError("the dataset's root is empty: set datasets.<name>.root in config.yaml")


def _present_videos(
    videos: list[dict], out_dir: Path, policy: str, max_missing: float
) -> list[dict]:
    """The videos found on disk; the others go to missing_videos.csv and are refused or
    left out by `policy` (see _refuse_missing)."""
    missing_csv = out_dir / "missing_videos.csv"
    missing = [video for video in videos if not Path(video["path"]).is_file()]
    _write_missing(missing_csv, missing)
    if not missing:
        return videos
    _refuse_missing(videos, missing, policy, max_missing, missing_csv)
    absent = {video["video_id"] for video in missing}
    return [video for video in videos if video["video_id"] not in absent]


def _write_streamed(videos: list[dict], captions: CaptionStream, out_dir: str | Path) -> int:
    """Write the streamed captions of `videos` batch by batch, then videos.parquet; return
    the caption count. A stream's batches keep caption ids unique (unchecked: that would
    hold them all); each batch is checked to hold captions of `videos` only, in their
    videos' splits. An error in the stream, or a video without a caption, leaves neither
    file behind."""
    split_of = {video["video_id"]: video["split"] for video in videos}
    captioned: set[str] = set()
    count = 0
    with caption_writer(out_dir) as writer:
        for batch in captions.batches(split_of):
            captioned.update(_check_batch(batch, split_of))
            writer.write_batch(batch)
            count += batch.num_rows
        _refuse_uncaptioned(videos, captioned)
        write_videos(videos, out_dir)
    return count


def _check_batch(batch: pa.RecordBatch, split_of: dict[str, str]) -> set[str]:
    """The videos of a batch of streamed captions, each of which must be in `split_of`
    with its captions in its split (as check_manifest checks rows)."""
    pairs = pa.table(batch).group_by(["video_id", "split"]).aggregate([]).to_pylist()
    check_caption_videos(sorted(pairs, key=lambda pair: pair["video_id"]), split_of, "video_id")
    return {pair["video_id"] for pair in pairs}


def _refuse_missing(
    videos: list[dict], missing: list[dict], policy: str, max_missing: float, missing_csv: Path
) -> None:
    """Log the missing videos; raise under `fail`, or where `skip` would leave out more than
    `max_missing` of a split's videos, or all of them."""
    shown = ", ".join(video["video_id"] for video in missing[:10])
    message = f"{len(missing)} of {len(videos)} listed videos are missing on disk ({shown}"
    message += ", ...)" if len(missing) > 10 else ")"
    for video in missing:
        log.warning("missing video %s: %s", video["video_id"], video["path"])
    if policy == "fail":
        raise ManifestError(
            f"{message}; all are listed in this log and {missing_csv}. Set missing_videos: "
            "skip for this dataset to leave them out"
        )
    listed, lost = Counter(v["split"] for v in videos), Counter(v["split"] for v in missing)
    for name in sorted(lost):
        if lost[name] == listed[name] or lost[name] > max_missing * listed[name]:
            raise ManifestError(
                f"{lost[name]} of the {listed[name]} {name} videos are missing on disk "
                f"({lost[name] / listed[name]:.0%}, more than max_missing {max_missing:.0%} "
                f"or all of them); they are listed in {missing_csv}: check the file names "
                "and the folder against the README's layout, or raise max_missing"
            )
    log.warning("%s: left out with their captions (listed in %s)", message, missing_csv)


def _check_split_sizes(videos: list[dict]) -> None:
    """Train and val must have videos; a test gallery of at most GALLERY_K gets a warning."""
    counts = Counter(video["split"] for video in videos)
    for name in ("train", "val"):
        if not counts[name]:
            raise ManifestError(
                f"the manifest has no {name} videos ({dict(counts)}): training learns on "
                "train and selects its model on val; hold out some training videos as val"
            )
    if not counts["test"]:
        log.info("the manifest has no test videos: nothing to evaluate on")
    elif counts["test"] <= GALLERY_K:
        log.warning(
            "the test gallery has %d videos, not more than K = %d: R@%d is 100%% by construction",
            counts["test"],
            GALLERY_K,
            GALLERY_K,
        )


def _refuse_uncaptioned(videos: list[dict], captioned: set[str]) -> None:
    """Every video needs a caption (`captioned`: the ids of the videos that have one):
    nothing could train on it, find it or be found by it."""
    bare = [video["video_id"] for video in videos if video["video_id"] not in captioned]
    if bare:
        raise ManifestError(
            f"{len(bare)} video(s) have no caption in the annotations: {', '.join(bare[:10])}"
        )


def _write_missing(path: Path, missing: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary, open(temporary, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["video_id", "path", "split"])
        writer.writerows([video["video_id"], video["path"], video["split"]] for video in missing)
