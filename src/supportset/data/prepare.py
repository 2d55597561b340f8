"""The `prepare` stage: a dataset's annotations become the two manifest tables.

Videos the annotations list but the dataset folder lacks are counted, logged and written
to `missing_videos.csv` next to the manifest; with `missing_videos: skip` they and their
captions are left out, with `fail` the stage stops naming them.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from supportset.data.adapters import ADAPTERS
from supportset.data.manifest import ManifestError, write_manifest
from supportset.io import atomic_path

log = logging.getLogger(__name__)
MISSING_POLICIES = ("skip", "fail")


def prepare(
    adapter: str,
    root: str | Path,
    out_dir: str | Path,
    split: str = "",
    missing_videos: str = "fail",
) -> tuple[int, int]:
    """Write `out_dir/videos.parquet`, `captions.parquet` and `missing_videos.csv`; return
    the manifest's row counts. `split`: the adapter's split choice ("" = its default)."""
    if adapter not in ADAPTERS:
        raise ValueError(f"unknown adapter '{adapter}' (known: {', '.join(sorted(ADAPTERS))})")
    if missing_videos not in MISSING_POLICIES:
        raise ValueError(
            f"missing_videos must be one of {MISSING_POLICIES}, got {missing_videos!r}"
        )
    if not str(root):
        raise ValueError("the dataset's root is empty: set datasets.<name>.root in config.yaml")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder '{root}' does not exist")
    spec = ADAPTERS[adapter]
    videos, captions = spec.read(root, spec.choose_split(split))
    missing = [video for video in videos if not Path(video["path"]).is_file()]
    _write_missing(Path(out_dir) / "missing_videos.csv", missing)
    if missing:
        shown = ", ".join(video["video_id"] for video in missing[:10])
        message = f"{len(missing)} of {len(videos)} listed videos are missing on disk ({shown}"
        message += ", ...)" if len(missing) > 10 else ")"
        for video in missing:
            log.warning("missing video %s: %s", video["video_id"], video["path"])
        if missing_videos == "fail":
            raise ManifestError(
                f"{message}; all are listed in this log. Set missing_videos: skip for this "
                "dataset to leave them out"
            )
        log.warning("%s: left out with their captions", message)
        absent = {video["video_id"] for video in missing}
        videos = [video for video in videos if video["video_id"] not in absent]
        captions = [caption for caption in captions if caption["video_id"] not in absent]
    write_manifest(videos, captions, out_dir)
    return len(videos), len(captions)


def _write_missing(path: Path, missing: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary, open(temporary, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["video_id", "path", "split"])
        writer.writerows([video["video_id"], video["path"], video["split"]] for video in missing)
