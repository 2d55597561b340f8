"""Atomic file writes: a temporary file in the destination folder, then a rename."""

from __future__ import annotations

import contextlib
import glob
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(destination: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `destination`; rename it there if the block succeeds.

    A file that exists under its final name is therefore always complete.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        prefix=f".{destination.name}.", suffix=".tmp", dir=destination.parent
    )
    os.close(handle)
    try:
        yield Path(temporary)
        if os.path.isfile(temporary):  # mkstemp makes 0600; give the umask's usual mode
            os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, destination)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)


def remove_leftovers(destination: str | Path) -> None:
    """Remove the temporary files that writers of `destination` killed before they
    finished left behind (`atomic_path`'s `.{name}.*.tmp`): at HowTo100M's size a shard's
    or a manifest's can hold gigabytes. For outputs one job writes at a time (Snakemake
    runs one job per output), so none of them is in use."""
    destination = Path(destination)
    for leftover in destination.parent.glob(f".{glob.escape(destination.name)}.*.tmp"):
        leftover.unlink(missing_ok=True)
