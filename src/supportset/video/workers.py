"""Decode workers: every video is decoded in its own process, with a stall timeout.

The pool is generic: it runs a target on each of its items in its own process (by default
`decode_to_pipe` on a video path); thumbnails.py gives it batches of videos instead.

A segfault or a hang inside FFmpeg costs one video, not the job: the pool reports it as
an error event and goes on. Workers come from a forkserver that imports only PyAV and
NumPy, so they never inherit the parent's torch threads or models (multiprocessing does
import the parent's main module in each worker: keep a calling script's top level light).
Workers run at the lowest CPU priority, so that decoding fills the time the CNNs leave
idle instead of stalling their threads. The parent reads events lazily: while it is busy
with the CNNs, workers block on their pipes (so memory stays bounded), and that waiting
does not count towards their timeout.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from supportset.video.decode import DecodeError
from supportset.video.sampling import SamplingSpec, stream_samples

POLL_S = 0.5


@dataclass
class DecodeEvent:
    """What happened to item `index` of the pool's list (a video, for decode_to_pipe)."""

    index: int
    kind: str  # "chunk" | "done" | "error"
    chunk: Any = None  # what the target sent: a SampleChunk for decode_to_pipe
    reason: str = ""


def decode_to_pipe(path: str, spec: SamplingSpec, connection: Connection) -> None:
    """Worker body: send ("chunk", SampleChunk)..., then ("done",) or ("error", reason)."""
    os.nice(19)
    try:
        for chunk in stream_samples(path, spec):
            connection.send(("chunk", chunk))
        connection.send(("done",))
    except DecodeError as error:
        connection.send(("error", str(error)))
    except Exception as error:  # any failure of one video is that video's reject reason
        connection.send(("error", f"{Path(path).name}: {type(error).__name__}: {error}"))
    finally:
        connection.close()


@dataclass
class _Worker:
    index: int
    process: multiprocessing.process.BaseProcess
    connection: Connection
    silent_s: float = 0.0


class DecodePool:
    """Run `target(item, spec, connection)` on each of `items` in its own process, at most
    `workers` at once; iterate `events()`. By default items are video paths and `spec` a
    SamplingSpec; another target takes any picklable items and spec, and sends ("chunk",
    anything)..., then ("done",) or ("error", reason). Error reasons name an item by str()."""

    def __init__(
        self,
        items: Sequence[Any],
        spec: Any,
        workers: int,
        timeout_s: float,
        target: Callable[[Any, Any, Connection], None] = decode_to_pipe,
    ) -> None:
        self.items = items
        self.spec = spec
        self.workers = max(1, workers)
        self.timeout_s = timeout_s
        self.target = target
        self.context = multiprocessing.get_context("forkserver")
        self.context.set_forkserver_preload(["supportset.video.sampling"])

    def events(self) -> Iterator[DecodeEvent]:
        """Chunks, completions and errors, in the order they happen (video by video for
        one worker; interleaved across workers)."""
        next_index = 0
        active: dict[Connection, _Worker] = {}
        try:
            while next_index < len(self.items) or active:
                while next_index < len(self.items) and len(active) < self.workers:
                    worker = self._start(next_index)
                    active[worker.connection] = worker
                    next_index += 1
                started = time.monotonic()
                ready = wait(list(active), timeout=POLL_S)
                waited = time.monotonic() - started
                for connection in ready:
                    event = self._receive(active[connection])
                    active[connection].silent_s = 0.0
                    if event.kind != "chunk":
                        self._retire(active.pop(connection))
                    yield event
                yield from self._expire_silent(active, ready, waited)
        finally:
            for worker in active.values():
                self._retire(worker, kill=True)

    def _start(self, index: int) -> _Worker:
        receiver, sender = self.context.Pipe(duplex=False)
        process = self.context.Process(
            target=self.target, args=(self.items[index], self.spec, sender), daemon=True
        )
        process.start()
        sender.close()
        return _Worker(index, process, receiver)

    def _receive(self, worker: _Worker) -> DecodeEvent:
        try:
            message = worker.connection.recv()
        except EOFError:
            worker.process.join(timeout=5)
            code = worker.process.exitcode
            reason = (
                f"decoder process died (signal {-code})"
                if code and code < 0
                else (f"decoder process exited with status {code} without a result")
            )
            return DecodeEvent(
                worker.index, "error", reason=f"{self.items[worker.index]}: {reason}"
            )
        if message[0] == "chunk":
            return DecodeEvent(worker.index, "chunk", chunk=message[1])
        if message[0] == "done":
            return DecodeEvent(worker.index, "done")
        return DecodeEvent(worker.index, "error", reason=message[1])

    def _expire_silent(
        self, active: dict[Connection, _Worker], ready: list, waited: float
    ) -> Iterator[DecodeEvent]:
        for connection, worker in list(active.items()):
            if connection in ready:
                continue
            worker.silent_s += waited
            if worker.silent_s >= self.timeout_s:
                self._retire(active.pop(connection), kill=True)
                yield DecodeEvent(
                    worker.index,
                    "error",
                    reason=f"{self.items[worker.index]}: decoding stalled for "
                    f"{self.timeout_s:g} s (timeout), worker killed",
                )

    @staticmethod
    def _retire(worker: _Worker, kill: bool = False) -> None:
        if kill and worker.process.is_alive():
            worker.process.kill()
        worker.process.join(timeout=5)
        worker.connection.close()
