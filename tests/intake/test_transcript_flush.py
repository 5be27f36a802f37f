"""How long an ended call waits for its last words (issue 13): as long as the decoder makes progress,
bounded by the backlog it held; a stalled decoder is given up on quickly (its late finals are still stored,
see tests/api/test_api_call_record_truth.py)."""

from __future__ import annotations

import itertools
import threading
from datetime import UTC, datetime, timedelta

from intake.calls import wait_flushed


class Decoder:
    """A flush that finishes after ``steps`` progress readings, or never (``steps=None``) - progressing
    or stalled."""

    def __init__(self, steps: int | None, progressing: bool = True) -> None:
        self.done = threading.Event()
        self._steps = steps
        self._progressing = progressing
        self._readings = itertools.count()
        self.processed = 0.0

    def progress(self) -> float:
        n = next(self._readings)
        if self._steps is not None and n >= self._steps:
            self.done.set()
        if self._progressing:
            self.processed += 0.5
        return self.processed


class Clock:
    """Fake time (an :class:`intake.ports.Clock`) that advances one second per monotonic reading, so the
    test never waits on the wall clock for the bounds (the event waits themselves are short, 0.5 s at most
    each, and end when the flush is done)."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def monotonic(self) -> float:
        self.seconds += 1.0
        return self.seconds

    def now(self) -> datetime:
        return datetime(2026, 12, 3, tzinfo=UTC) + timedelta(seconds=self.seconds)


def test_a_decoder_that_keeps_making_progress_is_waited_for_beyond_the_stall_window() -> None:
    decoder = Decoder(steps=8)
    assert wait_flushed(
        [(decoder.done, decoder.progress)], backlog_s=30.0, clock=Clock(), stall_s=2.0, base_s=5.0
    )


def test_a_stalled_decoder_is_given_up_on_after_the_stall_window() -> None:
    decoder = Decoder(steps=None, progressing=False)
    clock = Clock()
    assert not wait_flushed([(decoder.done, decoder.progress)], backlog_s=30.0, stall_s=3.0, clock=clock)
    assert clock.seconds <= 6.0


def test_the_wait_is_bounded_by_the_backlog_the_decoder_held() -> None:
    decoder = Decoder(steps=None, progressing=True)
    clock = Clock()
    assert not wait_flushed(
        [(decoder.done, decoder.progress)],
        backlog_s=4.0,
        stall_s=100.0,
        base_s=2.0,
        per_backlog_s=1.0,
        clock=clock,
    )
    assert 6.0 <= clock.seconds <= 9.0


def test_a_flush_already_done_returns_at_once() -> None:
    decoder = Decoder(steps=0)
    decoder.done.set()
    assert wait_flushed([(decoder.done, decoder.progress)], backlog_s=0.0, clock=Clock())
