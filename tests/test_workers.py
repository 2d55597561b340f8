import os
import signal

from supportset.video.sampling import SamplingSpec
from supportset.video.workers import DecodePool
from tests.video_files import write_video

SPEC = SamplingSpec(1.0, 32, 32, 16, 16, clip_len=2, chunk_samples=2)


def crash(path, spec, connection):
    """A decoder that dies the way a segfault in FFmpeg would kill it."""
    os.kill(os.getpid(), signal.SIGSEGV)


def events_by_video(pool):
    kinds = {}
    for event in pool.events():
        kinds.setdefault(event.index, []).append(event)
    return kinds


def test_good_videos_stream_chunks_then_done(tmp_path):
    paths = [str(write_video(tmp_path / f"{i}.mp4", [k / 10 for k in range(45)])) for i in range(3)]
    events = events_by_video(DecodePool(paths, SPEC, workers=2, timeout_s=30))
    for index in range(3):
        kinds = [event.kind for event in events[index]]
        assert kinds == ["chunk", "chunk", "chunk", "done"]  # 5 samples, chunks of 2
        times = [t for event in events[index] if event.chunk for t in event.chunk.timestamps]
        assert times == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_a_hanging_decoder_is_killed_after_the_timeout(tmp_path):
    fifo = tmp_path / "never_written.mp4"
    os.mkfifo(fifo)  # opening it blocks forever inside FFmpeg's open()
    good = str(write_video(tmp_path / "good.mp4", [k / 10 for k in range(20)]))
    events = events_by_video(DecodePool([str(fifo), good], SPEC, workers=2, timeout_s=1.5))
    (stalled,) = events[0]
    assert stalled.kind == "error" and "timeout" in stalled.reason
    assert events[1][-1].kind == "done"


def test_a_crashing_decoder_costs_one_video(tmp_path):
    good = str(write_video(tmp_path / "good.mp4", [k / 10 for k in range(20)]))
    pool = DecodePool([good], SPEC, workers=1, timeout_s=30, target=crash)
    (event,) = list(pool.events())
    assert event.kind == "error" and "signal 11" in event.reason
