"""The `prepare` stage: a dataset's annotations become the two manifest tables."""

from __future__ import annotations

from pathlib import Path

from supportset.data.adapters import ADAPTERS
from supportset.data.manifest import write_manifest


def prepare(adapter: str, root: str | Path, out_dir: str | Path) -> tuple[int, int]:
    """Write `out_dir/videos.parquet` and `out_dir/captions.parquet`; return their row counts."""
    if adapter not in ADAPTERS:
        raise ValueError(f"unknown adapter '{adapter}' (known: {', '.join(sorted(ADAPTERS))})")
    if not str(root):
        raise ValueError("the dataset's root is empty: set datasets.<name>.root in config.yaml")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder '{root}' does not exist")
    videos, captions = ADAPTERS[adapter](root)
    write_manifest(videos, captions, out_dir)
    return len(videos), len(captions)
