"""Event recording for the SIP endpoint tests (a module name of its own: conftest is not importable)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from telephony.events import AudioFrame, TelephonyEvent


class EventRecorder:
    """A thread-safe EventSink that remembers everything, for assertions."""

    def __init__(self) -> None:
        self.events: list[TelephonyEvent] = []
        self._cond = threading.Condition()

    def __call__(self, event: TelephonyEvent) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def of(self, kind: type[Any], call_ref: str | None = None) -> list[Any]:
        with self._cond:
            return [
                e
                for e in self.events
                if isinstance(e, kind) and (call_ref is None or getattr(e, "call_ref", None) == call_ref)
            ]

    def wait_for(
        self, kind: type[Any], count: int = 1, timeout: float = 10.0, call_ref: str | None = None
    ) -> list[Any]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [
                    e
                    for e in self.events
                    if isinstance(e, kind) and (call_ref is None or getattr(e, "call_ref", None) == call_ref)
                ]
                if len(found) >= count:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    kinds = [type(e).__name__ for e in self.events if not isinstance(e, AudioFrame)]
                    raise AssertionError(
                        f"waited for {count} {kind.__name__}, got {len(found)}; events: {kinds}"
                    )
                self._cond.wait(remaining)

    def sequence(self, call_ref: str) -> list[str]:
        """Event kinds of one call in order, runs of AudioFrame collapsed."""
        kinds: list[str] = []
        for event in self.of(object, call_ref):
            name = type(event).__name__
            if not (kinds and kinds[-1] == name == "AudioFrame"):
                kinds.append(name)
        return kinds


def wait_until(condition: Callable[[], bool], timeout: float, poll_s: float = 0.01) -> None:
    """Poll ``condition`` until it holds; fail at the deadline (a barrier on state, not a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(poll_s)
