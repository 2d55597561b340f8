"""Progress of long stages in their logs (cluster jobs have no terminal for a bar)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class ProgressLog:
    """Logs "done/total (percent), rate, time left" at most every `every_s` seconds and
    when the last item is done."""

    def __init__(
        self,
        total: int,
        what: str,
        logger: logging.Logger,
        every_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total, self.what, self.logger = total, what, logger
        self.every_s, self.clock = every_s, clock
        self.done = 0
        self.started = self.last = clock()

    def advance(self, count: int = 1) -> None:
        self.done += count
        now = self.clock()
        if now - self.last < self.every_s and self.done < self.total:
            return
        self.last = now
        rate = self.done / max(now - self.started, 1e-9)
        left = (self.total - self.done) / rate if rate > 0 else float("inf")
        self.logger.info(
            "%s: %d/%d (%.0f%%), %.2f/s, about %s left",
            self.what, self.done, self.total, 100 * self.done / max(self.total, 1), rate,
            _duration(left),
        )  # fmt: skip


def _duration(seconds: float) -> str:
    if seconds == float("inf"):
        return "an unknown time"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min {secs} s"
