import logging

from supportset.progress import ProgressLog


def test_progress_is_logged_at_most_every_interval_and_at_the_end(caplog):
    now = [0.0]
    logger = logging.getLogger("test.progress")
    progress = ProgressLog(10, "videos done", logger, every_s=60, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="test.progress"):
        for _ in range(9):
            now[0] += 10.0
            progress.advance()
        now[0] += 10.0
        progress.advance()
    assert [record.getMessage() for record in caplog.records] == [
        "videos done: 6/10 (60%), 0.10/s, about 0 min 40 s left",
        "videos done: 10/10 (100%), 0.10/s, about 0 min 0 s left",
    ]
