"""Provenance of a result: which settings, code and data made it.

A provenance block is a JSON-ready dict::

    {"config_sha256": ..., "code_version": ..., "settings": {...},
     "manifest_sha256": ..., "manifests": [...]}

``settings`` are the effective settings of the stage (the config after the dataset's and
the experiment's overrides; for training also the feature and text settings recorded in the
shards it read), ``config_sha256`` the sha256 of their canonical JSON (keys
sorted), ``code_version`` the package version and the git commit of the source it ran
from (``+dirty`` when that checkout had uncommitted changes), and ``manifest_sha256`` the
sha256 of the manifest files' bytes in the order given. `train` writes one into model.pt,
`evaluate` copies the model's into the metrics JSON beside its own, and the table's report
page shows them per row.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

from supportset import __version__

CHUNK_BYTES = 1 << 20


def settings_sha256(settings: dict[str, Any]) -> str:
    """sha256 (64 hex digits) of `settings` as canonical JSON (sorted keys, no spaces)."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def files_sha256(paths: Sequence[str | Path]) -> str:
    """sha256 of the files' bytes, one after the other, in the order given."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            while chunk := handle.read(CHUNK_BYTES):
                digest.update(chunk)
    return digest.hexdigest()


@cache
def code_version() -> str:
    """'{version}+g{commit}' of the git checkout this package runs from ('+dirty' appended
    when it has uncommitted changes or files git does not ignore and does not track), or
    '{version} (not a git checkout)' for an installed copy without git."""
    source = Path(__file__).resolve().parent
    commit = _git(source, "rev-parse", "HEAD")
    if not commit:
        return f"{__version__} (not a git checkout)"
    dirty = _git(source, "status", "--porcelain")
    return f"{__version__}+g{commit[:12]}{'+dirty' if dirty else ''}"


def _git(folder: Path, *arguments: str) -> str:
    """The stripped output of `git -C folder ...`; empty when git or the checkout is missing."""
    try:
        result = subprocess.run(
            ["git", "-C", str(folder), *arguments],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return result.stdout.strip() if result.returncode == 0 else ""


def provenance(settings: dict[str, Any], manifests: Sequence[str | Path]) -> dict[str, Any]:
    """The provenance block of a result made with `settings` from the data of `manifests`
    (videos.parquet, captions.parquet)."""
    return {
        "config_sha256": settings_sha256(settings),
        "code_version": code_version(),
        "settings": settings,
        "manifest_sha256": files_sha256(manifests),
        "manifests": [str(path) for path in manifests],
    }
