"""The machine the benchmark scripts run on: CPU model, memory and CPU time of processes (Linux)."""

from __future__ import annotations

import platform
import resource
import subprocess
import time
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else the architecture."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.machine()


FIELDS = {"rss": ("status", "VmRSS:"), "pss": ("smaps_rollup", "Pss:")}


def tree_memory_mb(pid: int, kind: str = "rss") -> float:
    """Memory (MB) of a process and all its descendants: resident set ("rss", pages shared
    between processes counted in each) or proportional set ("pss", a page shared by k
    processes counted 1/k in each)."""
    filename, field = FIELDS[kind]
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        stack.extend(children.get(current, []))
        try:
            lines = Path(f"/proc/{current}/{filename}").read_text().splitlines()
        except OSError:
            continue
        total += sum(int(line.split()[1]) for line in lines if line.startswith(field))
    return total / 1024


def peak_memory_mb(process: subprocess.Popen, kind: str = "rss", interval_s: float = 0.1) -> float:
    """Wait for `process` to end, sampling its tree's memory (see tree_memory_mb) every
    `interval_s`; the peak in MB. A non-zero exit is an error naming the command."""
    peak = 0.0
    while process.poll() is None:
        peak = max(peak, tree_memory_mb(process.pid, kind))
        time.sleep(interval_s)
    if process.returncode:
        raise RuntimeError(f"{process.args} failed with exit status {process.returncode}")
    return peak


def children_cpu_seconds() -> float:
    """User + system CPU seconds of the ended child processes of this one: what other work
    on a shared machine does not inflate, unlike wall time."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
