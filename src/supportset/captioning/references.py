"""Generated captions files and the reference captions they are scored against.

captions_{split}.parquet (`supportset caption`): one row per video, `video_id` and `text`
(the generated caption), with the decoding settings and the model's provenance as JSON
metadata. The references of a video are all of its captions in the manifest (MSR-VTT's 20,
VATEX's 10 English ones, ActivityNet's paragraph).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from supportset.data.manifest import read_captions
from supportset.integrity import CheckedParquet

CAPTIONS_SCHEMA = pa.schema([("video_id", pa.string()), ("text", pa.string())])


def read_generated(path: str | Path) -> dict[str, str]:
    """video_id -> generated caption of a captions file (its checksums verified)."""
    file = CheckedParquet(path)
    try:
        missing = [name for name in CAPTIONS_SCHEMA.names if name not in file.schema.names]
        if missing:
            raise ValueError(f"{path}: not a captions file, missing column(s) {missing}")
        table = file.read(CAPTIONS_SCHEMA.names)
    finally:
        file.close()
    return dict(zip(table["video_id"].to_pylist(), table["text"].to_pylist(), strict=True))


def references_of(captions_manifest: str | Path, video_ids: list[str]) -> dict[str, list[str]]:
    """video_id -> the manifest's captions of that video, for each of `video_ids`; a video
    without any is a ValueError (nothing to score it against)."""
    wanted = set(video_ids)
    references: dict[str, list[str]] = {video_id: [] for video_id in video_ids}
    for caption in read_captions(captions_manifest):
        if caption["video_id"] in wanted:
            references[caption["video_id"]].append(caption["text"])
    lacking = [video_id for video_id, texts in references.items() if not texts]
    if lacking:
        raise ValueError(
            f"{captions_manifest}: {len(lacking)} captioned video(s) have no reference "
            f"caption, e.g. {lacking[0]}"
        )
    return references
